"""Training step of the paper's CLIP-It: JAX (jit, pmap) against PyTorch (eager, compile).

The model is `configs/default.py`'s (width 512, 6+6 layers, 8 heads, windows of 256
frames of 512-d features, 7 captions fused by 'concat', supervised loss, Adam with
coupled weight decay). The PyTorch peer is the port in `torch_clipit.py`.

Measured in one run, on the same machine and the same batch:
  * JAX `make_train_step(config, pmapped=False)` (jit) on the whole batch at once;
    with `config.microbatch_size` (`--microbatch`, default 4: the gradients of
    microbatches of 4 windows summed in a `lax.scan`, the same update); the same
    under pmap over the local devices (1 on a CPU), as train.py runs it; and with
    `model.matmul_dtype='bfloat16'` (mixed precision: bfloat16 operands, float32
    sums, for the weight matmuls only);
  * PyTorch eager, eager under `torch.autocast(bfloat16)` (the mixed-precision peer),
    and `torch.compile` (model + losses compiled, Adam eager);
  * the FLOPs of the JAX step from XLA's cost analysis, and the machine's limit
    measured as a large float32 matmul in jnp and in torch;
  * with `--check`, that the port has the Flax model's parameter count and gives
    the same outputs on the same weights.

  python benchmarks/train_step.py --check            # default: batch 16
  python benchmarks/train_step.py --batch 100 --steps 3
  python benchmarks/train_step.py --quick            # a smoke run (batch 2)
  python benchmarks/train_step.py --dtype bfloat16   # JAX compute in bfloat16 (GPU)
"""

from __future__ import annotations

import argparse
import importlib.util
import functools
import gc
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import jax_utils  # noqa: E402

from clipit_jax import losses  # noqa: E402
from clipit_jax import models  # noqa: E402
from clipit_jax import train  # noqa: E402
from configs import default  # noqa: E402


def make_batch(batch: int, cfg, seed: int = 0) -> dict[str, np.ndarray]:
  """Random windows like CLIP features: unit vectors, ~15 % keyframes, full windows."""
  rng = np.random.default_rng(seed)
  t, m = cfg.window, cfg.num_captions

  def unit(shape):
    x = rng.standard_normal(shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)

  return dict(
      frames=unit((batch, t, cfg.frame_dim)),
      frame_mask=np.ones((batch, t), bool),
      text=unit((batch, m, cfg.text_dim)),
      text_mask=np.ones((batch, m), bool),
      labels=(rng.random((batch, t)) < 0.15).astype(np.float32))


def analytic_flops(cfg, batch: int) -> float:
  """Matmul FLOPs of one training step (3x the forward's), for a sanity check."""
  t, w, f = cfg.window, cfg.width, cfg.mlp_dim
  tokens = batch * t
  attn = 4 * w * w + 2 * t * w  # q, k, v, out projections + scores and weighted sum
  mlp = 2 * w * f
  enc = attn + mlp
  dec = 2 * attn + mlp
  per_token = (cfg.num_encoder_layers * enc + cfg.num_decoder_layers * dec
               + cfg.frame_dim * w + w * cfg.frame_dim  # projection, reconstruction
               + 4 * w * w  # language attention (q and out at width; k, v on 1 token)
               + w * cfg.head_mlp_dim + cfg.head_mlp_dim
               + t * cfg.frame_dim)  # diversity loss similarity
  return 3 * 2 * per_token * tokens


def flax_has_text_norm(cfg) -> bool:
  """Whether this version of the Flax model normalises the text (TextFusion.input_norm)."""
  return ("input_norm" in getattr(models.TextFusion, "__dataclass_fields__", {})
          and bool(cfg.input_norm))


# ------------------------------------------------------------------- check --


def check_port(config, batch_size: int = 2, attention: str = "explicit",
               tolerance: float = 1e-4) -> dict:
  """The PyTorch port against the Flax model on the same weights and inputs.

  Fills every torch parameter with NaN, copies the Flax parameters in (so a tensor
  the copy misses shows up), and compares the deterministic forward outputs and
  the loss, and the gradients of the loss of a few kernels (dropout off). Returns
  the parameter counts, the largest absolute differences over real frames, the
  gradients' relative differences, and 'ok': equal counts, nothing missed, scores
  within `tolerance` (logits and reconstruction within 10x it), gradients within 1e-3.
  """
  import torch  # pylint: disable=g-import-not-at-top
  import torch_clipit  # pylint: disable=g-import-not-at-top
  config = config.copy_and_resolve_references()
  config.model.dtype = "float32"  # the port is float32
  cfg = config.model
  params = models.init_params(cfg, jax.random.PRNGKey(1))
  flax_count = int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
  model = torch_clipit.CLIPIt(cfg, text_norm=flax_has_text_norm(cfg), attention=attention)
  torch_count = torch_clipit.count_params(model)
  with torch.no_grad():
    for p in model.parameters():
      p.fill_(float("nan"))
  torch_clipit.load_flax_params(model, params)
  missed = [n for n, p in model.named_parameters() if torch.isnan(p).any()]
  model.eval()
  batch = make_batch(batch_size, cfg, seed=3)
  batch["frame_mask"][-1, cfg.window // 3:] = False  # Some padding, to test masks.
  batch["labels"][-1, cfg.window // 3:] = 0.0
  batch["text_mask"][-1, -2:] = False
  out_f = models.CLIPIt(cfg).apply({"params": params}, batch["frames"], batch["frame_mask"],
                                   batch["text"], batch["text_mask"])
  tb = {k: torch.from_numpy(v) for k, v in batch.items()}
  with torch.no_grad():
    out_t = model(tb["frames"], tb["frame_mask"], tb["text"], tb["text_mask"])
    loss_t, per_t = torch_clipit.loss_fn(out_t, tb, config)
  from clipit_jax import losses  # pylint: disable=g-import-not-at-top
  per_f = losses.per_sample_losses(out_f, {k: jnp.asarray(v) for k, v in batch.items()},
                                   config)
  mask = batch["frame_mask"]
  diff = {}
  for key in ("logits", "scores", "reconstruction"):
    a = np.asarray(out_f[key])
    b = out_t[key].numpy()
    sel = mask if key != "reconstruction" else mask[..., None].repeat(a.shape[-1], -1)
    diff[key] = float(np.max(np.abs(a - b)[sel]))
  for key in ("classification", "diversity", "reconstruction", "total"):
    diff[f"loss_{key}"] = float(np.max(np.abs(np.asarray(per_f[key]) - per_t[key].numpy())))
  # Gradients of the training loss (dropout off): the backward passes agree too.
  jb = {k: jnp.asarray(v) for k, v in batch.items()}
  sample_mask = jnp.any(jb["frame_mask"], axis=-1)

  def jax_loss(p):
    out = models.CLIPIt(cfg).apply({"params": p}, jb["frames"], jb["frame_mask"], jb["text"],
                                   jb["text_mask"])
    return losses.batch_mean(losses.per_sample_losses(out, jb, config)["total"], sample_mask)

  grads = jax.grad(jax_loss)(params)
  model.zero_grad()
  out_t = model(tb["frames"], tb["frame_mask"], tb["text"], tb["text_mask"])
  torch_clipit.loss_fn(out_t, tb, config)[0].backward()
  pairs = {
      "frame_projection": (grads["frame_projection"]["kernel"],
                           model.frame_projection.weight.grad.T),
      "encoder_0.mlp.dense_0": (grads["scorer"]["encoder_0"]["MlpBlock_0"]["Dense_0"]["kernel"],
                                model.scorer.encoder[0].mlp.dense_0.weight.grad.T),
      "decoder_5.cross_attention.out": (
          np.asarray(grads["scorer"][f"decoder_{cfg.num_decoder_layers - 1}"]
                     ["cross_attention"]["out"]["kernel"]).reshape(cfg.width, -1),
          model.scorer.decoder[-1].cross_attention.out.weight.grad.T),
      "reconstruct": (grads["scorer"]["reconstruct"]["kernel"], model.scorer.reconstruct.weight.grad.T),
  }
  grad_rel = {}
  for name, (g, t) in pairs.items():
    g, t = np.asarray(g, np.float64), t.detach().numpy().astype(np.float64)
    grad_rel[name] = float(np.linalg.norm(g - t) / max(np.linalg.norm(g), 1e-30))
  result = dict(flax_params=flax_count, torch_params=torch_count,
                params_missed_by_copy=missed, max_abs_diff=diff, tolerance=tolerance,
                grad_relative_diff=grad_rel, attention=attention,
                text_norm=flax_has_text_norm(cfg),
                null_text_token=bool(cfg.get("null_text_token", False)))
  result["ok"] = bool(flax_count == torch_count and not missed
                      and diff["scores"] <= tolerance and diff["logits"] <= 10 * tolerance
                      and diff["reconstruction"] <= 10 * tolerance
                      and max(grad_rel.values()) <= 1e-3)
  return result


def check_bfloat16(config, field: str = "dtype", batch_size: int = 2) -> dict:
  """Relative error of bfloat16 against float32 on the same weights and batch.

  `field` is 'dtype' (all compute in bfloat16) or 'matmul_dtype' (bfloat16 operands
  of the weight matmuls only). Compares the forward outputs and the gradient of
  the supervised loss (dropout off).
  """
  config = config.copy_and_resolve_references()
  config.model.dtype = config.model.matmul_dtype = "float32"
  params = models.init_params(config.model, jax.random.PRNGKey(1))
  batch = make_batch(batch_size, config.model, seed=4)
  args = (batch["frames"], batch["frame_mask"], batch["text"], batch["text_mask"])
  config16 = config.copy_and_resolve_references()
  config16.model[field] = "bfloat16"

  def forward_and_grad(cfg):
    model = models.CLIPIt(cfg.model)

    def loss(p):
      out = model.apply({"params": p}, *args)
      return jnp.mean(losses.per_sample_losses(out, batch, cfg)["total"]), out

    grads, out = jax.jit(jax.grad(loss, has_aux=True))(params)
    return out, grads

  (f32, g32), (b16, g16) = forward_and_grad(config), forward_and_grad(config16)

  def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-12))

  errors = {key: rel(f32[key], b16[key]) for key in ("scores", "reconstruction")}
  errors["gradients"] = rel(*(np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)])
                              for g in (g32, g16)))
  return dict(field=field, relative_error=errors, ok=all(v < 1e-2 for v in errors.values()))


# ------------------------------------------------------------------ timing --


def shard_for_pmap(batch: dict[str, np.ndarray]) -> dict:
  """Puts `[devices, ...]` arrays on the local devices, split along the first axis.

  `jax.device_put_sharded` is deprecated (an error in JAX 0.10) and
  `PmapSharding` is gone; a `NamedSharding` over a 1-d mesh of the local devices
  is what pmap takes without a copy. Falls back to host arrays (pmap then
  copies them at every call).
  """
  try:
    mesh = jax.sharding.Mesh(np.array(jax.local_devices()), ("devices",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("devices"))
    return {k: jax.device_put(v, sharding) for k, v in batch.items()}
  except Exception:  # pylint: disable=broad-except
    return batch


def time_jax(config, batch_np, *, pmapped: bool, warmup: int, steps: int,
             max_wait: float) -> dict:
  """Steps/s of `train.make_train_step(config, pmapped=...)`, plus XLA's FLOP count."""
  state = train.create_train_state(config, jax.random.PRNGKey(0))
  rng = jax.random.PRNGKey(1)
  step = train.make_train_step(config, pmapped=pmapped)
  if pmapped:
    n = jax.local_device_count()
    if batch_np["frames"].shape[0] % n:
      raise ValueError(f"batch must divide over {n} devices")
    batch = {k: v.reshape((n, -1) + v.shape[1:]) for k, v in batch_np.items()}
    batch = shard_for_pmap(batch)
    state = train.replicate(state, config.axis_name)
    rng = train.replicate(rng, config.axis_name)
  else:
    batch = jax.device_put(batch_np)
  t0 = time.perf_counter()
  if pmapped:
    flops = None  # pmap has no lower().compile().cost_analysis() of its own.
    fn = step
  else:
    compiled = step.lower(state, batch, rng).compile()
    flops = _common.xla_flops(compiled)
    fn = compiled
  holder = [state]

  def run():
    holder[0], metrics = fn(holder[0], batch, rng)
    jax.block_until_ready((holder[0], metrics))
    return metrics

  run()  # compile (pmap) / first call
  compile_s = time.perf_counter() - t0
  r = _common.measure(run, warmup=max(0, warmup - 1), repeats=steps, max_wait_s=max_wait)
  loss = float(np.asarray(run()["total"]).reshape(-1)[0])
  r.update(steps_per_s=1.0 / r["median_s"], compile_and_first_s=compile_s, xla_flops=flops,
           final_loss=loss)
  gc.collect()
  return r


def time_torch(config, batch_np, *, compile_mode: str | None, attention: str, warmup: int,
               steps: int, max_wait: float, autocast: bool = False) -> dict:
  """Steps/s of the PyTorch port: eager (`compile_mode=None`) or torch.compile.

  `autocast`: the forward under `torch.autocast('cpu', torch.bfloat16)`, PyTorch's
  mixed precision (matmuls in bfloat16), the peer of `matmul_dtype='bfloat16'`.
  """
  import torch  # pylint: disable=g-import-not-at-top
  import torch_clipit  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  model = torch_clipit.CLIPIt(config.model, text_norm=flax_has_text_norm(config.model),
                             attention=attention)
  model.train()
  optimizer = torch_clipit.make_optimizer(model, config)
  batch = {k: torch.from_numpy(v.copy()) for k, v in batch_np.items()}

  if compile_mode is None:
    forward_loss = lambda b: torch_clipit.loss_fn(  # noqa: E731
        model(b["frames"], b["frame_mask"], b["text"], b["text_mask"]), b, config)[0]
  else:
    def _fl(b):
      return torch_clipit.loss_fn(
          model(b["frames"], b["frame_mask"], b["text"], b["text_mask"]), b, config)[0]
    forward_loss = torch.compile(_fl, mode=None if compile_mode == "default" else compile_mode)

  def run():
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
      loss = forward_loss(batch)
    loss.backward()
    optimizer.step()
    return loss.detach()

  t0 = time.perf_counter()
  run()  # compile / first call
  compile_s = time.perf_counter() - t0
  r = _common.measure(run, warmup=max(0, warmup - 1), repeats=steps, max_wait_s=max_wait)
  r.update(steps_per_s=1.0 / r["median_s"], compile_and_first_s=compile_s,
           final_loss=float(run()), threads=torch.get_num_threads())
  gc.collect()
  return r


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--batch", type=int, default=16,
                      help="windows of 256 frames per step (the paper: 100; default 16 "
                      "keeps the default run to a few minutes on 2 CPU cores)")
  parser.add_argument("--steps", type=int, default=3, help="timed steps (median reported)")
  parser.add_argument("--warmup", type=int, default=2,
                      help="untimed steps first (the first one compiles)")
  parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                      help="JAX compute dtype (config.model.dtype); parameters stay float32. "
                      "bfloat16 is for accelerators; its outputs are checked against float32")
  parser.add_argument("--torch-attention", choices=("explicit", "sdpa"), default="explicit",
                      help="PyTorch attention: 'explicit' as Flax computes it, or PyTorch's "
                      "fused scaled_dot_product_attention")
  parser.add_argument("--compile-mode", default="default",
                      help="torch.compile mode (default, reduce-overhead, max-autotune)")
  parser.add_argument("--microbatch", type=int, default=4,
                      help="config.microbatch_size of the tuned JAX rows (jit_micro, pmap, "
                      "bf16mm): windows per forward/backward pass, gradients summed")
  parser.add_argument("--skip", nargs="*", default=[],
                      choices=("jit", "jit_micro", "bf16mm", "pmap", "eager", "eager_bf16",
                               "compile", "matmul"),
                      help="variants not to run")
  parser.add_argument("--check", action="store_true",
                      help="first check the port: parameter counts and outputs on the same "
                      "weights (and bfloat16 against float32 with --dtype bfloat16)")
  parser.add_argument("--matmul-n", type=int, default=4096, help="side of the ceiling matmul")
  parser.add_argument("--max-wait", type=float, default=180.0,
                      help="seconds to wait for other processes to go quiet before each timing")
  parser.add_argument("--quick", action="store_true",
                      help="smoke run: batch 2, 1 timed step, 1 warm-up, matmul 2048")
  parser.add_argument("--out", default=_common.default_out("train_step"), help="JSON results")
  args = parser.parse_args(argv)
  if args.quick:
    args.batch, args.steps, args.warmup, args.matmul_n = 2, 1, 1, 2048

  config = default.get_config()
  config.model.dtype = args.dtype
  cfg = config.model
  record = dict(benchmark="train_step", machine=_common.machine_info(), args=vars(args),
                model=dict(width=cfg.width, layers=[cfg.num_encoder_layers, cfg.num_decoder_layers],
                           heads=cfg.num_heads, window=cfg.window, frame_dim=cfg.frame_dim,
                           text_fusion=cfg.text_fusion, num_captions=cfg.num_captions,
                           dtype=cfg.dtype, text_norm=flax_has_text_norm(cfg),
                           null_text_token=bool(cfg.get("null_text_token", False))),
                results={})
  torch_ok = True
  if importlib.util.find_spec("torch") is None:
    torch_ok = False
    print("torch is not installed (pip install -e .[bench]); PyTorch rows skipped")

  if args.check:
    if torch_ok:
      chk = check_port(config)
      print(f"port check: Flax {chk['flax_params']:,} parameters, PyTorch "
            f"{chk['torch_params']:,}; max |diff| scores {chk['max_abs_diff']['scores']:.2e}, "
            f"logits {chk['max_abs_diff']['logits']:.2e}, reconstruction "
            f"{chk['max_abs_diff']['reconstruction']:.2e}, loss "
            f"{chk['max_abs_diff']['loss_total']:.2e}; gradients relative diff <= "
            f"{max(chk['grad_relative_diff'].values()):.1e} -> {'OK' if chk['ok'] else 'FAILED'}")
      record["check"] = chk
      if not chk["ok"]:
        print(chk)
    for field in (["dtype"] if args.dtype == "bfloat16" else []) + ["matmul_dtype"]:
      b16 = check_bfloat16(config, field)
      print(f"{field}=bfloat16 vs float32: relative error "
            f"{ {k: f'{v:.1e}' for k, v in b16['relative_error'].items()} } -> "
            f"{'OK' if b16['ok'] else 'FAILED'}")
      record[f"check_bfloat16_{field}"] = b16

  batch = make_batch(args.batch, cfg)
  record["analytic_flops_per_step"] = analytic_flops(cfg, args.batch)
  res = record["results"]
  common = dict(warmup=args.warmup, steps=args.steps, max_wait=args.max_wait)

  sampler = _common.RssSampler()

  def attempt(name, fn):
    print(f"timing {name} ...", flush=True)
    gc.collect()
    rss0 = _common.current_rss_mib()
    sampler.reset()
    try:
      res[name] = fn()
      res[name]["rss_before_mib"] = round(rss0, 1)
      res[name]["peak_rss_mib"] = round(sampler.peak(), 1)
      print(f"  {name}: {res[name]['median_s']:.3f} s/step "
            f"(load before {res[name]['load']['loadavg_1m']}, other processes "
            f"{res[name]['load']['foreign_cores_during']} cores during)", flush=True)
    except Exception as e:  # pylint: disable=broad-except
      res[name] = dict(error=f"{type(e).__name__}: {str(e).splitlines()[0][:500]}"
                       if str(e) else type(e).__name__,
                       traceback=traceback.format_exc()[-3000:])
      print(f"  {name} FAILED: {res[name]['error']}", flush=True)
    gc.collect()

  micro = config.copy_and_resolve_references()
  micro.microbatch_size = args.microbatch
  mixed = micro.copy_and_resolve_references()
  mixed.model.matmul_dtype = "bfloat16"
  m = args.microbatch
  if "jit" not in args.skip:
    attempt("jax_jit", functools.partial(time_jax, config, batch, pmapped=False, **common))
  if "jit_micro" not in args.skip:
    attempt(f"jax_jit_micro{m}", functools.partial(time_jax, micro, batch, pmapped=False,
                                                   **common))
  if "pmap" not in args.skip:
    attempt(f"jax_pmap_micro{m}", functools.partial(time_jax, micro, batch, pmapped=True,
                                                    **common))
  if "bf16mm" not in args.skip:
    attempt(f"jax_jit_micro{m}_bf16mm", functools.partial(time_jax, mixed, batch,
                                                          pmapped=False, **common))
  if torch_ok and "eager" not in args.skip:
    attempt("torch_eager", functools.partial(time_torch, config, batch, compile_mode=None,
                                             attention=args.torch_attention, **common))
  if torch_ok and "eager_bf16" not in args.skip:
    attempt("torch_eager_autocast_bf16", functools.partial(
        time_torch, config, batch, compile_mode=None, attention=args.torch_attention,
        autocast=True, **common))
  if torch_ok and "compile" not in args.skip:
    attempt("torch_compile", functools.partial(time_torch, config, batch,
                                               compile_mode=args.compile_mode,
                                               attention=args.torch_attention, **common))
  if "matmul" not in args.skip:
    print("timing the matmul ceiling ...", flush=True)
    record["matmul"] = dict(jax=_common.jax_matmul_rate(args.matmul_n,
                                                        max_wait_s=args.max_wait))
    if torch_ok:
      record["matmul"]["torch"] = _common.torch_matmul_rate(args.matmul_n,
                                                            max_wait_s=args.max_wait)

  # ------------------------------------------------------------- report --
  flops = (res.get("jax_jit") or {}).get("xla_flops")
  ceiling = max((m["flop_per_s"] for m in record.get("matmul", {}).values()), default=None)
  record["flops_per_step"] = flops
  record["ceiling_flop_per_s"] = ceiling
  eager = (res.get("torch_eager") or {}).get("steps_per_s")
  compiled = (res.get("torch_compile") or {}).get("steps_per_s")
  rows = []
  for name, r in res.items():
    if "error" in r:
      rows.append([name, None, None, None, None, None, None, None, None,
                   "FAILED: " + r["error"][:80]])
      continue
    achieved = flops / r["median_s"] if flops else None
    rows.append([
        name, r["median_s"], r["steps_per_s"], r["steps_per_s"] * args.batch,
        r["peak_rss_mib"] / 1024,
        r["steps_per_s"] / eager if eager else None,
        r["steps_per_s"] / compiled if compiled else None,
        _common.gflops(achieved),
        100 * achieved / ceiling if achieved and ceiling else None,
        _common.load_str(r["load"])])
    r["achieved_flop_per_s"] = achieved
    r["percent_of_matmul"] = 100 * achieved / ceiling if achieved and ceiling else None
  print()
  print(f"training step, batch {args.batch} x {cfg.window} frames, {cfg.dtype}; "
        f"XLA FLOPs/step {flops and flops / 1e12:.3f} T (analytic matmul count "
        f"{record['analytic_flops_per_step'] / 1e12:.3f} T)")
  print(_common.table(rows, ["variant", "s/step", "steps/s", "windows/s", "peak RSS GiB",
                             "x torch eager",
                             "x torch.compile", "GFLOP/s", "% of matmul", "load / other"]))
  if "matmul" in record:
    mm = record["matmul"]
    print(_common.table(
        [[k, v["n"], v["median_s"], _common.gflops(v["flop_per_s"]),
          _common.load_str(v["load"])]
         for k, v in mm.items()],
        ["matmul ceiling", "n", "s", "GFLOP/s", "load / other"]))
  _common.write_json(args.out, record)
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""Training step of the paper's CLIP-It: JAX (train.py's shard_map, pmap, jit) against PyTorch.

The model is `configs/default.py`'s (width 512, 6+6 layers, 8 heads, windows of 256
frames of 512-d features, 7 captions fused by 'concat', supervised loss, Adam with
coupled weight decay). The PyTorch peer is the port in `torch_clipit.py`.

One command measures, on the same machine and the same batch, for each instruction-set
variant ('native'; 'avx2': this CPU restricted to AVX2 where the libraries allow it),
each in its own process:
  * train_py: the step as `train.py` runs it: `jax.jit(jax.shard_map(train_step))` over
    a mesh of all devices, with the config's defaults (`microbatch_size` ...);
  * pmap: the same step under `config.parallelism='pmap'`; jit: under `jax.jit` on one
    device, no collectives;
  * micro: jit with other `microbatch_size`s (the default follows these rows);
  * attention: the forward pass (evaluation) and a step without attention dropout, with
    `model.attention` 'einsum' (Flax) and 'dot_product_attention' (jax.nn);
  * bf16mm: train_py with `model.matmul_dtype='bfloat16'` (mixed precision);
  * eager, eager_bf16, compile: PyTorch eager, eager under `torch.autocast(bfloat16)`,
    and `torch.compile` (model and losses; Adam eager);
  * matmul: a large float32 matmul in jnp and torch, the machine's limit;
  * epoch: two `train.train_and_evaluate` epochs on the synthetic data set (native only):
    the second epoch's training loop against its steps x the train_py step time.
The JSON records the machine (CPU, SIMD flags, `uptime` before and after), the
restricting environment, and the load on the machine during every timing.

  python benchmarks/train_step.py                    # everything (~1 h on 2 cores)
  python benchmarks/train_step.py --check --variants native --rows train_py eager compile
  python benchmarks/train_step.py --quick            # a smoke run (batch 2)
  python benchmarks/train_step.py --dtype bfloat16 --variants native --rows train_py bf16mm  # GPU
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from clipit_jax import losses  # noqa: E402
from clipit_jax import models  # noqa: E402
from clipit_jax import parallel  # noqa: E402
from clipit_jax import train  # noqa: E402
from clipit_jax import train_step  # noqa: E402
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
    labels=(rng.random((batch, t)) < 0.15).astype(np.float32),
  )


def analytic_flops(cfg, batch: int) -> float:
  """Matmul FLOPs of one training step (3x the forward's), for a sanity check."""
  t, w, f = cfg.window, cfg.width, cfg.mlp_dim
  tokens = batch * t
  attn = 4 * w * w + 2 * t * w  # q, k, v, out projections + scores and weighted sum
  mlp = 2 * w * f
  enc = attn + mlp
  dec = 2 * attn + mlp
  per_token = (
    cfg.num_encoder_layers * enc
    + cfg.num_decoder_layers * dec
    + cfg.frame_dim * w
    + w * cfg.frame_dim  # projection, reconstruction
    + 4 * w * w  # language attention (q and out at width; k, v on 1 token)
    + w * cfg.head_mlp_dim
    + cfg.head_mlp_dim
    + t * cfg.frame_dim
  )  # diversity loss similarity
  return 3 * 2 * per_token * tokens


def flax_has_text_norm(cfg) -> bool:
  """Whether this version of the Flax model normalises the text (TextFusion.input_norm)."""
  return 'input_norm' in getattr(models.TextFusion, '__dataclass_fields__', {}) and bool(
    cfg.input_norm
  )


# ------------------------------------------------------------------- check --


def check_port(
  config, batch_size: int = 2, attention: str = 'explicit', tolerance: float = 1e-4
) -> dict:
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
  config.model.dtype = 'float32'  # the port is float32
  cfg = config.model
  params = models.init_params(cfg, jax.random.PRNGKey(1))
  flax_count = int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
  model = torch_clipit.CLIPIt(cfg, text_norm=flax_has_text_norm(cfg), attention=attention)
  torch_count = torch_clipit.count_params(model)
  with torch.no_grad():
    for p in model.parameters():
      p.fill_(float('nan'))
  torch_clipit.load_flax_params(model, params)
  missed = [n for n, p in model.named_parameters() if torch.isnan(p).any()]
  model.eval()
  batch = make_batch(batch_size, cfg, seed=3)
  batch['frame_mask'][-1, cfg.window // 3 :] = False  # Some padding, to test masks.
  batch['labels'][-1, cfg.window // 3 :] = 0.0
  batch['text_mask'][-1, -2:] = False
  out_f = models.CLIPIt(cfg).apply(
    {'params': params}, batch['frames'], batch['frame_mask'], batch['text'], batch['text_mask']
  )
  tb = {k: torch.from_numpy(v) for k, v in batch.items()}
  with torch.no_grad():
    out_t = model(tb['frames'], tb['frame_mask'], tb['text'], tb['text_mask'])
    loss_t, per_t = torch_clipit.loss_fn(out_t, tb, config)
  from clipit_jax import losses  # pylint: disable=g-import-not-at-top

  per_f = losses.per_sample_losses(out_f, {k: jnp.asarray(v) for k, v in batch.items()}, config)
  mask = batch['frame_mask']
  diff = {}
  for key in ('logits', 'scores', 'reconstruction'):
    a = np.asarray(out_f[key])
    b = out_t[key].numpy()
    sel = mask if key != 'reconstruction' else mask[..., None].repeat(a.shape[-1], -1)
    diff[key] = float(np.max(np.abs(a - b)[sel]))
  for key in ('classification', 'diversity', 'reconstruction', 'total'):
    diff[f'loss_{key}'] = float(np.max(np.abs(np.asarray(per_f[key]) - per_t[key].numpy())))
  # Gradients of the training loss (dropout off): the backward passes agree too.
  jb = {k: jnp.asarray(v) for k, v in batch.items()}
  sample_mask = jnp.any(jb['frame_mask'], axis=-1)

  def jax_loss(p):
    out = models.CLIPIt(cfg).apply(
      {'params': p}, jb['frames'], jb['frame_mask'], jb['text'], jb['text_mask']
    )
    return losses.batch_mean(losses.per_sample_losses(out, jb, config)['total'], sample_mask)

  grads = jax.grad(jax_loss)(params)
  model.zero_grad()
  out_t = model(tb['frames'], tb['frame_mask'], tb['text'], tb['text_mask'])
  torch_clipit.loss_fn(out_t, tb, config)[0].backward()
  pairs = {
    'frame_projection': (grads['frame_projection']['kernel'], model.frame_projection.weight.grad.T),
    'encoder_0.mlp.dense_0': (
      grads['scorer']['encoder_0']['MlpBlock_0']['Dense_0']['kernel'],
      model.scorer.encoder[0].mlp.dense_0.weight.grad.T,
    ),
    'decoder_5.cross_attention.out': (
      np.asarray(
        grads['scorer'][f'decoder_{cfg.num_decoder_layers - 1}']['cross_attention']['out']['kernel']
      ).reshape(cfg.width, -1),
      model.scorer.decoder[-1].cross_attention.out.weight.grad.T,
    ),
    'reconstruct': (
      grads['scorer']['reconstruct']['kernel'],
      model.scorer.reconstruct.weight.grad.T,
    ),
  }
  grad_rel = {}
  for name, (g, t) in pairs.items():
    g, t = np.asarray(g, np.float64), t.detach().numpy().astype(np.float64)
    grad_rel[name] = float(np.linalg.norm(g - t) / max(np.linalg.norm(g), 1e-30))
  result = dict(
    flax_params=flax_count,
    torch_params=torch_count,
    params_missed_by_copy=missed,
    max_abs_diff=diff,
    tolerance=tolerance,
    grad_relative_diff=grad_rel,
    attention=attention,
    text_norm=flax_has_text_norm(cfg),
    null_text_token=bool(cfg.get('null_text_token', False)),
  )
  result['ok'] = bool(
    flax_count == torch_count
    and not missed
    and diff['scores'] <= tolerance
    and diff['logits'] <= 10 * tolerance
    and diff['reconstruction'] <= 10 * tolerance
    and max(grad_rel.values()) <= 1e-3
  )
  return result


def check_bfloat16(config, field: str = 'dtype', batch_size: int = 2) -> dict:
  """Relative error of bfloat16 against float32 on the same weights and batch.

  `field` is 'dtype' (all compute in bfloat16) or 'matmul_dtype' (bfloat16 operands
  of the weight matmuls only). Compares the forward outputs and the gradient of
  the supervised loss (dropout off).
  """
  config = config.copy_and_resolve_references()
  config.model.dtype = config.model.matmul_dtype = 'float32'
  params = models.init_params(config.model, jax.random.PRNGKey(1))
  batch = make_batch(batch_size, config.model, seed=4)
  config16 = config.copy_and_resolve_references()
  config16.model[field] = 'bfloat16'

  def forward_and_grad(cfg):
    model = models.CLIPIt(cfg.model)

    def loss(p, b):  # The batch is an argument: as a constant, XLA would fold it slowly.
      out = model.apply({'params': p}, b['frames'], b['frame_mask'], b['text'], b['text_mask'])
      return jnp.mean(losses.per_sample_losses(out, b, cfg)['total']), out

    grads, out = jax.jit(jax.grad(loss, has_aux=True))(params, batch)
    return out, grads

  (f32, g32), (b16, g16) = forward_and_grad(config), forward_and_grad(config16)

  def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-12))

  errors = {key: rel(f32[key], b16[key]) for key in ('scores', 'reconstruction')}
  errors['gradients'] = rel(
    *(np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)]) for g in (g32, g16))
  )
  return dict(field=field, relative_error=errors, ok=all(v < 1e-2 for v in errors.values()))


# ------------------------------------------------------------------ timing --

# Instruction-set variants, each timed in its own process (the libraries read these
# variables when they start). 'avx2' restricts XLA's generated code and PyTorch's ATen
# and oneDNN kernels to AVX2; the matmul libraries (YNNPACK in XLA, MKL in PyTorch)
# choose their kernels from CPUID and keep AVX-512 (see benchmarks/README.md).
VARIANTS = {
  'native': {},
  'avx2': {
    'XLA_FLAGS': '--xla_cpu_max_isa=AVX2',
    'ATEN_CPU_CAPABILITY': 'avx2',
    'ONEDNN_MAX_CPU_ISA': 'AVX2',
  },
}
ROWS = (
  'train_py',
  'pmap',
  'jit',
  'micro',
  'attention',
  'bf16mm',
  'eager',
  'eager_bf16',
  'compile',
  'matmul',
  'epoch',
)


def placed_step(config, batch_np, mode: str) -> tuple:
  """(step, state, batch, rng): `parallel.make_train_step` and its inputs on device.

  `mode`: 'shard_map' or 'pmap' (`config.parallelism`, over a mesh of all devices, as
  train.py runs it), or 'jit' (one device, no collectives).
  """
  config = config.copy_and_resolve_references()
  state = train_step.create_train_state(config, jax.random.PRNGKey(0))
  rng = jax.random.PRNGKey(1)
  if mode == 'jit':
    step = jax.jit(functools.partial(train_step.train_step, config=config), donate_argnums=(0,))
    return step, state, jax.device_put(batch_np), rng
  config.parallelism = mode
  step = parallel.make_train_step(config, parallel.make_mesh(config))
  n = jax.local_device_count()
  if batch_np['frames'].shape[0] % n:
    raise ValueError(f'batch must divide over {n} devices')
  batch = step.place_batch({k: v.reshape((n, -1) + v.shape[1:]) for k, v in batch_np.items()})
  return step, step.place_state(state), batch, step.place_state(rng)


def time_jax(
  config, batch_np, *, mode: str, warmup: int, steps: int, max_wait: float, retries: int = 2
) -> dict:
  """Step time of `parallel.make_train_step` as train.py runs it, plus XLA's FLOP count.

  `mode`: as `placed_step`'s (one device on a CPU).
  """
  step, state, batch, rng = placed_step(config, batch_np, mode)
  t0 = time.perf_counter()
  flops, fn = None, step
  if mode != 'pmap':  # pmap has no lower().compile().cost_analysis() of its own.
    fn = step.lower(state, batch, rng).compile()
    flops = _common.xla_flops(fn)
  holder = [state]

  def run():
    holder[0], metrics = fn(holder[0], batch, rng)
    jax.block_until_ready((holder[0], metrics))
    return metrics

  run()  # compile (pmap) / first call
  compile_s = time.perf_counter() - t0
  r = _common.measure(
    run, warmup=max(0, warmup - 1), repeats=steps, max_wait_s=max_wait, retries=retries
  )
  loss = float(np.ravel(run()['total'])[0])
  r.update(
    steps_per_s=1.0 / r['median_s'], compile_and_first_s=compile_s, xla_flops=flops, final_loss=loss
  )
  gc.collect()
  return r


def time_forward(
  config, batch_np, *, warmup: int, steps: int, max_wait: float, retries: int = 2
) -> dict:
  """Time of the jitted deterministic forward pass (what evaluation and summarizing run)."""
  params = models.init_params(config.model, jax.random.PRNGKey(0))
  apply = jax.jit(models.CLIPIt(config.model).apply)
  args = jax.device_put([batch_np[k] for k in ('frames', 'frame_mask', 'text', 'text_mask')])
  run = lambda: jax.block_until_ready(apply({'params': params}, *args))  # noqa: E731
  t0 = time.perf_counter()
  run()
  compile_s = time.perf_counter() - t0
  r = _common.measure(run, warmup=warmup, repeats=steps, max_wait_s=max_wait, retries=retries)
  r.update(
    steps_per_s=1.0 / r['median_s'],
    compile_and_first_s=compile_s,
    xla_flops=_common.xla_flops(apply.lower({'params': params}, *args).compile()),
  )
  return r


def time_torch(
  config,
  batch_np,
  *,
  compile_mode: str | None,
  attention: str,
  warmup: int,
  steps: int,
  max_wait: float,
  retries: int = 2,
  autocast: bool = False,
) -> dict:
  """Step time of the PyTorch port: eager (`compile_mode=None`) or torch.compile.

  `autocast`: the forward under `torch.autocast('cpu', torch.bfloat16)`, PyTorch's
  mixed precision (matmuls in bfloat16), the peer of `matmul_dtype='bfloat16'`.
  """
  import torch  # pylint: disable=g-import-not-at-top
  import torch_clipit  # pylint: disable=g-import-not-at-top

  torch.manual_seed(0)
  model = torch_clipit.CLIPIt(
    config.model, text_norm=flax_has_text_norm(config.model), attention=attention
  )
  model.train()
  optimizer = torch_clipit.make_optimizer(model, config)
  batch = {k: torch.from_numpy(v.copy()) for k, v in batch_np.items()}

  def forward_loss(b):
    return torch_clipit.loss_fn(
      model(b['frames'], b['frame_mask'], b['text'], b['text_mask']), b, config
    )[0]

  if compile_mode is not None:
    forward_loss = torch.compile(
      forward_loss, mode=None if compile_mode == 'default' else compile_mode
    )

  def run():
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
      loss = forward_loss(batch)
    loss.backward()
    optimizer.step()
    return loss.detach()

  t0 = time.perf_counter()
  run()  # compile / first call
  compile_s = time.perf_counter() - t0
  r = _common.measure(
    run, warmup=max(0, warmup - 1), repeats=steps, max_wait_s=max_wait, retries=retries
  )
  r.update(
    steps_per_s=1.0 / r['median_s'],
    compile_and_first_s=compile_s,
    final_loss=float(run()),
    threads=torch.get_num_threads(),
    cpu_capability=torch.backends.cpu.get_cpu_capability(),
  )
  gc.collect()
  return r


def time_epoch(
  batch: int, step_s: float | None, data_dir: str | None, max_wait: float = 180.0
) -> dict:
  """A whole `train.train_and_evaluate` epoch of the paper's model on the synthetic data set.

  Trains 2 epochs (the first compiles) at `batch` windows per step with train.py's
  defaults, and compares the second epoch's training loop (`train_seconds` in
  metrics.jsonl) with its steps times `step_s`, the step time measured alone.
  """
  import tempfile  # pylint: disable=g-import-not-at-top
  from clipit_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  from clipit_jax.datasets import loading  # pylint: disable=g-import-not-at-top

  data_dir = data_dir or str(_common.bench_cache_dir() / 'tfds')
  loading.load_builder('synthetic', 'tiny', data_dir, needs_manual_dir=False)
  config = default.get_config()
  config.data.update(dataset='synthetic', features='tiny', part='generic', data_dir=data_dir)
  config.update(batch_size=batch, num_epochs=2, progress=False)
  load = _common.wait_for_quiet(max_wait)
  monitor = _common.CpuMonitor()
  with tempfile.TemporaryDirectory() as workdir:
    t0 = time.perf_counter()
    train.train_and_evaluate(config, workdir)
    total_s = time.perf_counter() - t0
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      epochs = [json.loads(line) for line in f]
  load['foreign_cores_during'] = round(monitor.foreign_cores(), 2)
  windows = input_pipeline.video_windows(loading.load_data(config)['train'], config.model.window)
  steps = input_pipeline.num_batches(windows['window_id'].shape[0], batch, jax.device_count())
  second = epochs[-1]
  r = dict(
    steps=steps,
    windows=int(windows['window_id'].shape[0]),
    total_s=total_s,
    first_epoch_s=epochs[0]['epoch_seconds'],
    train_s=second['train_seconds'],
    epoch_s=second['epoch_seconds'],
    step_s=step_s,
    load=load,
  )
  if step_s:
    r['train_over_steps'] = second['train_seconds'] / (steps * step_s)
  return r


def run_variant(args, variant: str) -> dict:
  """Every row of one instruction-set variant, in this process."""
  config = default.get_config()
  config.model.dtype = args.dtype
  if args.microbatch is not None:
    config.microbatch_size = args.microbatch
  cfg = config.model
  rows = set(args.rows) - set(args.skip)
  record = dict(
    benchmark='train_step',
    variant=variant,
    machine=_common.machine_info(),
    args=vars(args),
    config=dict(
      microbatch_size=config.microbatch_size,
      microbatch_resolved=train_step.microbatch_size(config, args.batch),
      attention=cfg.get('attention'),
      parallelism=config.parallelism,
    ),
    model=dict(
      width=cfg.width,
      layers=[cfg.num_encoder_layers, cfg.num_decoder_layers],
      heads=cfg.num_heads,
      window=cfg.window,
      frame_dim=cfg.frame_dim,
      text_fusion=cfg.text_fusion,
      num_captions=cfg.num_captions,
      dtype=cfg.dtype,
      text_norm=flax_has_text_norm(cfg),
      null_text_token=bool(cfg.get('null_text_token', False)),
    ),
    results={},
  )
  torch_ok = importlib.util.find_spec('torch') is not None
  if not torch_ok:
    print('torch is not installed (pip install -e .[bench]); PyTorch rows skipped')

  if args.check:
    if torch_ok:
      chk = check_port(config)
      print(
        f'port check: Flax {chk["flax_params"]:,} parameters, PyTorch '
        f'{chk["torch_params"]:,}; max |diff| scores {chk["max_abs_diff"]["scores"]:.2e}, '
        f'logits {chk["max_abs_diff"]["logits"]:.2e}, reconstruction '
        f'{chk["max_abs_diff"]["reconstruction"]:.2e}, loss '
        f'{chk["max_abs_diff"]["loss_total"]:.2e}; gradients relative diff <= '
        f'{max(chk["grad_relative_diff"].values()):.1e} -> {"OK" if chk["ok"] else "FAILED"}'
      )
      record['check'] = chk
    for field in (['dtype'] if args.dtype == 'bfloat16' else []) + ['matmul_dtype']:
      b16 = check_bfloat16(config, field)
      print(
        f'{field}=bfloat16 vs float32: relative error '
        f'{ {k: f"{v:.1e}" for k, v in b16["relative_error"].items()} } -> '
        f'{"OK" if b16["ok"] else "FAILED"}'
      )
      record[f'check_bfloat16_{field}'] = b16

  batch = make_batch(args.batch, cfg)
  record['analytic_flops_per_step'] = analytic_flops(cfg, args.batch)
  res = record['results']
  common = dict(warmup=args.warmup, steps=args.steps, max_wait=args.max_wait, retries=args.retries)
  sampler = _common.RssSampler()

  def attempt(name, what, fn):
    print(f'[{variant}] timing {name} ...', flush=True)
    gc.collect()
    rss0 = _common.current_rss_mib()
    sampler.reset()
    try:
      res[name] = fn()
      res[name].update(
        what=what, rss_before_mib=round(rss0, 1), peak_rss_mib=round(sampler.peak(), 1)
      )
      print(
        f'  {name}: {res[name]["median_s"]:.3f} s '
        f'(load before {res[name]["load"]["loadavg_1m"]}, other processes '
        f'{res[name]["load"]["foreign_cores_during"]} cores during)',
        flush=True,
      )
    except Exception as e:  # pylint: disable=broad-except
      res[name] = dict(
        what=what,
        error=f'{type(e).__name__}: {str(e).splitlines()[0][:500]}' if str(e) else type(e).__name__,
        traceback=traceback.format_exc()[-3000:],
      )
      print(f'  {name} FAILED: {res[name]["error"]}', flush=True)
    gc.collect()

  def variant_of(**changes):
    c = config.copy_and_resolve_references()
    for key, value in changes.items():
      target = c
      *path, last = key.split('.')
      for part in path:
        target = target[part]
      target[last] = value
    return c

  resolved = train_step.microbatch_size(config, args.batch)
  micro = f'microbatches of {resolved or "the whole batch"}'
  if 'train_py' in rows:
    attempt(
      'jax_train_py',
      f"JAX, train.py's step: jit(shard_map), {micro}",
      functools.partial(time_jax, config, batch, mode='shard_map', **common),
    )
  if 'pmap' in rows:
    attempt(
      'jax_pmap',
      f"JAX, the same step under config.parallelism='pmap', {micro}",
      functools.partial(time_jax, config, batch, mode='pmap', **common),
    )
  if 'jit' in rows:
    attempt(
      'jax_jit',
      f'JAX, the same step under jit on one device, {micro}',
      functools.partial(time_jax, config, batch, mode='jit', **common),
    )
  if 'micro' in rows:
    for m in args.micro_sweep:
      if (
        m > args.batch
        or train_step.microbatch_size(variant_of(microbatch_size=m), args.batch) == resolved
      ):
        continue  # The same program as the jit row.
      attempt(
        f'jax_jit_micro{m or "whole"}',
        f'JAX jit, microbatches of {m or "the whole batch"}',
        functools.partial(time_jax, variant_of(microbatch_size=m), batch, mode='jit', **common),
      )
  if 'attention' in rows:
    for name in models.ATTENTIONS:
      attempt(
        f'jax_forward_{name}',
        f'JAX forward (evaluation), attention={name!r}',
        functools.partial(time_forward, variant_of(**{'model.attention': name}), batch, **common),
      )
      attempt(
        f'jax_jit_noattndrop_{name}',
        f'JAX jit step, attention_dropout_rate=0, attention={name!r}',
        functools.partial(
          time_jax,
          variant_of(**{'model.attention': name, 'model.attention_dropout_rate': 0.0}),
          batch,
          mode='jit',
          **common,
        ),
      )
  if 'bf16mm' in rows:
    attempt(
      'jax_train_py_bf16mm',
      f"mixed precision: train.py's step, {micro}, matmul_dtype='bfloat16'",
      functools.partial(
        time_jax,
        variant_of(**{'model.matmul_dtype': 'bfloat16'}),
        batch,
        mode='shard_map',
        **common,
      ),
    )
  torch_common = dict(attention=args.torch_attention, **common)
  if torch_ok and 'eager' in rows:
    attempt(
      'torch_eager',
      'PyTorch eager',
      functools.partial(time_torch, config, batch, compile_mode=None, **torch_common),
    )
  if torch_ok and 'eager_bf16' in rows:
    attempt(
      'torch_eager_autocast_bf16',
      'mixed precision: PyTorch eager, autocast(bfloat16)',
      functools.partial(
        time_torch, config, batch, compile_mode=None, autocast=True, **torch_common
      ),
    )
  if torch_ok and 'compile' in rows:
    attempt(
      'torch_compile',
      'PyTorch torch.compile (model and losses)',
      functools.partial(time_torch, config, batch, compile_mode=args.compile_mode, **torch_common),
    )
  if 'matmul' in rows:
    print(f'[{variant}] timing the matmul ceiling ...', flush=True)
    record['matmul'] = dict(jax=_common.jax_matmul_rate(args.matmul_n, max_wait_s=args.max_wait))
    if torch_ok:
      record['matmul']['torch'] = _common.torch_matmul_rate(args.matmul_n, max_wait_s=args.max_wait)
  if 'epoch' in rows and variant == 'native':
    print(f'[{variant}] timing a train.py epoch ...', flush=True)
    step_s = (res.get('jax_train_py') or {}).get('median_s')
    try:
      record['epoch'] = time_epoch(args.batch, step_s, args.data_dir, args.max_wait)
    except Exception as e:  # pylint: disable=broad-except
      record['epoch'] = dict(error=f'{type(e).__name__}: {str(e)[:300]}')
  sampler.stop()
  record['uptime_end'] = _common.uptime()
  return record


def report(record: dict, batch: int) -> None:
  """Prints one variant's tables (ratios against its own PyTorch rows)."""
  res = record['results']
  flops = next(
    (
      r.get('xla_flops')
      for k, r in res.items()
      if k in ('jax_train_py', 'jax_jit') and r.get('xla_flops')
    ),
    None,
  )
  ceiling = max((m['flop_per_s'] for m in record.get('matmul', {}).values()), default=None)
  record['flops_per_step'] = flops
  record['ceiling_flop_per_s'] = ceiling
  eager = (res.get('torch_eager') or {}).get('steps_per_s')
  compiled = (res.get('torch_compile') or {}).get('steps_per_s')
  rows = []
  for name, r in res.items():
    if 'error' in r:
      rows.append([name, None, None, None, None, None, None, None, 'FAILED: ' + r['error'][:80]])
      continue
    own = r.get('xla_flops') if name.startswith('jax_forward') else flops
    achieved = own / r['median_s'] if own else None
    forward = name.startswith('jax_forward')
    rows.append(
      [
        name,
        r['median_s'],
        r['peak_rss_mib'] / 1024,
        None if forward or not eager else r['steps_per_s'] / eager,
        None if forward or not compiled else r['steps_per_s'] / compiled,
        _common.gflops(achieved),
        100 * achieved / ceiling if achieved and ceiling else None,
        _common.load_str(r['load']),
        r['what'],
      ]
    )
    r['achieved_flop_per_s'] = achieved
    r['percent_of_matmul'] = 100 * achieved / ceiling if achieved and ceiling else None
  machine = record['machine']
  print(
    f'\n[{record["variant"]}] training step, batch {batch} x {record["model"]["window"]} '
    f'frames, {record["model"]["dtype"]}; {machine["cpu_model"]}, SIMD '
    f'{" ".join(machine["simd"])}; {machine["isa_env"] or "no ISA restriction"}; '
    f'{machine["uptime"]}'
  )
  print(
    f'XLA FLOPs/step {flops and flops / 1e12:.3f} T (analytic matmul count '
    f'{record["analytic_flops_per_step"] / 1e12:.3f} T)'
  )
  print(
    _common.table(
      rows,
      [
        'row',
        's',
        'peak RSS GiB',
        'x torch eager',
        'x torch.compile',
        'GFLOP/s',
        '% of matmul',
        'load / other',
        'what',
      ],
    )
  )
  if 'matmul' in record:
    print(
      _common.table(
        [
          [k, v['n'], v['median_s'], _common.gflops(v['flop_per_s']), _common.load_str(v['load'])]
          for k, v in record['matmul'].items()
        ],
        ['matmul ceiling', 'n', 's', 'GFLOP/s', 'load / other'],
      )
    )
  epoch = record.get('epoch')
  if epoch and 'error' not in epoch:
    print(
      f'train.py epoch 2 of the synthetic data set ({epoch["windows"]} windows, '
      f'{epoch["steps"]} steps of {batch}): training loop {epoch["train_s"]:.1f} s'
      + (
        f' = {epoch["train_over_steps"]:.3f} x (steps x {epoch["step_s"]:.2f} s)'
        if epoch.get('train_over_steps')
        else ''
      )
      + f'; whole epoch with validation and checkpoint {epoch["epoch_s"]:.1f} s '
      f'(load {_common.load_str(epoch["load"])})'
    )
  elif epoch:
    print(f'train.py epoch FAILED: {epoch["error"]}')


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    '--batch',
    type=int,
    default=16,
    help='windows of 256 frames per step (the paper: 100; default 16 '
    'keeps a variant to about 15 minutes on 2 CPU cores)',
  )
  parser.add_argument('--steps', type=int, default=3, help='timed steps (median reported)')
  parser.add_argument(
    '--warmup', type=int, default=2, help='untimed steps first (the first one compiles)'
  )
  parser.add_argument(
    '--variants',
    nargs='+',
    choices=tuple(VARIANTS),
    default=list(VARIANTS),
    help='instruction-set variants, each in its own process',
  )
  parser.add_argument('--variant', choices=tuple(VARIANTS), help=argparse.SUPPRESS)
  parser.add_argument(
    '--rows', nargs='+', choices=ROWS, default=list(ROWS), help='what to time (default: all)'
  )
  parser.add_argument('--skip', nargs='*', default=[], choices=ROWS, help='rows not to time')
  parser.add_argument(
    '--dtype',
    choices=('float32', 'bfloat16'),
    default='float32',
    help='JAX compute dtype (config.model.dtype); parameters stay float32. '
    'bfloat16 is for accelerators; its outputs are checked against float32',
  )
  parser.add_argument(
    '--microbatch',
    type=int,
    default=None,
    help='config.microbatch_size of the train.py rows (default: the '
    "config's, train_step.CPU_MICROBATCH on a CPU; 0: the whole batch at once)",
  )
  parser.add_argument(
    '--micro-sweep',
    type=int,
    nargs='*',
    default=[0, 1, 2, 4, 8],
    help="microbatch sizes of the 'micro' rows (jit; 0: the whole batch)",
  )
  parser.add_argument(
    '--torch-attention',
    choices=('explicit', 'sdpa'),
    default='explicit',
    help="PyTorch attention: 'explicit' as Flax computes it, or PyTorch's "
    'fused scaled_dot_product_attention',
  )
  parser.add_argument(
    '--compile-mode',
    default='default',
    help='torch.compile mode (default, reduce-overhead, max-autotune)',
  )
  parser.add_argument(
    '--check',
    action='store_true',
    help='first check the port: parameter counts and outputs on the same '
    'weights (and bfloat16 against float32)',
  )
  parser.add_argument('--matmul-n', type=int, default=4096, help='side of the ceiling matmul')
  parser.add_argument(
    '--data-dir',
    default=None,
    help='TFDS data_dir of the synthetic data set for the epoch row (built '
    "there when absent; default: the benchmarks' cache)",
  )
  parser.add_argument(
    '--max-wait',
    type=float,
    default=180.0,
    help='seconds to wait for other processes to go quiet before each timing',
  )
  parser.add_argument(
    '--retries',
    type=int,
    default=2,
    help='times a timing is repeated when other processes were busy during it',
  )
  parser.add_argument(
    '--quick', action='store_true', help='smoke run: batch 2, 1 timed step, 1 warm-up, matmul 2048'
  )
  parser.add_argument('--out', default=_common.default_out('train_step'), help='JSON results')
  args = parser.parse_args(argv)
  if args.quick:
    args.batch, args.steps, args.warmup, args.matmul_n = 2, 1, 1, 2048

  if args.variant:  # A child: one variant, in this process.
    record = run_variant(args, args.variant)
    _common.write_json(args.out, record)
    return 0
  record = dict(benchmark='train_step', uptime_start=_common.uptime(), variants={})
  forwarded = [a for a in (argv if argv is not None else sys.argv[1:])]
  for variant in args.variants:
    out = pathlib.Path(args.out).with_suffix(f'.{variant}.json')
    env = dict(os.environ)
    for key, value in VARIANTS[variant].items():
      env[key] = (env.get(key, '') + ' ' + value).strip() if key == 'XLA_FLAGS' else value
    print(f'=== variant {variant}: {VARIANTS[variant] or "no restriction"}', flush=True)
    subprocess.run(
      [sys.executable, __file__, *forwarded, '--variant', variant, '--out', str(out)],
      env=env,
      check=False,
    )
    if out.exists():
      record['variants'][variant] = json.loads(out.read_text())
      _common.write_json(args.out, record)  # Kept if a later variant is interrupted.
      out.unlink()
  record['uptime_end'] = _common.uptime()
  for variant in record['variants'].values():
    report(variant, args.batch)
  _common.write_json(args.out, record)
  return 0


if __name__ == '__main__':
  sys.exit(main())

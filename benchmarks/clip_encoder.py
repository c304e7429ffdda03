"""CLIP ViT-B/32 image encoding: our JAX encoder against transformers' PyTorch model.

The model is a full-size ViT-B/32 (the hub's `CLIPConfig()` defaults: image 224, patch
32, width 768, 12 layers, 12 heads; 512-d projection) with seeded random weights, saved
once under `$CLIPIT_CACHE/bench/` as model.safetensors in the hub's PyTorch layout and
loaded with `clipit_jax.media.encoders.load_clip(path)`, so what is timed is OUR path:
`ClipEncoder.encode_images` (uint8 frames -> pixel normalisation -> the jitted Flax
vision tower + projection of `media/clip_model.py` -> L2 normalisation -> NumPy). The
PyTorch peer is transformers 5's `CLIPModel.from_pretrained` of the same directory
(vision tower + projection), in eval mode under `torch.inference_mode()`, doing the same
pixel normalisation and L2 normalisation. Needs the `bench` extra (torch, transformers 5).

Reported per batch size (default 1, 16, 64): frames/s of both, their ratio, the
FLOPs of the compiled JAX function (XLA cost analysis) and the achieved FLOP/s as
a share of a float32 4096^3 matmul measured in the same run. `encode_images` pads
a batch to the next power of two (`encoders._bucket`); 1, 16 and 64 are exact.

  python benchmarks/clip_encoder.py                     # batch 1, 16, 64
  python benchmarks/clip_encoder.py --quick             # batch 1, 8; fewer repeats
  python benchmarks/clip_encoder.py --dtype bfloat16    # JAX in bfloat16 (checked vs float32)
"""

from __future__ import annotations

import argparse
import importlib.util
import gc
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from clipit_jax.media import encoders  # noqa: E402


def load_jax_encoder(path: str, batch: int, dtype: str) -> encoders.ClipEncoder:
  """`encoders.load_clip(path)`, computing in `dtype` (the parameters stay float32)."""
  return encoders.load_clip(path, image_batch_size=batch, dtype=jnp.dtype(dtype))


def load_torch_model(path: str):
  """transformers' `CLIPModel` loaded from the same directory (model.safetensors), in eval mode."""
  import torch  # pylint: disable=g-import-not-at-top
  from transformers import CLIPModel  # pylint: disable=g-import-not-at-top

  model = CLIPModel.from_pretrained(path).eval()
  return model, torch


def torch_encode_fn(model, torch, mean, std):
  """uint8 [n, 224, 224, 3] -> L2-normalised [n, 512], as `ClipEncoder.encode_images`."""
  mean_t = torch.tensor(mean, dtype=torch.float32)
  std_t = torch.tensor(std, dtype=torch.float32)

  def encode(frames: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
      x = (torch.from_numpy(frames).float() / 255.0 - mean_t) / std_t
      x = x.permute(0, 3, 1, 2).contiguous()
      emb = model.visual_projection(model.vision_model(pixel_values=x).pooler_output)
      emb = emb / emb.norm(dim=-1, keepdim=True).clamp(min=1e-12)
      return emb.numpy()

  return encode


def random_frames(n: int, size: int = 224, seed: int = 0) -> np.ndarray:
  """Smooth random images (not white noise): blocks of colour plus gradients."""
  rng = np.random.default_rng(seed)
  coarse = rng.integers(0, 256, (n, 7, 7, 3)).astype(np.float32)
  img = np.repeat(np.repeat(coarse, size // 7 + 1, 1), size // 7 + 1, 2)[:, :size, :size]
  img += np.linspace(0, 40, size)[None, :, None, None]
  return np.clip(img, 0, 255).astype(np.uint8)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    '--batches',
    type=int,
    nargs='+',
    default=[1, 16, 64],
    help='batch sizes (frames per encode call)',
  )
  parser.add_argument('--repeats', type=int, default=5, help='timed calls per row (median)')
  parser.add_argument(
    '--min-time',
    type=float,
    default=3.0,
    help='keep timing a row until this many seconds have passed',
  )
  parser.add_argument(
    '--dtype',
    choices=('float32', 'bfloat16'),
    default='float32',
    help='JAX compute dtype (bfloat16 is for accelerators; checked against '
    'float32: relative error < 1e-2)',
  )
  parser.add_argument(
    '--clip-model',
    default='random-vit-b32',
    help="'random-vit-b32' (built once), or a CLIP directory saved by save_pretrained",
  )
  parser.add_argument('--skip-torch', action='store_true', help='JAX rows only')
  parser.add_argument(
    '--skip-check', action='store_true', help='skip comparing the JAX and PyTorch embeddings'
  )
  parser.add_argument('--matmul-n', type=int, default=4096, help='side of the ceiling matmul')
  parser.add_argument(
    '--max-wait',
    type=float,
    default=180.0,
    help='seconds to wait for other processes to go quiet before each timing',
  )
  parser.add_argument(
    '--quick', action='store_true', help='smoke run: batches 1 and 8, 2 repeats, matmul 2048'
  )
  parser.add_argument('--out', default=_common.default_out('clip_encoder'), help='JSON results')
  args = parser.parse_args(argv)
  if args.quick:
    args.batches, args.repeats, args.min_time, args.matmul_n = [1, 8], 2, 0.0, 2048

  path = _common.resolve_clip_model(args.clip_model)
  record = dict(
    benchmark='clip_encoder',
    machine=_common.machine_info(),
    args=vars(args),
    model_dir=path,
    rows=[],
  )
  torch_ok = not args.skip_torch
  if torch_ok:
    if importlib.util.find_spec('torch') is None:
      torch_ok = False
      print('torch is not installed (pip install -e .[bench]); PyTorch rows skipped')

  largest = max(args.batches)
  enc = load_jax_encoder(path, largest, args.dtype)
  record['model'] = dict(
    image_size=enc.image_size,
    embed_dim=enc.embed_dim,
    vision_width=enc.model.config.vision.hidden_size,
    vision_layers=enc.model.config.vision.num_hidden_layers,
    patch=enc.model.config.vision.patch_size,
    dtype=args.dtype,
  )
  frames = random_frames(largest)

  tmodel = tencode = None
  if torch_ok:
    tmodel, torch = load_torch_model(path)
    tencode = torch_encode_fn(tmodel, torch, enc.mean, enc.std)
    record['torch_threads'] = torch.get_num_threads()
    record['torch_attn_implementation'] = getattr(tmodel.config, '_attn_implementation', None)

  if not args.skip_check:
    sample = frames[:8]
    if args.dtype == 'bfloat16':
      f32 = load_jax_encoder(path, largest, 'float32').encode_images(sample)
      b16 = enc.encode_images(sample)
      rel = float(np.linalg.norm(b16 - f32) / np.linalg.norm(f32))
      record['check_bfloat16'] = dict(relative_error=rel, ok=rel < 1e-2)
      print(
        f'bfloat16 vs float32 embeddings: relative error {rel:.2e} -> '
        f'{"OK" if rel < 1e-2 else "FAILED"}'
      )
    if tencode is not None:
      ours = (
        load_jax_encoder(path, largest, 'float32').encode_images(sample)
        if args.dtype != 'float32'
        else enc.encode_images(sample)
      )
      theirs = tencode(sample)
      diff = float(np.max(np.abs(ours - theirs)))
      cos = float(np.min(np.sum(ours * theirs, axis=-1)))
      record['check'] = dict(max_abs_diff=diff, min_cosine=cos, tolerance=1e-3, ok=diff < 1e-3)
      print(
        f'JAX vs PyTorch embeddings (same weights): max |diff| {diff:.2e}, min cosine '
        f'{cos:.6f} -> {"OK" if diff < 1e-3 else "FAILED"}'
      )

  for b in args.batches:
    x = frames[:b]
    bucket = encoders._bucket(b, enc.image_batch_size)  # pylint: disable=protected-access
    padded = np.concatenate([x, np.repeat(x[-1:], bucket - b, 0)]) if bucket > b else x
    compiled = enc._image_fn.lower(enc.params, padded).compile()  # pylint: disable=protected-access
    flops = _common.xla_flops(compiled)
    row = dict(batch=b, computed_batch=bucket, xla_flops_per_call=flops)
    print(f'batch {b}: timing JAX encode_images ...', flush=True)
    t0 = time.perf_counter()
    enc.encode_images(x)
    row['jax_first_call_s'] = time.perf_counter() - t0
    row['jax'] = _common.measure(
      lambda: enc.encode_images(x),
      warmup=2,
      repeats=args.repeats,
      max_wait_s=args.max_wait,
      min_time_s=args.min_time,
    )
    row['jax']['frames_per_s'] = b / row['jax']['median_s']
    if flops:
      row['jax']['achieved_flop_per_s'] = flops / row['jax']['median_s']
    if tencode is not None:
      print(f'batch {b}: timing PyTorch ...', flush=True)
      row['torch'] = _common.measure(
        lambda: tencode(x),
        warmup=2,
        repeats=args.repeats,
        max_wait_s=args.max_wait,
        min_time_s=args.min_time,
      )
      row['torch']['frames_per_s'] = b / row['torch']['median_s']
      if flops:  # Same model: the FLOPs of the real (unpadded) frames.
        row['torch']['achieved_flop_per_s'] = flops * b / bucket / row['torch']['median_s']
    record['rows'].append(row)
    gc.collect()

  print('timing the matmul ceiling ...', flush=True)
  record['matmul'] = dict(jax=_common.jax_matmul_rate(args.matmul_n, max_wait_s=args.max_wait))
  if torch_ok:
    record['matmul']['torch'] = _common.torch_matmul_rate(args.matmul_n, max_wait_s=args.max_wait)
  ceiling = max(m['flop_per_s'] for m in record['matmul'].values())
  record['ceiling_flop_per_s'] = ceiling

  table = []
  for row in record['rows']:
    j, t = row['jax'], row.get('torch')
    jf = j.get('achieved_flop_per_s')
    tf = t.get('achieved_flop_per_s') if t else None
    j['percent_of_matmul'] = 100 * jf / ceiling if jf else None
    if t:
      t['percent_of_matmul'] = 100 * tf / ceiling if tf else None
    table.append(
      [
        row['batch'],
        row['computed_batch'],
        j['frames_per_s'],
        t['frames_per_s'] if t else None,
        j['frames_per_s'] / t['frames_per_s'] if t else None,
        _common.gflops(row['xla_flops_per_call'])
        and _common.gflops(row['xla_flops_per_call']) / row['computed_batch'],
        _common.gflops(jf),
        j['percent_of_matmul'],
        _common.gflops(tf),
        t['percent_of_matmul'] if t else None,
        _common.load_str(j['load']) + ('; ' + _common.load_str(t['load']) if t else ''),
      ]
    )
  print()
  print(f'CLIP ViT-B/32 image encoding ({args.dtype} JAX), frames/s')
  print(
    _common.table(
      table,
      [
        'batch',
        'computed',
        'JAX frames/s',
        'torch frames/s',
        'JAX / torch',
        'GFLOP/frame',
        'JAX GFLOP/s',
        'JAX % matmul',
        'torch GFLOP/s',
        'torch % matmul',
        'load / other (JAX; torch)',
      ],
    )
  )
  print(
    _common.table(
      [
        [k, v['n'], v['median_s'], _common.gflops(v['flop_per_s']), _common.load_str(v['load'])]
        for k, v in record['matmul'].items()
      ],
      ['matmul ceiling', 'n', 's', 'GFLOP/s', 'load / other'],
    )
  )
  _common.write_json(args.out, record)
  return 0


if __name__ == '__main__':
  sys.exit(main())

"""Where the training step's time goes, by kind of op: JAX (train.py's step) against PyTorch eager.

Profiles one step of the paper's model (`configs/default.py`, the batch of `train_step.py`)
after warm-up steps:
  * JAX: `jax.profiler.trace` around train.py's step (`parallel.make_train_step` on a mesh of all
    devices, the config's `microbatch_size`); the XLA ops of the trace (events with an `hlo_op`)
    are summed by name over the executor's threads;
  * PyTorch: `torch.profiler` around one eager step of `torch_clipit.py`, self CPU time by
    aten op.
Each op is put in a kind: matmul (XLA's dot and YNNPACK fusions; aten mm/addmm/bmm), softmax,
layout (copies, transposes, concatenations), reduction, elementwise and the rest. A kind's
seconds are its share of the profiled op time times the step's wall time, so both sides
add up to their step. The JSON has every op.

  python benchmarks/profile_step.py                  # batch 16 (~3 min on 2 cores)
  python benchmarks/profile_step.py --batch 4 --top 30
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position
import train_step as bench  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

import jax  # noqa: E402

from configs import default  # noqa: E402

KINDS = (
  ('matmul', r'ynn_fusion|^dot|gemm|^aten::(mm|addmm|bmm|baddbmm)$'),
  ('softmax', r'softmax'),
  ('layout', r'copy|transpose|concatenate|slice|pad|^aten::(clone|contiguous|cat|t|permute)$'),
  ('reduction', r'reduce|^aten::(sum|mean|norm|max|var_mean)'),
  ('elementwise', r'fusion|multiply|add|subtract|divide|exp|tanh|select|compare|convert|^aten::'),
)


def kind_of(name: str) -> str:
  for kind, pattern in KINDS:
    if re.search(pattern, name):
      return kind
  return 'other'


def by_kind(op_seconds: dict[str, float], step_s: float) -> dict[str, float]:
  """Each kind's share of the profiled op time, scaled to the step's wall time `step_s`."""
  total = sum(op_seconds.values()) or 1.0
  kinds = collections.Counter()
  for name, seconds in op_seconds.items():
    kinds[kind_of(name)] += seconds
  return {k: step_s * v / total for k, v in kinds.most_common()}


def profile_jax(config, batch_np, warmup: int) -> tuple[dict[str, float], float]:
  """{XLA op name without its number: thread seconds} of one train.py step; its wall time."""
  step, state, batch, rng = bench.placed_step(config, batch_np, config.parallelism)
  for _ in range(warmup):
    state, metrics = step(state, batch, rng)
    jax.block_until_ready((state, metrics))
  with tempfile.TemporaryDirectory() as directory:
    with jax.profiler.trace(directory, create_perfetto_trace=True):
      start = time.perf_counter()
      state, metrics = step(state, batch, rng)
      jax.block_until_ready((state, metrics))
      wall = time.perf_counter() - start
    (path,) = glob.glob(os.path.join(directory, '**', '*perfetto_trace.json.gz'), recursive=True)
    with gzip.open(path) as f:
      trace = json.load(f)
  events = trace['traceEvents'] if isinstance(trace, dict) else trace
  ops = collections.Counter()
  for e in events:
    if e.get('ph') == 'X' and 'hlo_op' in (e.get('args') or {}):
      ops[re.sub(r'\.\d+$', '', e['name'])] += e.get('dur', 0) / 1e6
  return dict(ops), wall


def profile_torch(config, batch_np, warmup: int) -> tuple[dict[str, float], float]:
  """{aten op: self CPU seconds} of one eager PyTorch step; its wall time."""
  import torch  # pylint: disable=g-import-not-at-top
  import torch_clipit  # pylint: disable=g-import-not-at-top

  torch.manual_seed(0)
  model = torch_clipit.CLIPIt(config.model, text_norm=bench.flax_has_text_norm(config.model))
  model.train()
  optimizer = torch_clipit.make_optimizer(model, config)
  batch = {k: torch.from_numpy(v.copy()) for k, v in batch_np.items()}
  step = torch_clipit.make_train_step(model, optimizer, config)
  for _ in range(warmup):
    step(batch)
  with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    start = time.perf_counter()
    step(batch)
    wall = time.perf_counter() - start
  ops = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages() if e.self_cpu_time_total}
  return ops, wall


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch', type=int, default=16, help='windows per step')
  parser.add_argument('--warmup', type=int, default=2, help='untimed steps first')
  parser.add_argument('--top', type=int, default=15, help='ops listed per side')
  parser.add_argument('--no-torch', action='store_true', help='profile JAX only')
  parser.add_argument('--out', default=_common.default_out('profile_step'), help='JSON results')
  args = parser.parse_args(argv)

  config = default.get_config()
  batch_np = bench.make_batch(args.batch, config.model)
  record = dict(benchmark='profile_step', machine=_common.machine_info(), batch=args.batch)
  record['load'] = _common.wait_for_quiet()
  sides = {'jax': profile_jax(config, batch_np, args.warmup)}
  if not args.no_torch:
    sides['torch'] = profile_torch(config, batch_np, args.warmup)
  rows = []
  for side, (ops, wall) in sides.items():
    record[side] = dict(step_s=wall, kinds=by_kind(ops, wall), ops=ops)
    print(f'\n{side}: step {wall:.2f} s; top ops (profiled seconds):')
    for name, seconds in collections.Counter(ops).most_common(args.top):
      print(f'  {seconds:7.3f}  {kind_of(name):11s} {name}')
  for kind in dict.fromkeys(k for side in sides for k in record[side]['kinds']):
    rows.append([kind] + [round(record[side]['kinds'].get(kind, 0.0), 2) for side in sides])
  print('\nseconds of the step by kind of op\n' + _common.table(rows, ['kind', *sides]))
  _common.write_json(args.out, record)
  return 0


if __name__ == '__main__':
  sys.exit(main())

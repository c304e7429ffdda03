"""Shared helpers of the benchmark scripts: load checks, timing, ceilings, output.

Nothing here is part of `clipit_jax`; torch is imported only inside the functions
that measure it, so a script whose torch side is skipped runs without it.
"""

from __future__ import annotations

import datetime
import gc
import importlib.metadata
import json
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

BENCH_DIR = pathlib.Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / 'results'
if str(REPO_ROOT) not in sys.path:  # `from configs import default`.
  sys.path.insert(0, str(REPO_ROOT))

# Another process counts as busy above this many cores of CPU beside ours.
BUSY_CORES = 0.7
# The x86 SIMD flags of /proc/cpuinfo recorded with every result.
SIMD_FLAGS = (
  'avx2',
  'fma',
  'avx512f',
  'avx512bw',
  'avx512vl',
  'avx512_vnni',
  'avx512_bf16',
  'avx512_fp16',
  'amx_tile',
  'amx_bf16',
  'amx_int8',
)
# Environment variables that restrict the instruction sets libraries use.
ISA_ENV = ('XLA_FLAGS', 'ATEN_CPU_CAPABILITY', 'ONEDNN_MAX_CPU_ISA', 'MKL_ENABLE_INSTRUCTIONS')


# ------------------------------------------------------------------- load --


def _cpu_jiffies() -> tuple[int, int]:
  """(busy, total) jiffies of the whole machine from /proc/stat."""
  with open('/proc/stat') as f:
    fields = [int(v) for v in f.readline().split()[1:]]
  idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
  total = sum(fields[:8])  # guest time is already in user
  return total - idle, total


def _own_cpu_seconds() -> float:
  """CPU seconds of this process and of its waited-for children."""
  me = resource.getrusage(resource.RUSAGE_SELF)
  kids = resource.getrusage(resource.RUSAGE_CHILDREN)
  return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class CpuMonitor:
  """Measures, over an interval, the cores that OTHER processes kept busy.

  The machine's busy time (/proc/stat) minus this process's own (getrusage)
  divided by the wall time: ~0 on a quiet machine, ~1 when another process
  keeps one core busy. Unlike the load average it reacts within the interval
  and does not count our own previous runs.
  """

  def __init__(self):
    self._hz = os.sysconf('SC_CLK_TCK')
    self.start()

  def start(self) -> None:
    self._busy, self._total = _cpu_jiffies()
    self._own = _own_cpu_seconds()
    self._wall = time.perf_counter()

  def foreign_cores(self) -> float:
    busy, _ = _cpu_jiffies()
    wall = max(time.perf_counter() - self._wall, 1e-6)
    machine = (busy - self._busy) / self._hz
    own = _own_cpu_seconds() - self._own
    return max(0.0, (machine - own) / wall)


def foreign_load(seconds: float = 2.0) -> float:
  """Cores kept busy by other processes over the next `seconds`."""
  monitor = CpuMonitor()
  time.sleep(seconds)
  return monitor.foreign_cores()


def wait_for_quiet(
  max_wait_s: float = 180.0,
  poll_s: float = 20.0,
  threshold: float = BUSY_CORES,
  quiet: bool = False,
) -> dict[str, float]:
  """Waits (polling every `poll_s`) until other processes use < `threshold` cores.

  Gives up after `max_wait_s` and returns anyway; the record says so.

  Returns:
    {'loadavg_1m', 'foreign_cores_before', 'waited_s', 'gave_up'}.
  """
  waited = 0.0
  while True:
    other = foreign_load(2.0)
    if other < threshold or waited >= max_wait_s:
      break
    if not quiet:
      print(
        f'  [load] other processes use {other:.2f} cores (load average '
        f'{os.getloadavg()[0]:.2f}); waiting {poll_s:.0f} s ...',
        flush=True,
      )
    time.sleep(poll_s)
    waited += poll_s + 2.0
  return dict(
    loadavg_1m=round(os.getloadavg()[0], 2),
    foreign_cores_before=round(other, 2),
    waited_s=waited,
    gave_up=bool(other >= threshold),
  )


# ----------------------------------------------------------------- timing --


def measure(
  fn: Callable[[], Any],
  *,
  warmup: int = 1,
  repeats: int = 5,
  wait: bool = True,
  max_wait_s: float = 180.0,
  min_time_s: float = 0.0,
  retries: int = 2,
) -> dict[str, Any]:
  """Times `fn()` (which must block until its result is ready).

  Waits for a quiet machine first, runs `warmup` untimed calls, then
  `repeats` timed ones (more while their total is under `min_time_s`), and
  records the load before and the other processes' CPU use during the timing.
  When another process was busy during the timing (> `BUSY_CORES`), waits and
  measures again, up to `retries` times, keeping the least disturbed attempt.

  Returns:
    {'median_s', 'min_s', 'times_s', 'load': {...}, 'attempts'}.
  """
  best = None
  for attempt in range(retries + 1):
    load = wait_for_quiet(max_wait_s) if wait else dict(loadavg_1m=round(os.getloadavg()[0], 2))
    for _ in range(warmup if attempt == 0 else min(warmup, 1)):
      fn()
    gc.collect()
    monitor = CpuMonitor()
    times = []
    while len(times) < repeats or sum(times) < min_time_s:
      t0 = time.perf_counter()
      fn()
      times.append(time.perf_counter() - t0)
      if len(times) >= 1000:
        break
    load['foreign_cores_during'] = round(monitor.foreign_cores(), 2)
    load['loadavg_1m_after'] = round(os.getloadavg()[0], 2)
    result = dict(
      median_s=statistics.median(times),
      min_s=min(times),
      times_s=[round(t, 6) for t in times],
      load=load,
      attempts=attempt + 1,
    )
    if best is None or load['foreign_cores_during'] < best['load']['foreign_cores_during']:
      best = result
    best['attempts'] = attempt + 1
    if not wait or load['foreign_cores_during'] <= BUSY_CORES:
      break
    print(
      f'  [load] other processes used {load["foreign_cores_during"]:.2f} cores during '
      'the timing; measuring again',
      flush=True,
    )
  return best


# --------------------------------------------------------------- ceilings --


def jax_matmul_rate(
  n: int = 4096,
  repeats: int = 5,
  dtype: str = 'float32',
  wait: bool = True,
  max_wait_s: float = 180.0,
) -> dict[str, Any]:
  """FLOP/s of an n x n @ n x n matmul in jnp (jit, on JAX's default device)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32).astype(dtype)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32).astype(dtype)
  f = jax.jit(lambda x, y: x @ y)
  r = measure(
    lambda: f(a, b).block_until_ready(), warmup=2, repeats=repeats, wait=wait, max_wait_s=max_wait_s
  )
  flops = 2.0 * n**3
  r.update(
    flops=flops,
    flop_per_s=flops / r['median_s'],
    n=n,
    dtype=dtype,
    device=str(jax.devices()[0].platform),
  )
  return r


def torch_matmul_rate(
  n: int = 4096, repeats: int = 5, wait: bool = True, max_wait_s: float = 180.0
) -> dict[str, Any]:
  """FLOP/s of an n x n @ n x n float32 matmul in torch on the CPU."""
  import torch  # pylint: disable=g-import-not-at-top

  g = torch.Generator().manual_seed(0)
  a = torch.randn(n, n, generator=g)
  b = torch.randn(n, n, generator=g)
  out = torch.empty(n, n)
  r = measure(
    lambda: torch.matmul(a, b, out=out), warmup=2, repeats=repeats, wait=wait, max_wait_s=max_wait_s
  )
  flops = 2.0 * n**3
  r.update(
    flops=flops,
    flop_per_s=flops / r['median_s'],
    n=n,
    dtype='float32',
    threads=torch.get_num_threads(),
  )
  return r


def xla_flops(compiled) -> float | None:
  """The 'flops' of a `jax.stages.Compiled`'s cost analysis (None if absent)."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  if not cost:
    return None
  value = cost.get('flops')
  return float(value) if value is not None and value > 0 else None


# ---------------------------------------------------------------- records --


def _version(name: str) -> str | None:
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return None


def machine_info() -> dict[str, Any]:
  """CPU model, cores, memory, Python and package versions, date."""
  model = None
  try:
    out = subprocess.run(['lscpu'], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
      if line.lower().startswith('model name'):
        model = line.split(':', 1)[1].strip()
        break
  except OSError:
    pass
  flags = ''
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('flags'):
          flags = line
          break
  except OSError:
    pass
  simd = [f for f in SIMD_FLAGS if f' {f} ' in flags.rstrip() + ' ']
  mem = None
  try:
    with open('/proc/meminfo') as f:
      mem = round(int(f.readline().split()[1]) / 2**20, 1)
  except OSError:
    pass
  info = dict(
    date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
    cpu_model=model or platform.processor(),
    cpu_cores=os.cpu_count(),
    simd=simd,
    memory_gib=mem,
    python=platform.python_version(),
    versions={
      k: _version(k)
      for k in ('jax', 'jaxlib', 'flax', 'optax', 'torch', 'transformers', 'numpy', 'av')
    },
  )
  try:
    import jax  # pylint: disable=g-import-not-at-top

    info['jax_devices'] = [str(d) for d in jax.devices()]
    info['jax_backend'] = jax.default_backend()
  except Exception:  # pylint: disable=broad-except
    pass
  info['xla_flags'] = os.environ.get('XLA_FLAGS', '')
  info['isa_env'] = {k: os.environ[k] for k in ISA_ENV if k in os.environ}
  info['uptime'] = uptime()
  return info


def uptime() -> str:
  """`uptime`'s line: the time and the load averages over 1, 5 and 15 minutes."""
  try:
    return subprocess.run(['uptime'], capture_output=True, text=True, check=False).stdout.strip()
  except OSError:
    return 'load average: ' + ', '.join(f'{x:.2f}' for x in os.getloadavg())


def current_rss_mib() -> float:
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


class RssSampler:
  """A daemon thread sampling this process's RSS every `interval` s; `peak()` since `reset()`.

  ru_maxrss only gives the peak of the whole process so far; this gives each
  stage's own peak.
  """

  def __init__(self, interval: float = 0.01):
    self.interval = interval
    self._peak = current_rss_mib()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._loop, daemon=True)
    self._thread.start()

  def _loop(self):
    while not self._stop.wait(self.interval):
      self._peak = max(self._peak, current_rss_mib())

  def reset(self) -> None:
    self._peak = current_rss_mib()

  def peak(self) -> float:
    self._peak = max(self._peak, current_rss_mib())
    return self._peak

  def stop(self) -> None:
    self._stop.set()


def peak_rss_mib() -> float:
  """This process's peak resident set size so far, MiB (Linux: ru_maxrss in KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_json(path: str | os.PathLike, record: dict[str, Any]) -> pathlib.Path:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(record, indent=2, default=_json_default) + '\n')
  print(f'wrote {path}')
  return path


def _json_default(o):
  try:
    import numpy as np  # pylint: disable=g-import-not-at-top

    if isinstance(o, np.generic):
      return o.item()
    if isinstance(o, np.ndarray):
      return o.tolist()
  except ImportError:
    pass
  return str(o)


def default_out(name: str) -> str:
  return str(RESULTS_DIR / f'{name}.json')


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
  """A GitHub-markdown table (also readable in a terminal)."""
  cells = [[_fmt(c) for c in r] for r in rows]
  widths = [
    max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
  ]
  line = lambda r: '| ' + ' | '.join(c.ljust(w) for c, w in zip(r, widths)) + ' |'
  out = [line(headers), '|' + '|'.join('-' * (w + 2) for w in widths) + '|']
  out += [line(r) for r in cells]
  return '\n'.join(out)


def _fmt(c: Any) -> str:
  if c is None:
    return '-'
  if isinstance(c, float):
    if c == 0:
      return '0'
    if abs(c) >= 100:
      return f'{c:.0f}'
    if abs(c) >= 10:
      return f'{c:.1f}'
    if abs(c) >= 0.01:
      return f'{c:.3g}'
    return f'{c:.2e}'
  return str(c)


def load_str(load: dict[str, Any]) -> str:
  """'loadavg / other processes' cores during the timing' for tables."""
  return f'{load.get("loadavg_1m")} / {load.get("foreign_cores_during", "-")}'


def gflops(x: float | None) -> float | None:
  return None if x is None else x / 1e9


# ------------------------------------------------------------- CLIP model --

RANDOM_VIT_B32_ID = 'random-vit-b32-v2'  # Bump when the construction changes.


def bench_cache_dir() -> pathlib.Path:
  """Where the benchmarks keep generated models and videos (reused across runs)."""
  from clipit_jax import files  # pylint: disable=g-import-not-at-top

  return files.cache_root() / 'bench'


def _build_random_vit_b32(directory: pathlib.Path) -> None:
  """A full-size CLIP ViT-B/32 with seeded random weights, saved for `load_clip`.

  The hub's `CLIPConfig()` defaults (image 224, patch 32, width 768, 12 layers, 12 heads;
  a 512-wide, 12-layer text tower; 512-d projection), as OpenAI's `clip-vit-base-patch32`,
  with the tiny CLIP's character-level tokenizer (its special token ids set to match),
  saved as model.safetensors in the hub's PyTorch layout (transformers loads it too).
  """
  from clipit_jax.media import clip_model, encoders  # pylint: disable=g-import-not-at-top

  config = clip_model.ClipConfig.from_dict(
    dict(text_config=dict(vocab_size=514, eos_token_id=513), projection_dim=512)
  )
  encoders.save_random_clip(directory, config)


def random_vit_b32_dir() -> pathlib.Path:
  """The random full-size ViT-B/32 directory (built once, ~600 MB)."""
  from clipit_jax.media import encoders  # pylint: disable=g-import-not-at-top

  return encoders.build_once(bench_cache_dir() / RANDOM_VIT_B32_ID, _build_random_vit_b32)


def resolve_clip_model(name: str) -> str:
  """'random-vit-b32' -> its local directory; anything else as given ('tiny', a path)."""
  if name in ('random-vit-b32', RANDOM_VIT_B32_ID):
    return str(random_vit_b32_dir())
  return name

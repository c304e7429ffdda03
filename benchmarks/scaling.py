"""How each summarize stage's time and memory grow with the video's length.

For each size (default 1, 10 and 60 minutes of 640x360 30 fps synthetic video,
generated once into `$CLIPIT_CACHE/bench/videos/`), a FRESH subprocess loads the
CLIP, compiles it, and runs `Summarizer.summarize` + `Summary.write` with a fresh
feature cache, timed stage by stage (benchmarks/_pipeline.py wraps the functions
the summarizer calls: probe, hash, decode at 2 fps, encode, text, scores, KTS,
knapsack, write summary.mp4, write JSON + plot; `other` is the rest), recording
per stage:

  * seconds;
  * the stage's peak RSS (a 10 ms sampling thread) and its growth over the RSS at
    the stage's start, plus ru_maxrss of the process so far;
  * tracemalloc's peak of Python/NumPy allocations made in the stage.

Encoding uses `--clip-model tiny` by default so that 60 minutes stays affordable
on 2 CPU cores (ViT-B/32 costs ~0.1 s per frame there: 7,200 frames of a 60-minute
video at 2 fps are ~12 minutes of encoding alone; pass `--clip-model
random-vit-b32` for it). Decoding and encoding stream chunks of 64 frames, so their
memory should not grow with length; the features (n x 512 float32), KTS (band
[n+1, lmax], lmax = n up to 2,048 steps) and the knapsack table grow with n.

  python benchmarks/scaling.py                       # 1, 10, 60 min, tiny CLIP
  python benchmarks/scaling.py --quick               # 0.5, 1, 2 min
  python benchmarks/scaling.py --sizes 1 10 --clip-model random-vit-b32
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position
import _pipeline  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

QUERY = 'a red square moving over a green background'


def worker(args) -> int:
  """One size in this (fresh) process: load, compile, run the stages, write JSON."""
  from clipit_jax.media import encoders  # pylint: disable=g-import-not-at-top

  rss_start = _common.current_rss_mib()
  t0 = time.perf_counter()
  encoder = encoders.load_clip(_common.resolve_clip_model(args.clip_model))
  load_s = time.perf_counter() - t0
  compile_s = _pipeline.warm_up_encoder(encoder)
  rss_ready = _common.current_rss_mib()
  maxrss_ready = _common.peak_rss_mib()
  with tempfile.TemporaryDirectory(prefix='clipit-bench-scaling-') as out:
    monitor = _common.CpuMonitor()
    r = _pipeline.timed_summary(args.video, encoder, args.query, out, memory=True)
    r['foreign_cores_during'] = round(monitor.foreign_cores(), 2)
  r.update(
    load_s=load_s,
    compile_s=compile_s,
    rss_start_mib=rss_start,
    rss_ready_mib=rss_ready,
    ru_maxrss_ready_mib=maxrss_ready,
    ru_maxrss_end_mib=_common.peak_rss_mib(),
  )
  with open(args.worker_out, 'w') as f:
    json.dump(r, f)
  return 0


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    '--sizes', type=float, nargs='+', default=[1, 10, 60], help='video lengths in minutes'
  )
  parser.add_argument(
    '--clip-model',
    default='tiny',
    help="'tiny' (default, so 60 minutes stays affordable), "
    "'random-vit-b32', or a save_pretrained directory",
  )
  parser.add_argument('--size', default='640x360', help='video WIDTHxHEIGHT')
  parser.add_argument('--video-fps', type=int, default=30, help='video frame rate')
  parser.add_argument('--query', default=QUERY)
  parser.add_argument(
    '--video-dir',
    default=str(_common.bench_cache_dir() / 'videos'),
    help='where generated videos are kept',
  )
  parser.add_argument(
    '--max-wait',
    type=float,
    default=180.0,
    help='seconds to wait for other processes to go quiet before each size',
  )
  parser.add_argument('--quick', action='store_true', help='smoke run: 0.5, 1 and 2 minutes')
  parser.add_argument('--out', default=_common.default_out('scaling'), help='JSON results')
  parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
  parser.add_argument('--video', help=argparse.SUPPRESS)
  parser.add_argument('--worker-out', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    return worker(args)
  if args.quick:
    args.sizes = [0.5, 1, 2]

  width, height = (int(v) for v in args.size.lower().split('x'))
  videos = {
    m: str(_pipeline.generate_video(args.video_dir, m * 60, width, height, args.video_fps))
    for m in args.sizes
  }
  _common.resolve_clip_model(args.clip_model)  # build the random model before timing
  record = dict(benchmark='scaling', machine=_common.machine_info(), args=vars(args), sizes={})
  for minutes in args.sizes:
    for attempt in range(3):  # again when another process was busy during the run
      r = run_size(args, minutes, videos[minutes])
      if 'error' in r or r['load']['foreign_cores_during'] <= _common.BUSY_CORES:
        break
      print(
        f'  other processes used {r["load"]["foreign_cores_during"]:.2f} cores during '
        'it; running it again',
        flush=True,
      )
    r['attempts'] = attempt + 1
    record['sizes'][f'{minutes:g}'] = r
    if 'error' not in r:
      print(
        f'  {r["frames"]} frames, {r["shots"]} shots, stages {r["total_s"]:.1f} s, '
        f'peak RSS {r["ru_maxrss_end_mib"]:.0f} MiB; load {_common.load_str(r["load"])}',
        flush=True,
      )
  report(args, record)
  _common.write_json(args.out, record)
  return 0


def run_size(args, minutes: float, video_path: str) -> dict:
  """One size in a fresh subprocess (`--worker`); its record, or {'error': ...}."""
  load = _common.wait_for_quiet(args.max_wait)
  print(f'{minutes:g} min: fresh process ...', flush=True)
  with tempfile.NamedTemporaryFile(suffix='.json', delete=False) as f:
    result_path = f.name
  cmd = [
    sys.executable,
    os.path.abspath(__file__),
    '--worker',
    '--video',
    video_path,
    '--clip-model',
    args.clip_model,
    '--query',
    args.query,
    '--worker-out',
    result_path,
  ]
  t0 = time.perf_counter()
  proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
  wall = time.perf_counter() - t0
  if proc.returncode:
    print(proc.stderr[-3000:])
    return dict(error=proc.stderr[-3000:])
  with open(result_path) as f:
    r = json.load(f)
  os.unlink(result_path)
  r['load'] = dict(load, foreign_cores_during=r.pop('foreign_cores_during'))
  r['process_wall_s'] = wall
  return r


def report(args, record) -> None:
  """Prints the time and memory tables."""
  ok = {k: v for k, v in record['sizes'].items() if 'error' not in v}
  print()
  print(
    f'{args.size} @ {args.video_fps} fps, scored at 2 fps, CLIP {args.clip_model}: '
    'seconds per stage (RTF of the total)'
  )
  head = ['stage'] + [f'{k} min' for k in ok]
  rows = [[s] + [v['stages'][s]['seconds'] for v in ok.values()] for s in _pipeline.STAGES]
  rows.append(['total'] + [v['total_s'] for v in ok.values()])
  rows.append(['RTF'] + [v['total_s'] / v['video_duration'] for v in ok.values()])
  rows.append(['frames / shots'] + [f'{v["frames"]} / {v["shots"]}' for v in ok.values()])
  rows.append(['load / other'] + [_common.load_str(v['load']) for v in ok.values()])
  print(_common.table(rows, head))
  print()
  print('memory, MiB: stage peak RSS growth over its start (tracemalloc peak of the stage)')
  rows = []
  for s in _pipeline.STAGES[:-1]:  # All but 'other'.
    rows.append(
      [s]
      + [
        f'{v["stages"][s]["rss_peak_growth_mib"]:.1f} ({v["stages"][s]["traced_peak_mib"]:.1f})'
        for v in ok.values()
      ]
    )
  rows.append(['RSS after load + compile'] + [round(v['rss_ready_mib']) for v in ok.values()])
  rows.append(['peak RSS of the process'] + [round(v['ru_maxrss_end_mib']) for v in ok.values()])
  print(_common.table(rows, head))


if __name__ == '__main__':
  sys.exit(main())

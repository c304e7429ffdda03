"""End-to-end `summarize` of a 3-minute 1280x720 30 fps video: real-time factor per stage.

The video is generated once (PyAV: moving shapes over colour scenes, H.264, AAC
tone) into `$CLIPIT_CACHE/bench/videos/`. For each CLIP model (default: a random
full-size ViT-B/32 saved locally, and 'tiny'):

1. cold: the public API as a user runs it, `Summarizer.training_free(clip_model=...)`
   then `.summarize(video, query=...)` and `Summary.write(out)`, with a fresh,
   empty feature cache: includes loading the model and compiling;
2. cold, compiles from disk: the same in a new process whose XLA programs are in
   the persistent compilation cache that `clipit-summarize` keeps (a first
   process fills a fresh cache, a second one is timed): the cost of a user's
   second video;
3. warm (`--repeats` times, median): the same `summarize` + `write` with a fresh
   feature cache, on an encoder loaded and compiled beforehand, timed stage by stage
   (benchmarks/_pipeline.py wraps the functions the summarizer calls: probe, hash
   for the feature cache, decode at 2 fps, CLIP encoding, text, baseline scores,
   KTS, knapsack, writing summary.mp4, writing summary.json + scores.png; `other`
   is the rest of the total).

The real-time factor (RTF) is processing seconds / video seconds.

  python benchmarks/summarize_e2e.py                 # 3 min 720p, ViT-B/32 and tiny
  python benchmarks/summarize_e2e.py --quick         # 30 s video, tiny only
  python benchmarks/summarize_e2e.py --clip-models tiny --duration 600
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position
import _pipeline  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

import jax  # noqa: E402

from clipit_jax.media import encoders  # noqa: E402
from clipit_jax.summarize import summarizer as summarize  # noqa: E402

QUERY = 'a red square moving over a green background'


def cold_run(path: str, clip_dir: str, query: str, work: str) -> dict:
  """The public API, from loading the model to the written files; fresh feature cache."""
  cache = tempfile.mkdtemp(prefix='features-', dir=work)
  out = tempfile.mkdtemp(prefix='out-', dir=work)
  t0 = time.perf_counter()
  summarizer = summarize.Summarizer.training_free(
    clip_model=clip_dir, cache_dir=cache, progress=False
  )
  t1 = time.perf_counter()
  summary = summarizer.summarize(path, query=query)
  t2 = time.perf_counter()
  summary.write(out, progress=False)
  t3 = time.perf_counter()
  return dict(
    load_s=t1 - t0,
    summarize_s=t2 - t1,
    write_s=t3 - t2,
    total_s=t3 - t0,
    processing_s=t3 - t1,
    shots=len(summary.shot_times),
    selected=len(summary.selected),
    frames=len(summary.timestamps),
  )


def cold_process_with_xla_cache(path: str, clip_dir: str, query: str, work: str) -> dict:
  """`cold_run` in a new process twice over one fresh XLA disk cache; the second's result."""
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=tempfile.mkdtemp(prefix='xla-', dir=work))
  results = []
  for _ in range(2):
    proc = subprocess.run(
      [sys.executable, os.path.abspath(__file__), '--cold-worker', path, clip_dir, query, work],
      env=env,
      capture_output=True,
      text=True,
      check=True,
    )
    results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
  results[1]['first_process_total_s'] = results[0]['total_s']
  return results[1]


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if argv[:1] == ['--cold-worker']:  # One cold run in this fresh process (see above).
    jax.config.update('jax_compilation_cache_dir', os.environ['JAX_COMPILATION_CACHE_DIR'])
    print(json.dumps(cold_run(*argv[1:5])))
    return 0
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
    '--clip-models',
    nargs='+',
    default=['random-vit-b32', 'tiny'],
    help="'random-vit-b32' (a full-size ViT-B/32 with random weights, "
    "built once), 'tiny', or save_pretrained directories",
  )
  parser.add_argument('--duration', type=float, default=180.0, help='video seconds')
  parser.add_argument('--size', default='1280x720', help='video WIDTHxHEIGHT')
  parser.add_argument('--video-fps', type=int, default=30, help='video frame rate')
  parser.add_argument(
    '--fps', type=float, default=summarize.DEFAULT_FPS, help='frames per second scored'
  )
  parser.add_argument('--repeats', type=int, default=2, help='warm stage-by-stage runs (median)')
  parser.add_argument(
    '--skip-cold', action='store_true', help='skip the cold run through the public API'
  )
  parser.add_argument('--query', default=QUERY)
  parser.add_argument('--video', help='summarize this file instead of a generated one')
  parser.add_argument(
    '--video-dir',
    default=str(_common.bench_cache_dir() / 'videos'),
    help='where generated videos are kept',
  )
  parser.add_argument(
    '--max-wait',
    type=float,
    default=180.0,
    help='seconds to wait for other processes to go quiet before each run',
  )
  parser.add_argument(
    '--quick', action='store_true', help='smoke run: a 30 s video, tiny CLIP, 1 repeat'
  )
  parser.add_argument('--out', default=_common.default_out('summarize_e2e'), help='JSON results')
  args = parser.parse_args(argv)
  if args.quick:
    args.duration, args.clip_models, args.repeats = 30.0, ['tiny'], 1

  width, height = (int(v) for v in args.size.lower().split('x'))
  path = args.video or str(
    _pipeline.generate_video(args.video_dir, args.duration, width, height, args.video_fps)
  )
  record = dict(
    benchmark='summarize_e2e',
    machine=_common.machine_info(),
    args=vars(args),
    video=path,
    models={},
  )
  work = tempfile.mkdtemp(prefix='clipit-bench-e2e-')
  try:
    for name in args.clip_models:
      clip_dir = _common.resolve_clip_model(name)
      rec = record['models'][name] = {}
      if not args.skip_cold:
        print(f'[{name}] cold run through Summarizer (fresh feature cache) ...', flush=True)
        for attempt in range(3):  # again when another process was busy during it
          load = _common.wait_for_quiet(args.max_wait)
          monitor = _common.CpuMonitor()
          cold = cold_run(path, clip_dir, args.query, work)
          load['foreign_cores_during'] = round(monitor.foreign_cores(), 2)
          if 'cold' not in rec or (
            load['foreign_cores_during'] < rec['cold_load']['foreign_cores_during']
          ):
            rec['cold'], rec['cold_load'] = cold, load
          if load['foreign_cores_during'] <= _common.BUSY_CORES:
            break
          print(
            f'  other processes used {load["foreign_cores_during"]:.2f} cores during the '
            'cold run; running it again',
            flush=True,
          )
        rec['cold']['attempts'] = attempt + 1
        print(
          f'  cold: load {rec["cold"]["load_s"]:.1f} s, summarize '
          f'{rec["cold"]["summarize_s"]:.1f} s, write {rec["cold"]["write_s"]:.1f} s',
          flush=True,
        )
        print(
          f'[{name}] cold run in a new process, compiles from the XLA disk cache ...', flush=True
        )
        load = _common.wait_for_quiet(args.max_wait)
        monitor = _common.CpuMonitor()
        rec['cold_cached'] = cold_process_with_xla_cache(path, clip_dir, args.query, work)
        load['foreign_cores_during'] = round(monitor.foreign_cores(), 2)
        rec['cold_cached']['load'] = load
        print(
          f'  cold, cached compiles: summarize + write {rec["cold_cached"]["processing_s"]:.1f} s',
          flush=True,
        )
      t0 = time.perf_counter()
      encoder = encoders.load_clip(clip_dir)
      rec['load_s'] = time.perf_counter() - t0
      rec['compile_s'] = _pipeline.warm_up_encoder(encoder)
      runs, disturbed = [], 0
      while len(runs) < args.repeats:
        load = _common.wait_for_quiet(args.max_wait)
        monitor = _common.CpuMonitor()
        out = tempfile.mkdtemp(prefix='out-', dir=work)
        r = _pipeline.timed_summary(path, encoder, args.query, out, fps=args.fps)
        load['foreign_cores_during'] = round(monitor.foreign_cores(), 2)
        r['load'] = load
        if load['foreign_cores_during'] > _common.BUSY_CORES and disturbed < args.repeats:
          disturbed += 1  # another process was busy: discard and run again (a few times)
          print(
            f'  [{name}] run disturbed (other processes {load["foreign_cores_during"]:.2f} '
            f'cores, {r["total_s"]:.1f} s); running again',
            flush=True,
          )
          rec.setdefault('discarded_runs', []).append(r)
          continue
        runs.append(r)
        i = len(runs) - 1
        print(
          f'  [{name}] warm run {i + 1}: {r["total_s"]:.1f} s for {r["video_duration"]:.0f} '
          f's of video (RTF {r["total_s"] / r["video_duration"]:.3f}); load '
          f'{_common.load_str(load)}',
          flush=True,
        )
      rec['runs'] = runs
      rec['median'] = {
        s: statistics.median(r['stages'][s]['seconds'] for r in runs) for s in _pipeline.STAGES
      }
      rec['median']['total'] = statistics.median(r['total_s'] for r in runs)
      rec['video_duration'] = runs[0]['video_duration']
      rec['frames'] = runs[0]['frames']
      rec['shots'] = runs[0]['shots']
      del encoder
  finally:
    shutil.rmtree(work, ignore_errors=True)

  print()
  for name, rec in record['models'].items():
    dur = rec['video_duration']
    print(
      f'{name}: {dur:.0f} s video {width}x{height} @ {args.video_fps} fps, '
      f'{rec["frames"]} frames scored at {args.fps:g} fps, {rec["shots"]} shots'
    )
    rows = [
      [s, rec['median'][s], rec['median'][s] / dur, 100 * rec['median'][s] / rec['median']['total']]
      for s in _pipeline.STAGES
    ]
    rows.append(
      ['total (warm, median)', rec['median']['total'], rec['median']['total'] / dur, 100.0]
    )
    if 'cold' in rec:
      c = rec['cold']
      rows.append(
        ['cold: Summarizer.summarize + write', c['processing_s'], c['processing_s'] / dur, None]
      )
      rows.append(['cold: + model load', c['total_s'], c['total_s'] / dur, None])
    if 'cold_cached' in rec:
      c = rec['cold_cached']
      rows.append(
        [
          'cold, compiles from disk cache: summarize + write',
          c['processing_s'],
          c['processing_s'] / dur,
          None,
        ]
      )
      rows.append(
        ['cold, compiles from disk cache: + model load', c['total_s'], c['total_s'] / dur, None]
      )
    rows.append(['(encoder compile, all buckets)', rec['compile_s'], None, None])
    print(_common.table(rows, ['stage', 'seconds', 'RTF', '% of warm total']))
    print(
      'load / other cores per warm run: '
      + ', '.join(_common.load_str(r['load']) for r in rec['runs'])
    )
    print()
  _common.write_json(args.out, record)
  return 0


if __name__ == '__main__':
  sys.exit(main())

"""`clipit-encode-beam` on a corpus of short videos: 1 and 2 workers, and against one process.

Generates `--videos` synthetic H.264 clips (5-10 s, 320x180, 25 fps, moving shapes over
colour scenes) once into `$CLIPIT_CACHE/bench/corpus/`, then times:

1. `in-process`: one Python process, the CLIP loaded once, `encoders.cached_video_features`
   over the videos in turn (what `clipit-summarize` does per video), from a fresh cache;
2. `beam, N workers`: the command as a user runs it (a new process: Beam's start, the
   workers' start and model loading included), DirectRunner in multi_processing mode with
   N worker processes, into a fresh feature cache each time.

A warm-up run fills the XLA compile cache first, so no row pays for compiles. Every Beam
row's features are compared with the in-process ones (max abs difference over the corpus).
`encoding s` is the time spent on the videos themselves (hash, decode, encode, write; summed
over the workers for Beam); the rest of `seconds` is starting Beam, the workers and the model.

  python benchmarks/encode_beam.py                  # 20 videos, tiny CLIP, 1 and 2 workers
  python benchmarks/encode_beam.py --quick          # 4 videos
  python benchmarks/encode_beam.py --clip-model random-vit-b32 --videos 8
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position
import _pipeline  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

import numpy as np  # noqa: E402

from clipit_jax.summarize import beam_pipeline  # noqa: E402
from clipit_jax.media import encoders  # noqa: E402
from clipit_jax.media import video  # noqa: E402

FPS = 2.0


def corpus(n: int) -> list[str]:
  """`n` synthetic videos of 5-10 s, made once."""
  directory = _common.bench_cache_dir() / 'corpus'
  return [
    str(
      _pipeline.generate_video(
        directory, 5.0 + k % 6, width=320, height=180, fps=25, audio=False, seed=k
      )
    )
    for k in range(n)
  ]


def in_process(paths: list[str], clip_model: str, cache: str) -> dict:
  """The CLIP loaded once, every video through `cached_video_features`: seconds, features."""
  t0 = time.perf_counter()
  encoder = encoders.load_clip(clip_model)
  t1 = time.perf_counter()
  features = {p: encoders.cached_video_features(p, encoder, FPS, cache)[0] for p in paths}
  t2 = time.perf_counter()
  return dict(seconds=t2 - t0, load_s=t1 - t0, encode_s=t2 - t1, features=features)


def beam_run(paths: list[str], clip_model: str, workers: int, work: str) -> dict:
  """`clipit-encode-beam` in a new process: wall seconds, and the features it cached."""
  cache, out = tempfile.mkdtemp(dir=work), tempfile.mkdtemp(dir=work)
  argv = [sys.executable, '-m', 'clipit_jax.summarize.beam_pipeline', *paths]
  argv += ['--clip-model', clip_model, '--fps', str(FPS), '--cache-dir', cache, '--out', out]
  argv += [
    '--runner=DirectRunner',
    f'--direct_num_workers={workers}',
    '--direct_running_mode=multi_processing',
  ]
  t0 = time.perf_counter()
  done = subprocess.run(argv, capture_output=True, text=True, check=False)
  seconds = time.perf_counter() - t0
  if done.returncode:
    raise RuntimeError(f'clipit-encode-beam failed:\n{done.stderr[-2000:]}')
  with open(os.path.join(out, beam_pipeline.ENCODED_FILE), encoding='utf-8') as f:
    records = [json.loads(line) for line in f]
  features = {r['video']: encoders.read_cached_features(r['cache_file'])[0] for r in records}
  return dict(seconds=seconds, video_s=sum(r['seconds'] for r in records), features=features)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--videos', type=int, default=20)
  parser.add_argument('--workers', type=int, nargs='+', default=[1, 2])
  parser.add_argument('--clip-model', default='tiny', help="'tiny', 'random-vit-b32', or a path")
  parser.add_argument('--quick', action='store_true', help='4 videos')
  parser.add_argument('--max-wait', type=float, default=120.0, help='seconds to wait for quiet')
  parser.add_argument('--out', default=_common.default_out('encode_beam'))
  args = parser.parse_args()
  clip_model = _common.resolve_clip_model(args.clip_model)
  paths = corpus(4 if args.quick else args.videos)
  work = tempfile.mkdtemp(prefix='encode-beam-')
  try:
    beam_run(paths[:1], clip_model, 1, work)  # Warm-up: the XLA compile cache.
    rows, record = [], dict(machine=_common.machine_info(), videos=len(paths), runs=[])
    record['seconds_of_video'] = sum(video.probe(p).duration for p in paths)
    for name in ['in-process'] + [f'beam, {w} workers' for w in args.workers]:
      load = _common.wait_for_quiet(args.max_wait)
      monitor = _common.CpuMonitor()
      if name == 'in-process':
        run = reference = in_process(paths, clip_model, tempfile.mkdtemp(dir=work))
      else:
        run = beam_run(paths, clip_model, int(name.split()[1]), work)
      load['foreign_cores_during'] = round(monitor.foreign_cores(), 2)
      diff = max(float(np.abs(run['features'][p] - reference['features'][p]).max()) for p in paths)
      entry = {k: v for k, v in run.items() if k != 'features'} | dict(
        name=name, max_abs_diff=diff, load=load
      )
      record['runs'].append(entry)
      per_video = run['seconds'] / len(paths)
      inside = run.get('video_s', run.get('encode_s'))
      rows.append([name, run['seconds'], per_video, inside, diff, _common.load_str(load)])
      print(f'  {name}: {run["seconds"]:.1f} s', flush=True)
  finally:
    shutil.rmtree(work, ignore_errors=True)
  print(
    _common.table(rows, ['run', 'seconds', 's / video', 'encoding s', 'max |diff|', 'load / other'])
  )
  _common.write_json(args.out, record)


if __name__ == '__main__':
  main()

"""`clipit-summarize` on several videos: one batch command against one command per video.

N short videos (flat-colour scenes with a moving square, H.264, generated once into
`$CLIPIT_CACHE/bench/videos/batch/`) are summarized with a query and the training-free scorer

1. by one command over their directory (the models load once), and
2. by one command per video (each a new process: imports, model load, compiles read from the
   XLA disk cache),

each with a fresh, empty feature cache, after an untimed command that fills the XLA disk cache
(and builds the model). The times are wall-clock seconds of the whole commands.

  python benchmarks/summarize_batch.py                          # random ViT-B/32, 4 x 10 s
  python benchmarks/summarize_batch.py --clip-model tiny --videos 3 --seconds 5
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

import numpy as np  # noqa: E402

from clipit_jax.media import video  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
COLOURS = [(255, 0, 0), (0, 160, 0), (0, 0, 255), (255, 200, 0), (200, 0, 255)]


def make_videos(directory: pathlib.Path, n: int, seconds: float, fps: int = 8) -> list[str]:
  """`n` videos of `seconds` (320x240, scenes of 2 s), made once."""
  paths = []
  for k in range(n):
    path = directory / f'clip_{k}_{seconds:g}s.mp4'
    if not path.is_file():
      frames = np.empty((round(seconds * fps), 240, 320, 3), np.uint8)
      for i, frame in enumerate(frames):
        frame[:] = COLOURS[(k + i // (2 * fps)) % len(COLOURS)]
        x = (6 * i) % 280
        frame[100:140, x : x + 40] = 255
      video.write_frames(path, frames, fps)
    paths.append(str(path))
  return paths


def command(inputs: list[str], clip_model: str, work: pathlib.Path) -> float:
  """Seconds of one `clipit-summarize` command with a fresh feature cache."""
  cache = tempfile.mkdtemp(prefix='features-', dir=work)
  out = tempfile.mkdtemp(prefix='out-', dir=work)
  args = [sys.executable, '-m', 'clipit_jax.summarize', *inputs, '--query', 'a red square']
  args += ['--clip-model', clip_model, '--cache-dir', cache, '--no-progress', '--out', out]
  t0 = time.perf_counter()
  subprocess.run(args, cwd=ROOT, check=True, capture_output=True)
  return time.perf_counter() - t0


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--clip-model', default='random-vit-b32', help="'random-vit-b32', 'tiny'")
  parser.add_argument('--videos', type=int, default=4)
  parser.add_argument('--seconds', type=float, default=10.0)
  parser.add_argument('--max-wait', type=float, default=60.0)
  parser.add_argument('--out', default=_common.default_out('summarize_batch'))
  args = parser.parse_args()
  clip_model = _common.resolve_clip_model(args.clip_model)
  directory = _common.bench_cache_dir() / 'videos' / 'batch'
  paths = make_videos(directory, args.videos, args.seconds)
  with tempfile.TemporaryDirectory() as work:
    work = pathlib.Path(work)
    command(paths[:1], clip_model, work)  # Warm-up: the XLA disk cache, the model built.
    load = _common.wait_for_quiet(args.max_wait)
    batch_s = command(paths, clip_model, work)
    single_s = [command([p], clip_model, work) for p in paths]
  load['uptime_after'] = _common.uptime()
  n = len(paths)
  rows = [
    ('one batch command', batch_s, batch_s / n),
    ('one command per video', sum(single_s), sum(single_s) / n),
  ]
  print(_common.table(rows, ['', 'total s', 's per video']))
  print(f'batch / single per video: {batch_s / sum(single_s):.2f}; load {load}')
  record = dict(
    machine=_common.machine_info(),
    clip_model=args.clip_model,
    videos=n,
    video_seconds=args.seconds,
    batch_s=batch_s,
    single_s=single_s,
    load=load,
  )
  _common.write_json(args.out, record)


if __name__ == '__main__':
  main()

"""The summarize pipeline, timed stage by stage, for `summarize_e2e.py` and `scaling.py`.

`timed_summary` runs `clipit_jax.summarize.Summarizer.summarize` + `Summary.write`
(training-free, with a query) with a fresh feature cache, and times each stage by
wrapping the functions they call (and, if asked, measures their memory).
`generate_video` writes the synthetic test videos.
"""

from __future__ import annotations

import contextlib
import fractions
import functools
import os
import pathlib
import tempfile
import time
import tracemalloc
from typing import Any
from unittest import mock

import av
import numpy as np

import _common  # pylint: disable=g-bad-import-order
from clipit_jax import baselines
from clipit_jax import protocol
from clipit_jax import files
from clipit_jax.media import encoders
from clipit_jax.summarize import shots
from clipit_jax.summarize import summarizer as summarize
from clipit_jax.summarize import summary as summary_lib
from clipit_jax.media import video


# ------------------------------------------------------------------ video --


def _scene_background(rng, h, w):
  """A smooth two-colour gradient with a few soft blobs, uint8 [h, w, 3]."""
  c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
  angle = rng.uniform(0, 2 * np.pi)
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  t = np.cos(angle) * xx / w + np.sin(angle) * yy / h
  t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
  img = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
  for _ in range(3):
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    r = rng.uniform(0.05, 0.2) * w
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    img += blob[..., None] * (rng.integers(0, 256, 3) - img) * 0.6
  img += rng.normal(0, 6, img.shape)  # a little texture, so frames are not flat
  return np.clip(img, 0, 255).astype(np.uint8)


def _write_video(
  path: pathlib.Path, duration_s: float, width: int, height: int, fps: int, audio: bool, seed: int
) -> None:
  rng = np.random.default_rng(seed)
  n_frames = int(round(duration_s * fps))
  with av.open(str(path), mode='w', format='mp4') as out:
    vs = out.add_stream('libx264', rate=fps)
    vs.width, vs.height, vs.pix_fmt = width, height, 'yuv420p'
    vs.options = {'crf': '23', 'preset': 'veryfast', 'g': str(2 * fps)}
    rate = 48000
    if audio:
      aus = out.add_stream('aac', rate=rate)
      aus.codec_context.layout = 'mono'
      aus.codec_context.bit_rate = 64000
    samples_done = 0
    scene_end, bg, shapes, tone = 0, None, [], 440.0
    for i in range(n_frames):
      if i >= scene_end:  # a new scene: 3-10 s, new background, shapes and tone
        scene_end = i + int(rng.uniform(3, 10) * fps)
        bg = _scene_background(rng, height, width)
        shapes = []
        for _ in range(int(rng.integers(1, 4))):
          size = int(rng.uniform(0.08, 0.25) * height)
          shapes.append(
            dict(
              size=size,
              colour=rng.integers(0, 256, 3).astype(np.uint8),
              pos=rng.uniform([0, 0], [height - size, width - size]),
              vel=rng.uniform(-1, 1, 2) * rng.uniform(2, 8) * height / 360,
              circle=bool(rng.integers(0, 2)),
            )
          )
        tone = float(rng.uniform(220, 880))
      frame = bg.copy()
      for s in shapes:
        s['pos'] += s['vel']
        for k, lim in ((0, height - s['size']), (1, width - s['size'])):
          if not 0 <= s['pos'][k] <= lim:
            s['vel'][k] *= -1
            s['pos'][k] = min(max(s['pos'][k], 0), lim)
        y, x, z = int(s['pos'][0]), int(s['pos'][1]), s['size']
        if s['circle']:
          yy, xx = np.ogrid[:z, :z]
          m = (yy - z / 2) ** 2 + (xx - z / 2) ** 2 <= (z / 2) ** 2
          frame[y : y + z, x : x + z][m] = s['colour']
        else:
          frame[y : y + z, x : x + z] = s['colour']
      out.mux(vs.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')))
      if audio:
        target = int(round((i + 1) / fps * rate))
        while samples_done + 1024 <= target:
          t = (samples_done + np.arange(1024)) / rate
          wave = (0.2 * np.sin(2 * np.pi * tone * t)).astype(np.float32)[None]
          af = av.AudioFrame.from_ndarray(wave, format='fltp', layout='mono')
          af.sample_rate = rate
          af.pts, af.time_base = samples_done, fractions.Fraction(1, rate)
          samples_done += 1024
          out.mux(aus.encode(af))
    out.mux(vs.encode(None))
    if audio:
      out.mux(aus.encode(None))


def generate_video(
  directory: os.PathLike | str,
  duration_s: float,
  width: int = 1280,
  height: int = 720,
  fps: int = 30,
  audio: bool = True,
  seed: int = 0,
) -> pathlib.Path:
  """A synthetic H.264 mp4 (moving shapes over colour scenes, AAC tone), made once.

  Cached under `directory` by its parameters; written to a temporary name and renamed.
  """
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  name = (
    f'synthetic_{duration_s:g}s_{width}x{height}_{fps}fps_{"aac" if audio else "mute"}_s{seed}.mp4'
  )
  path = directory / name
  if path.is_file():
    return path
  tmp = directory / f'.{name}.{os.getpid()}.tmp.mp4'
  t0 = time.perf_counter()
  print(f'generating {path} ({duration_s:g} s, {width}x{height}, {fps} fps) ...', flush=True)
  try:
    _write_video(tmp, duration_s, width, height, fps, audio, seed)
    os.replace(tmp, path)
  finally:
    if tmp.exists():
      tmp.unlink()
  print(f'  generated in {time.perf_counter() - t0:.0f} s', flush=True)
  return path


# ----------------------------------------------------------------- stages --


class StageTimer:
  """Times calls of named stages; with `memory`, also RSS (sampled peak) and the traced peak.

  Only the outermost timed call counts: a timed function called inside another
  (`video.write_summary` probes its source) is part of the caller's stage. A stage
  entered many times (`decode`: each chunk) sums its seconds; its memory is the peak
  over its calls above what was held when it was first entered. The traced peak is
  tracemalloc's: Python objects and NumPy arrays (not XLA's buffers or FFmpeg's).
  """

  def __init__(self, memory: bool = False):
    self.memory = memory
    self.stages: dict[str, dict[str, Any]] = {}
    self._start: dict[str, tuple[int, float]] = {}  # stage -> (traced, RSS) at first entry
    self._busy = False
    self.sampler = None
    if memory:
      if not tracemalloc.is_tracing():
        tracemalloc.start()
      self.sampler = _common.RssSampler()

  @contextlib.contextmanager
  def stage(self, name: str):
    """Counts the time inside (and memory) to `name`, unless a stage is already running."""
    if self._busy:
      yield
      return
    self._busy = True
    rec = self.stages.setdefault(name, dict(seconds=0.0, calls=0))
    if self.memory:
      self._start.setdefault(name, (tracemalloc.get_traced_memory()[0], _common.current_rss_mib()))
      tracemalloc.reset_peak()
      self.sampler.reset()
    t0 = time.perf_counter()
    try:
      yield
    finally:
      rec['seconds'] += time.perf_counter() - t0
      rec['calls'] += 1
      if self.memory:
        self._record_memory(name, rec)
      self._busy = False

  def _record_memory(self, name: str, rec: dict[str, Any]) -> None:
    traced0, rss0 = self._start[name]
    current, peak = tracemalloc.get_traced_memory()
    rec['traced_peak_mib'] = max(rec.get('traced_peak_mib', 0.0), (peak - traced0) / 2**20)
    rec['traced_kept_mib'] = (current - traced0) / 2**20
    rec['rss_before_mib'] = rss0
    rec['rss_after_mib'] = _common.current_rss_mib()
    rec['rss_peak_mib'] = max(rec.get('rss_peak_mib', 0.0), self.sampler.peak())
    rec['rss_peak_growth_mib'] = rec['rss_peak_mib'] - rss0
    rec['ru_maxrss_so_far_mib'] = _common.peak_rss_mib()

  def wrap(self, name: str, fn):
    """`fn`, timed as stage `name`."""

    @functools.wraps(fn)
    def timed(*args, **kwargs):
      with self.stage(name):
        return fn(*args, **kwargs)

    return timed

  def wrap_iterator(self, name: str, fn):
    """`fn`, which returns an iterator, timed as stage `name`: the call and each next()."""

    @functools.wraps(fn)
    def timed(*args, **kwargs):
      with self.stage(name):
        it = fn(*args, **kwargs)
      return self._timed_iter(name, it)

    return timed

  def _timed_iter(self, name: str, it):
    try:
      while True:
        with self.stage(name):
          try:
            item = next(it)
          except StopIteration:
            return
        yield item
    finally:
      if hasattr(it, 'close'):
        it.close()

  def close(self) -> None:
    if self.sampler is not None:
      self.sampler.stop()


def _timed_functions(encoder: encoders.ClipEncoder) -> tuple[tuple[str, Any, str], ...]:
  """(stage, owner, attribute) of the functions the summarizer calls, looked up at call time."""
  return (
    ('probe', video, 'probe'),
    ('hash', encoders, 'file_sha256'),  # The feature cache's key.
    ('decode', video, 'decode_frames'),
    ('encode', encoder, 'encode_images'),
    ('text', encoder, 'encode_texts'),
    ('score', baselines, 'clip_similarity'),
    ('kts', protocol, 'kts_centred'),
    ('knapsack', shots, 'select_shots'),
    ('write_video', video, 'write_summary'),
    ('write_json_plot', summary_lib.Summary, 'to_json'),
    ('write_json_plot', files, 'write_text'),
    ('write_json_plot', summary_lib, 'plot_scores'),
  )


# The stage names, in pipeline order (no encoder is needed to name them), then the rest.
STAGES = tuple(dict.fromkeys(name for name, _, _ in _timed_functions(None))) + ('other',)


@contextlib.contextmanager
def timing(timer: StageTimer, encoder: encoders.ClipEncoder):
  """While open, the functions of `_timed_functions` are replaced by `timer`'s wrappers."""
  with contextlib.ExitStack() as stack:
    for name, owner, attribute in _timed_functions(encoder):
      wrap = timer.wrap_iterator if name == 'decode' else timer.wrap
      fn = getattr(owner, attribute)
      stack.enter_context(mock.patch.object(owner, attribute, wrap(name, fn)))
    yield timer


def timed_summary(
  path: str,
  encoder: encoders.ClipEncoder,
  query: str,
  out_dir: str,
  *,
  fps: float = summarize.DEFAULT_FPS,
  proportion: float = summarize.DEFAULT_PROPORTION,
  memory: bool = False,
) -> dict[str, Any]:
  """`Summarizer.training_free(encoder).summarize(path, query=query)` + `.write(out_dir)`, timed.

  The real code runs, with a fresh feature cache (so features are computed), and
  `timing` attributes its time (and, with `memory`, memory) to `STAGES`; `other` is
  the rest of the total (shot bookkeeping, cache file, staging). Returns
  {'stages': {name: {'seconds', 'calls', ...}}, 'total_s', 'duration', 'frames', ...}.
  """
  timer = StageTimer(memory)
  with tempfile.TemporaryDirectory(prefix='clipit-bench-features-') as cache:
    summarizer = summarize.Summarizer.training_free(
      encoder, fps=fps, proportion=proportion, cache_dir=cache, progress=False
    )
    with timing(timer, encoder):
      t0 = time.perf_counter()
      summary = summarizer.summarize(path, query=query)
      summary.write(out_dir, progress=False)
      total = time.perf_counter() - t0
  timer.close()
  missing = [s for s in STAGES[:-1] if s not in timer.stages]
  if missing:
    raise RuntimeError(f'stages never entered: {missing}; update _timed_functions')
  timer.stages['other'] = dict(seconds=total - sum(r['seconds'] for r in timer.stages.values()))
  return dict(
    stages=timer.stages,
    total_s=total,
    duration=summary.duration,
    video_duration=summary.settings['video_duration'],
    frames=len(summary.timestamps),
    shots=len(summary.shot_times),
    selected=len(summary.selected),
    summary_seconds=summary.summary_duration,
    fallback=summary.fallback,
    size=summary.settings['video_size'],
  )


def warm_up_encoder(encoder: encoders.ClipEncoder, chunk_size: int = 64) -> float:
  """Compiles the encoder for every batch bucket a video can need; returns seconds."""
  t0 = time.perf_counter()
  s = encoder.image_size
  sizes = sorted(
    {
      encoders._bucket(n, min(chunk_size, encoder.image_batch_size))  # pylint: disable=protected-access
      for n in range(1, chunk_size + 1)
    }
  )
  for b in sizes:
    encoder.encode_images(np.zeros((b, s, s, 3), np.uint8))
  encoder.encode_texts(['warm up'])
  return time.perf_counter() - t0

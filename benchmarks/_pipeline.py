"""The summarize pipeline, stage by stage, for `summarize_e2e.py` and `scaling.py`.

`run_stages` does what `clipit_jax.summarize.Summarizer.summarize` + `Summary.write`
do for a query-focused, training-free summary, calling the same functions, but
times each stage (and, if asked, measures its memory). It does not use the feature
cache. `generate_video` writes the synthetic test videos.
"""

from __future__ import annotations

import fractions
import math
import os
import pathlib
import time
import tracemalloc
from typing import Any

import av
import numpy as np

import _common  # pylint: disable=g-bad-import-order
from clipit_jax import baselines
from clipit_jax import evaluation
from clipit_jax.summarize import encoders
from clipit_jax.summarize import summarizer as summarize
from clipit_jax.summarize import video

STAGES = (
  "probe",
  "decode",
  "encode",
  "text",
  "score",
  "kts",
  "knapsack",
  "write_video",
  "write_json_plot",
)


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
  with av.open(str(path), mode="w", format="mp4") as out:
    vs = out.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
    vs.options = {"crf": "23", "preset": "veryfast", "g": str(2 * fps)}
    rate = 48000
    if audio:
      aus = out.add_stream("aac", rate=rate)
      aus.codec_context.layout = "mono"
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
        s["pos"] += s["vel"]
        for k, lim in ((0, height - s["size"]), (1, width - s["size"])):
          if not 0 <= s["pos"][k] <= lim:
            s["vel"][k] *= -1
            s["pos"][k] = min(max(s["pos"][k], 0), lim)
        y, x, z = int(s["pos"][0]), int(s["pos"][1]), s["size"]
        if s["circle"]:
          yy, xx = np.ogrid[:z, :z]
          m = (yy - z / 2) ** 2 + (xx - z / 2) ** 2 <= (z / 2) ** 2
          frame[y : y + z, x : x + z][m] = s["colour"]
        else:
          frame[y : y + z, x : x + z] = s["colour"]
      out.mux(vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
      if audio:
        target = int(round((i + 1) / fps * rate))
        while samples_done + 1024 <= target:
          t = (samples_done + np.arange(1024)) / rate
          wave = (0.2 * np.sin(2 * np.pi * tone * t)).astype(np.float32)[None]
          af = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
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
    f"synthetic_{duration_s:g}s_{width}x{height}_{fps}fps_{'aac' if audio else 'mute'}_s{seed}.mp4"
  )
  path = directory / name
  if path.is_file():
    return path
  tmp = directory / f".{name}.{os.getpid()}.tmp.mp4"
  t0 = time.perf_counter()
  print(f"generating {path} ({duration_s:g} s, {width}x{height}, {fps} fps) ...", flush=True)
  try:
    _write_video(tmp, duration_s, width, height, fps, audio, seed)
    os.replace(tmp, path)
  finally:
    if tmp.exists():
      tmp.unlink()
  print(f"  generated in {time.perf_counter() - t0:.0f} s", flush=True)
  return path


# ----------------------------------------------------------------- memory --


class StageTimer:
  """Times named stages; with `memory`, also RSS (sampled peak) and the traced peak.

  The traced peak is tracemalloc's: Python objects and NumPy arrays allocated in the
  stage (not XLA's buffers or FFmpeg's), above what was held when it began.
  """

  def __init__(self, memory: bool = False):
    self.memory = memory
    self.stages: dict[str, dict[str, float]] = {}
    self.sampler = None
    if memory:
      if not tracemalloc.is_tracing():
        tracemalloc.start()
      self.sampler = _common.RssSampler()

  def begin(self) -> dict[str, float]:
    """Starts measuring memory; returns the state to pass to `end`."""
    if not self.memory:
      return {}
    tracemalloc.reset_peak()
    self.sampler.reset()
    return dict(traced0=tracemalloc.get_traced_memory()[0], rss0=_common.current_rss_mib())

  def end(self, state: dict[str, float], rec: dict[str, Any]) -> dict[str, Any]:
    if self.memory:
      current, peak = tracemalloc.get_traced_memory()
      rec["traced_peak_mib"] = (peak - state["traced0"]) / 2**20
      rec["traced_kept_mib"] = (current - state["traced0"]) / 2**20
      rec["rss_before_mib"] = state["rss0"]
      rec["rss_after_mib"] = _common.current_rss_mib()
      rec["rss_peak_mib"] = self.sampler.peak()
      rec["rss_peak_growth_mib"] = rec["rss_peak_mib"] - state["rss0"]
      rec["ru_maxrss_so_far_mib"] = _common.peak_rss_mib()
    return rec

  def run(self, name: str, fn, *args, **kwargs):
    state = self.begin()
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    self.stages[name] = self.end(state, dict(seconds=time.perf_counter() - t0))
    return out

  def close(self) -> None:
    if self.sampler is not None:
      self.sampler.stop()


# ----------------------------------------------------------------- stages --


def run_stages(
  path: str,
  encoder: encoders.ClipEncoder,
  query: str,
  out_dir: str,
  *,
  fps: float = summarize.DEFAULT_FPS,
  proportion: float = summarize.DEFAULT_PROPORTION,
  memory: bool = False,
  chunk_size: int = 64,
) -> dict[str, Any]:
  """Summarizes `path` for `query` stage by stage, as `Summarizer.summarize` + `write`.

  Decoding and encoding alternate per chunk of `chunk_size` frames, as in
  `encoders.video_features`; their times are summed separately. Returns
  {'stages': {name: {'seconds', ...}}, 'duration', 'frames', 'shots', 'selected'}.
  """
  timer = StageTimer(memory)
  info = timer.run("probe", video.probe, path)

  # decode + encode, streaming (as encoders.video_features), timed separately
  decode_s = encode_s = 0.0
  feats, stamps = [], []
  state = timer.begin()
  it = video.decode_frames(path, fps=fps, size=encoder.image_size, chunk_size=chunk_size)
  peak_chunk = 0
  while True:
    t0 = time.perf_counter()
    try:
      frames, times = next(it)
    except StopIteration:
      decode_s += time.perf_counter() - t0
      break
    t1 = time.perf_counter()
    feats.append(encoder.encode_images(frames))
    t2 = time.perf_counter()
    decode_s += t1 - t0
    encode_s += t2 - t1
    stamps.append(times)
    peak_chunk = max(peak_chunk, len(times))
  features = np.concatenate(feats).astype(np.float32)
  timestamps = np.concatenate(stamps).astype(np.float64)
  del feats, stamps
  dec = timer.end(state, dict(seconds=decode_s))
  enc = dict(dec, seconds=encode_s)
  if memory:
    dec["note"] = enc["note"] = "decode and encode alternate per chunk: one memory record"
  timer.stages["decode"], timer.stages["encode"] = dec, enc

  duration = summarize.content_end(info, timestamps, fps)
  text = timer.run("text", encoder.encode_texts, [query])
  scores = timer.run("score", baselines.clip_similarity, features, text)
  steps = timer.run("kts", evaluation.kts_centred, np.asarray(features, np.float64))

  def select():
    times_ = summarize.shot_times(steps, timestamps, duration)
    values_ = evaluation.shot_means(np.asarray(scores, np.float64), steps)
    return times_, values_, summarize.select_shots(values_, times_, proportion * duration)

  times, values, selected = timer.run("knapsack", select)
  budget = proportion * duration
  fallback = not selected
  if fallback:
    shot, segment = summarize.fallback_segment(scores, timestamps, times, values, budget)
    selected, segments = [shot], [segment]
  else:
    segments = [(float(times[i, 0]), float(times[i, 1])) for i in selected]
  summary = summarize.Summary(
    video=path,
    duration=float(duration),
    has_audio=info.has_audio,
    timestamps=timestamps,
    scores=np.asarray(scores, np.float64),
    shot_steps=steps,
    shot_times=times,
    shot_values=values,
    selected=selected,
    segments=segments,
    budget=float(budget),
    fallback=fallback,
    method=summarize.BASELINE,
    query=query,
    captions=None,
    settings=dict(fps=fps, proportion=proportion, clip_model=encoder.model_id),
  )
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  timer.run("write_video", video.write_summary, path, segments, out / "summary.mp4", progress=False)

  def json_plot():
    import json  # pylint: disable=g-import-not-at-top
    from clipit_jax import files  # pylint: disable=g-import-not-at-top

    files.write_text(out / "summary.json", json.dumps(summary.to_json(), indent=2) + "\n")
    summarize.plot_scores(summary, out / "scores.png")

  timer.run("write_json_plot", json_plot)
  timer.close()
  return dict(
    stages=timer.stages,
    duration=float(duration),
    video_duration=info.duration,
    frames=int(len(timestamps)),
    shots=int(len(steps)),
    selected=len(selected),
    summary_seconds=float(summary.summary_duration),
    fallback=fallback,
    max_chunk=peak_chunk,
    size=[info.width, info.height],
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
  encoder.encode_texts(["warm up"])
  return time.perf_counter() - t0


def fmt_mib(x):
  return None if x is None else round(x, 1)


def rtf(seconds: float, duration: float) -> float:
  return seconds / duration if duration > 0 else math.nan

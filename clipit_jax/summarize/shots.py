"""Shots of a scored video, and which of them a summary keeps; the frames and texts around them.

  steps = protocol.kts_centred(features)             # [k, 2] inclusive frame ranges
  times = shot_times(steps, timestamps, duration)      # [k, 2] [start, end) seconds
  selected = select_shots(values, times, budget)       # the 0/1 knapsack of the shots

`fallback_segment` takes part of the best shot when no whole shot fits the budget.
"""

import math
from collections.abc import Sequence

import numpy as np

from clipit_jax import protocol
from clipit_jax import files
from clipit_jax.media import captions as captions_lib
from clipit_jax.media import video

# Largest knapsack keep-table: shot weights become coarser than 1 ms beyond.
_KNAPSACK_TABLE_BYTES = 1 << 26


def shot_times(steps: np.ndarray, timestamps: np.ndarray, end: float) -> np.ndarray:
  """Inclusive step ranges [k, 2] -> [start, end) seconds [k, 2].

  Shot k runs from its first frame's time to the next shot's (the first shot
  from 0, the last to `end`).
  """
  starts = np.asarray(timestamps, np.float64)[steps[:, 0]]
  starts[0] = 0.0
  return np.stack([starts, np.append(starts[1:], end)], axis=1)


def select_shots(values: np.ndarray, times: np.ndarray, budget: float) -> list[int]:
  """Knapsack of shot `values` [k] weighing their durations `times` [k, 2].

  Weights are milliseconds rounded up and the capacity `budget` seconds
  rounded down, so the selection never exceeds the budget; for very long
  videos the unit grows so the table stays within 64 MiB.

  Returns:
    Ascending indices of the selected shots.
  """
  capacity_ms = math.floor(budget * 1000 + 1e-6)
  unit = max(1, math.ceil(len(values) * capacity_ms / 8 / _KNAPSACK_TABLE_BYTES))
  durations_ms = (times[:, 1] - times[:, 0]) * 1000
  weights = np.ceil(np.round(durations_ms / unit, 6)).astype(np.int64)
  return protocol.knapsack(values, weights, capacity_ms // unit)


def fallback_segment(
  scores: np.ndarray, timestamps: np.ndarray, times: np.ndarray, values: np.ndarray, budget: float
) -> tuple[int, tuple[float, float]]:
  """(best shot, budget-long window of it) for when no whole shot fits.

  The window starts at the shot's best-scoring frame, moved back when it
  would leave the shot.
  """
  shot = int(np.argmax(values))
  start, end = times[shot]
  inside = np.flatnonzero((timestamps >= start) & (timestamps < end))
  best = inside[np.argmax(scores[inside])] if inside.size else None
  begin = float(timestamps[best]) if best is not None else float(start)
  if begin + budget > end:
    begin = max(float(start), float(end) - budget)
  return shot, (begin, min(float(end), begin + budget))


def content_end(info: video.VideoInfo, timestamps: np.ndarray, fps: float) -> float:
  """Where the decodable video ends: its duration, or less when truncated."""
  frame = 1.0 / info.fps if info.fps > 0 else 0.0
  return min(info.duration, float(timestamps[-1]) + 1.0 / fps + frame)


def frames_near(
  path: files.PathLike, times: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
  """The decoded frames nearest to `times` (seconds), one per distinct frame.

  Streams the video at twice the rate of `times`, keeping one candidate per
  time. Returns (uint8 [m', size, size, 3], [m'] seconds), m' <= len(times).
  """
  times = np.asarray(times, np.float64)
  spacing = float(np.min(np.diff(times))) if len(times) > 1 else 1.0
  rate = 2.0 / max(spacing, 1e-3)
  best = [None] * len(times)  # (distance, time, frame) per target time.
  for frames, stamps in video.decode_frames(path, fps=rate, size=size):
    for frame, t in zip(frames, stamps):
      k = int(np.argmin(np.abs(times - t)))
      d = abs(times[k] - t)
      if best[k] is None or d < best[k][0]:
        best[k] = (d, float(t), frame.copy())
  kept = sorted(
    {b[1]: b for b in best if b is not None}.values(), key=lambda b: b[1]
  )  # One per distinct frame, in time order.
  return (np.stack([b[2] for b in kept]), np.array([b[1] for b in kept], np.float64))


def spread_texts(texts: Sequence[str], duration: float) -> list[captions_lib.Caption]:
  """Texts without times, as captions over equal parts of the video."""
  n = len(texts)
  return [
    captions_lib.Caption(i * duration / n, (i + 1) * duration / n, t) for i, t in enumerate(texts)
  ]

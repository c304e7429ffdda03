"""The evaluation protocol's functions: KTS, knapsack, keyshot F1, rank correlation, QFVS IoU.

Everything here is plain numpy/scipy and runs on the host:

* `kts`: Kernel Temporal Segmentation (Potapov et al., ECCV 2014), the shot
  boundaries every SumMe/TVSum paper uses (the `cpd_auto` model selection).
* `knapsack`, `generate_summary`: the keyframe -> keyshot conversion of the
  Zhang et al. (ECCV 2016) h5 protocol (`vsum_tools.generate_summary`).
* `evaluate_summary`: keyshot F1 against every user summary (max for SumMe,
  average for TVSum).
* `rank_correlation`: Kendall tau-b / Spearman rho of Otani et al. (CVPR 2019).
* `qfvs_evaluate`: concept-IoU bipartite matching of Sharghi et al. (CVPR 2017).
* `user_summaries_from_scores`: per-annotator keyshot summaries from raw
  importance scores (TVSum), with the same shot scoring and knapsack.

Shapes in docstrings: `n` feature steps, `n_frames` original frames, `users`
annotators, `n_shots` shots.  Bad input raises `ValueError` saying what is
wrong.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import scipy.optimize
import scipy.stats

# Largest number of (segment end, segment length) cells KTS keeps at once
# (float64: 32 MiB).  Inputs up to 2,048 steps get an unbounded segment
# length; longer inputs bound the segment length to `_KTS_BAND_CELLS // n`.
_KTS_BAND_CELLS = 1 << 22
# Back-pointer memory that the default `max_shots` of KTS stays within.
_KTS_POINTER_BYTES = 1 << 28
# Largest knapsack keep-table (bit-packed) that `knapsack` allocates.
_KNAPSACK_MAX_TABLE_BYTES = 1 << 31


# ---------------------------------------------------------------------------
# Input checks.


def _float_array(x: Any, name: str, ndim: int) -> np.ndarray:
  """`x` as a finite, non-empty float64 array of `ndim` dimensions."""
  try:
    a = np.asarray(x, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(f'{name} must be numeric: {e}') from None
  if a.ndim != ndim:
    raise ValueError(f'{name} must have {ndim} dimension(s), got shape {a.shape}')
  if a.size == 0:
    raise ValueError(f'{name} is empty (shape {a.shape})')
  if not np.all(np.isfinite(a)):
    raise ValueError(f'{name} contains NaN or infinite values')
  return a


def _int_array(x: Any, name: str, allow_empty: bool = False) -> np.ndarray:
  """`x` as a 1-D int64 array; float entries must be integral."""
  a = np.asarray(x)
  if a.ndim != 1:
    raise ValueError(f'{name} must be 1-D, got shape {a.shape}')
  if a.size == 0:
    if allow_empty:
      return np.zeros(0, np.int64)
    raise ValueError(f'{name} is empty')
  if a.dtype == bool or not (
    np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
  ):
    raise ValueError(f'{name} must hold integers, got dtype {a.dtype}')
  if np.issubdtype(a.dtype, np.floating):
    if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
      raise ValueError(f'{name} must hold integers, got non-integral values')
  return a.astype(np.int64)


def _int_scalar(x: Any, name: str) -> int:
  if isinstance(x, (bool, np.bool_)):
    raise ValueError(f'{name} must be an integer, got {x!r}')
  if isinstance(x, (int, np.integer)):
    return int(x)
  if isinstance(x, (float, np.floating)) and math.isfinite(x) and x == int(x):
    return int(x)
  raise ValueError(f'{name} must be an integer, got {x!r}')


def _check_proportion(proportion: float) -> float:
  p = float(proportion)
  if not 0.0 <= p <= 1.0:
    raise ValueError(f'proportion must be in [0, 1], got {proportion}')
  return p


def check_change_points(change_points: Any, n_frames: int) -> np.ndarray:
  """Validates shots `[n_shots, 2]` (inclusive ranges) covering `n_frames`.

  Returns them as int64.  The shots must be in order, non-empty, contiguous,
  start at frame 0 and end at frame `n_frames - 1`.
  """
  cps = np.asarray(change_points)
  if cps.ndim != 2 or cps.shape[1] != 2 or cps.shape[0] == 0:
    raise ValueError(f'change_points must have shape [n_shots, 2], got {cps.shape}')
  cps = _int_array(cps.reshape(-1), 'change_points').reshape(-1, 2)
  starts, ends = cps[:, 0], cps[:, 1]
  if starts[0] != 0:
    raise ValueError(f'change_points must start at frame 0, got {starts[0]}')
  if ends[-1] != n_frames - 1:
    raise ValueError(
      f'change_points end at frame {ends[-1]} but there are '
      f'{n_frames} frames (last frame {n_frames - 1})'
    )
  if np.any(ends < starts):
    bad = int(np.flatnonzero(ends < starts)[0])
    raise ValueError(f'shot {bad} ends before it starts: {cps[bad].tolist()}')
  if np.any(starts[1:] != ends[:-1] + 1):
    bad = int(np.flatnonzero(starts[1:] != ends[:-1] + 1)[0])
    raise ValueError(
      f'change_points leave a gap or overlap between shot {bad} '
      f'{cps[bad].tolist()} and shot {bad + 1} '
      f'{cps[bad + 1].tolist()}'
    )
  return cps


# ---------------------------------------------------------------------------
# Kernel temporal segmentation.


def _kts_band(x: np.ndarray, lmin: int, lmax: int) -> np.ndarray:
  """Within-segment scatter for every segment of length lmin..lmax.

  Args:
    x: `[n, d]` features (the linear kernel is `x @ x.T`).
    lmin: shortest segment.
    lmax: longest segment.

  Returns:
    `[n + 1, lmax - lmin + 1]` array `band[l, j]`: the scatter of frames
    `[l - lmax + j, l)` (length `lmax - j`), +inf where that starts before 0.
    scatter = sum_i K_ii - sum_{i,j} K_ij / length, computed from prefix
    sums `S` as `sum ||x_i||^2 - ||S_l - S_t||^2 / length`.
  """
  n = x.shape[0]
  width = lmax - lmin + 1
  s = np.zeros((n + 1, x.shape[1]))
  np.cumsum(x, axis=0, out=s[1:])
  sq = np.einsum('ij,ij->i', s, s)
  diag = np.concatenate([[0.0], np.cumsum(np.einsum('ij,ij->i', x, x))])
  lengths = (lmax - np.arange(width)).astype(np.float64)
  band = np.full((n + 1, width), np.inf)
  rows_per_block = max(1, (1 << 20) // (width + 64))
  for a in range(lmin, n + 1, rows_per_block):
    b = min(a + rows_per_block, n + 1)
    t0 = max(0, a - lmax)
    rows = np.arange(a, b)
    t = rows[:, None] - lmax + np.arange(width)[None, :]  # [rows, width]
    valid = t >= 0
    tc = np.where(valid, t, t0)
    dots = s[a:b] @ s[t0 : b - lmin + 1].T  # [rows, t range]
    cross = np.take_along_axis(dots, tc - t0, axis=1)
    block_sum = sq[rows][:, None] + sq[tc] - 2.0 * cross
    scatter = diag[rows][:, None] - diag[tc] - block_sum / lengths
    band[a:b] = np.where(valid, np.maximum(scatter, 0.0), np.inf)
  return band


def _kts_penalty(m: int, n: int, vmax: float) -> float:
  """`cpd_auto` penalty for m change points in n steps (0 for m = 0)."""
  if m == 0:
    return 0.0
  return vmax * m / (2.0 * n) * (math.log(n / m) + 1.0)


def kts(
  features: Any,
  max_shots: int | None = None,
  *,
  lmin: int = 1,
  lmax: int | None = None,
  vmax: float = 1.0,
) -> np.ndarray:
  """Kernel temporal segmentation with the `cpd_auto` choice of shot count.

  Features are L2-normalised (zero rows stay zero) and compared with the
  linear kernel.  A dynamic programme (`cpd_nonlin`) gives the least total
  within-segment scatter `cost[m]` for each number of change points m; the
  returned segmentation minimises, as `cpd_auto` with `desc_rate=1`,
  `cost[m] / n + vmax * m / (2n) * (log(n / m) + 1)` (first minimum on ties).
  As cost[m] >= 0 and the penalty grows with m, the search stops at the first
  m whose penalty alone exceeds the best total: same answer, less work.

  Defaults: `lmax = n` up to 2,048 steps, `max(lmin, 4,194,304 // n)` beyond
  (10,000 steps allow 419-step shots), so the scatter band `[n + 1, lmax]`
  stays within 32 MiB; `max_shots = ceil(n / 4)` (2 s shots on average at
  2 fps; KTS on TVSum/SumMe picks about one shot per ~10 steps, so real video
  does not reach it), lowered for very long inputs (> ~30,000 steps) so the
  back-pointers `[max_shots, n + 1]` (uint8/int16) stay within 256 MiB, but
  never below the `ceil(n / lmax)` shots that `lmax` requires.
  Time is O(max_shots * n * lmax) at worst: ~0.3 s for 1,200 steps, ~10 s
  for 10,000.

  Args:
    features: `[n, d]` frame features (typically ~2 fps sub-sampled).
    max_shots: most shots (= max change points + 1) considered.
    lmin: shortest shot, in steps.
    lmax: longest shot, in steps.
    vmax: penalty weight (the `vmax` of `cpd_auto`; 1 in every paper).

  Returns:
    `[n_shots, 2]` int64 inclusive `[start, end]` step ranges, in order,
    covering every step of `features` exactly once.
  """
  x = _float_array(features, 'features', 2)
  n = x.shape[0]
  lmin, lmax, arg_dtype, max_ncp = _kts_limits(n, max_shots, lmin, lmax, vmax)
  norms = np.linalg.norm(x, axis=1, keepdims=True)
  x = x / np.where(norms > 0, norms, 1.0)
  band = _kts_band(x, lmin, lmax)
  pointers, best_m = _kts_search(band, lmin, lmax, arg_dtype, max_ncp, vmax)
  return _kts_backtrack(pointers, best_m, n, lmax)


def _kts_search(
  band: np.ndarray, lmin: int, lmax: int, arg_dtype: Any, max_ncp: int, vmax: float
) -> tuple[list, int]:
  """The dynamic programme of `kts` over the scatter `band` `[n + 1, lmax - lmin + 1]`.

  Returns the back-pointers of each number of change points k (`[n + 1]` each, None
  for k = 0) and the k of least penalised cost.
  """
  n = band.shape[0] - 1
  width = lmax - lmin + 1
  # cost[0][l]: frames [0, l) as one segment, i.e. t = 0, column lmax - l.
  cost = np.full(n + 1, np.inf)
  first = np.arange(lmin, lmax + 1)
  cost[first] = band[first, lmax - first]
  pointers = [None]
  best_m, best_total = 0, cost[n] / n
  rows_per_chunk = max(1, (1 << 18) // width)
  for k in range(1, max_ncp + 1):
    if _kts_penalty(k, n, vmax) > best_total:
      break
    # cost_k[l] = min_t cost_{k-1}[t] + scatter(t, l); t = l - lmax + j.
    padded = np.concatenate([np.full(lmax, np.inf), cost])
    windows = np.lib.stride_tricks.sliding_window_view(padded, width)
    new = np.full(n + 1, np.inf)
    arg = np.zeros(n + 1, arg_dtype)
    for a in range((k + 1) * lmin, n + 1, rows_per_chunk):
      b = min(a + rows_per_chunk, n + 1)
      j0 = min(width - 1, max(0, k * lmin + lmax - (b - 1)))
      total = band[a:b, j0:] + windows[a:b, j0:]
      j = np.argmin(total, axis=1)
      new[a:b] = np.take_along_axis(total, j[:, None], axis=1)[:, 0]
      arg[a:b] = j + j0
    cost = new
    pointers.append(arg)
    total_k = cost[n] / n + _kts_penalty(k, n, vmax)
    if total_k < best_total:
      best_m, best_total = k, total_k
  return pointers, best_m


def _kts_limits(
  n: int, max_shots: int | None, lmin: int, lmax: int | None, vmax: float
) -> tuple[int, int, Any, int]:
  """Checks kts's arguments and fills its defaults (see kts); returns (lmin, lmax, the
  back-pointer dtype, the most change points)."""
  lmin = _int_scalar(lmin, 'lmin')
  if lmin < 1:
    raise ValueError(f'lmin must be >= 1, got {lmin}')
  if lmin > n:
    raise ValueError(f'lmin={lmin} is longer than the {n} feature steps')
  if lmax is None:
    lmax = n if n <= 2048 else max(lmin, _KTS_BAND_CELLS // n)
  lmax = min(_int_scalar(lmax, 'lmax'), n)
  if lmax < lmin:
    raise ValueError(f'lmax={lmax} must be >= lmin={lmin}')
  width = lmax - lmin + 1
  arg_dtype = np.uint8 if width <= 256 else np.int16 if width < (1 << 15) else np.int32
  if max_shots is None:
    max_shots = min(-(-n // 4), _KTS_POINTER_BYTES // (np.dtype(arg_dtype).itemsize * (n + 1)))
    max_shots = max(1, max_shots, -(-n // lmax))
  max_shots = _int_scalar(max_shots, 'max_shots')
  if max_shots < 1:
    raise ValueError(f'max_shots must be >= 1, got {max_shots}')
  if not math.isfinite(vmax) or vmax < 0:
    raise ValueError(f'vmax must be finite and >= 0, got {vmax}')
  max_ncp = min(max_shots, n // lmin) - 1
  min_ncp = -(-n // lmax) - 1
  if max_ncp < min_ncp:
    raise ValueError(
      f'{n} steps cannot be cut into at most {max_shots} shots of {lmin}..{lmax} steps'
    )
  return lmin, lmax, arg_dtype, max_ncp


def _kts_backtrack(pointers: list, num_change_points: int, n: int, lmax: int) -> np.ndarray:
  """The segments `[shots, 2]` (inclusive step ranges) from the DP's back-pointers."""
  starts = [0] * (num_change_points + 1)
  end = n
  for k in range(num_change_points, 0, -1):
    end = end - lmax + int(pointers[k][end])
    starts[k] = end
  starts = np.asarray(starts, np.int64)
  ends = np.append(starts[1:] - 1, n - 1)
  return np.stack([starts, ends], axis=1)


# ---------------------------------------------------------------------------
# Keyshot selection.


def kts_centred(features: np.ndarray) -> np.ndarray:
  """KTS shots `[n_shots, 2]` of `[n, d]` features centred on their mean (in their dtype).

  CLIP embeddings share a large common direction; KTS on the raw features of the tiny
  CLIP finds a single shot, on centred ones the content changes.
  """
  return kts(features - features.mean(axis=0))


def knapsack(values: Any, weights: Any, capacity: int) -> list[int]:
  """Exact 0/1 knapsack by dynamic programming over integer capacity.

  One vectorised update per item; the take/skip decisions go to a bit-packed
  `[items, capacity + 1]` table for the backtrack (2,880 items x 64,801
  capacities: 23 MB).  Capacities above the total weight are clipped to it
  (same answer).  Ties: an item is taken only when it strictly increases the
  value (as the reference `knapsack_dp`), so among equal-value selections
  the earlier items win, deterministically.

  Args:
    values: `[items]` finite values (items of value <= 0 are never taken).
    weights: `[items]` non-negative integer weights.
    capacity: non-negative integer budget.

  Returns:
    Ascending indices of the selected items.
  """
  v = np.asarray(values, dtype=np.float64) if np.size(values) else np.zeros(0)
  if v.ndim != 1:
    raise ValueError(f'values must be 1-D, got shape {v.shape}')
  if not np.all(np.isfinite(v)):
    raise ValueError('values contain NaN or infinite values')
  w = _int_array(weights, 'weights', allow_empty=True)
  if w.shape != v.shape:
    raise ValueError(f'values and weights differ in length: {v.shape[0]} vs {w.shape[0]}')
  if np.any(w < 0):
    raise ValueError(f'weights must be >= 0, got {int(w.min())}')
  capacity = _int_scalar(capacity, 'capacity')
  if capacity < 0:
    raise ValueError(f'capacity must be >= 0, got {capacity}')
  fits = np.flatnonzero(w <= capacity)
  if fits.size == 0:
    return []
  cap = int(min(capacity, w[fits].sum()))
  row_bytes = (cap + 8) // 8
  if fits.size * row_bytes > _KNAPSACK_MAX_TABLE_BYTES:
    raise ValueError(
      f'knapsack of {fits.size} items x capacity {cap} needs '
      f'{fits.size * row_bytes / 2**30:.1f} GiB; reduce the '
      'capacity resolution (e.g. weigh shots in coarser units)'
    )
  best = np.zeros(cap + 1)
  cand = np.empty(cap + 1)
  take = np.zeros(cap + 1, bool)
  keep = np.empty((fits.size, row_bytes), np.uint8)
  for row, i in enumerate(fits):
    wi = int(w[i])
    np.add(best[: cap + 1 - wi], v[i], out=cand[wi:])
    take[:wi] = False
    np.greater(cand[wi:], best[wi:], out=take[wi:])
    np.copyto(best, cand, where=take)
    keep[row] = np.packbits(take)
  picks = []
  c = cap
  for row in range(fits.size - 1, -1, -1):
    if keep[row, c >> 3] & (0x80 >> (c & 7)):
      i = int(fits[row])
      picks.append(i)
      c -= int(w[i])
  return sorted(picks)


def min_max(scores: np.ndarray) -> np.ndarray:
  """[n] -> [n] in [0, 1]; constant scores become all ones (every shot ties)."""
  scores = np.asarray(scores, np.float64)
  low, high = scores.min(), scores.max()
  if high - low <= 1e-12:
    return np.ones_like(scores)
  return (scores - low) / (high - low)


def upsample_scores(scores: Any, positions: Any, n_frames: int) -> np.ndarray:
  """Spreads sub-sampled scores to every frame (step function).

  Frame f in `[positions[k], positions[k + 1])` gets `scores[k]` (the last
  step runs to `n_frames`); frames before `positions[0]` get 0.

  Args:
    scores: `[n_steps]` scores of the sub-sampled frames.
    positions: `[n_steps]` strictly increasing frame indices in
      `[0, n_frames)`.
    n_frames: number of original frames.

  Returns:
    `[n_frames]` float64 frame scores.
  """
  n_frames = _int_scalar(n_frames, 'n_frames')
  if n_frames < 1:
    raise ValueError(f'n_frames must be >= 1, got {n_frames}')
  s = _float_array(scores, 'scores', 1)
  pos = _int_array(positions, 'positions')
  if pos.shape != s.shape:
    raise ValueError(f'scores and positions differ in length: {s.shape[0]} vs {pos.shape[0]}')
  if pos[0] < 0 or pos[-1] >= n_frames:
    raise ValueError(f'positions must lie in [0, {n_frames}), got {pos[0]}..{pos[-1]}')
  if np.any(np.diff(pos) <= 0):
    raise ValueError('positions must be strictly increasing')
  counts = np.diff(np.append(pos, n_frames))
  return np.concatenate([np.zeros(pos[0]), np.repeat(s, counts)])


def shot_means(scores: np.ndarray, segments: np.ndarray) -> np.ndarray:
  """Mean score of each shot: `[n]` scores, `[k, 2]` inclusive (first, last) indices -> `[k]`.

  The shots are contiguous and in order, covering the scores from `segments[0, 0]` on.
  """
  return np.add.reduceat(scores, segments[:, 0]) / (segments[:, 1] - segments[:, 0] + 1)


def _keyshot_summary(
  frame_scores: np.ndarray,
  cps: np.ndarray,
  n_frames: int,
  proportion: float,
  value_scale: float | None,
) -> np.ndarray:
  """Mean score per shot -> knapsack at `proportion` -> `[n_frames]` int8."""
  lengths = cps[:, 1] - cps[:, 0] + 1
  shot_scores = shot_means(frame_scores, cps)
  if value_scale is not None:
    shot_scores = np.trunc(shot_scores * value_scale)
  picks = knapsack(shot_scores, lengths, int(n_frames * proportion))
  chosen = np.zeros(len(cps), np.int8)
  chosen[picks] = 1
  return np.repeat(chosen, lengths)


def _check_value_scale(value_scale: float | None) -> float | None:
  if value_scale is None:
    return None
  scale = float(value_scale)
  if not math.isfinite(scale) or scale <= 0:
    raise ValueError(f'value_scale must be positive, got {value_scale}')
  return scale


def generate_summary(
  scores: Any,
  change_points: Any,
  n_frames: int,
  positions: Any,
  proportion: float = 0.15,
  *,
  value_scale: float | None = None,
) -> np.ndarray:
  """Keyframe scores -> keyshot summary (vsumm-reinforce `generate_summary`).

  Scores are spread to every frame (`upsample_scores`), each shot gets the
  mean score of its frames, and `knapsack` picks shots (weight = shot length
  `end - start + 1`) within `int(n_frames * proportion)` frames.  Knapsack
  values are the float means; `value_scale=1000` truncates `mean * 1000` to
  integers as some reference copies do (only near-ties can differ).

  Args:
    scores: `[n_steps]` predicted importance of the sub-sampled frames.
    change_points: `[n_shots, 2]` inclusive frame ranges covering every frame.
    n_frames: number of original frames.
    positions: `[n_steps]` frame index of each score.
    proportion: summary budget as a fraction of `n_frames`.
    value_scale: optional integer quantisation of the knapsack values.

  Returns:
    `[n_frames]` int8 0/1 keyshot summary.
  """
  n_frames = _int_scalar(n_frames, 'n_frames')
  frame_scores = upsample_scores(scores, positions, n_frames)
  cps = check_change_points(change_points, n_frames)
  return _keyshot_summary(
    frame_scores, cps, n_frames, _check_proportion(proportion), _check_value_scale(value_scale)
  )


def user_summaries_from_scores(
  user_scores: Any,
  change_points: Any,
  proportion: float = 0.15,
  *,
  value_scale: float | None = None,
) -> np.ndarray:
  """Each annotator's frame scores -> keyshot summary (as `generate_summary`).

  This is how the TVSum user summaries of the Zhang et al. h5 files are made
  from the raw 1-5 annotations: shot means over KTS shots, knapsack at 15 %.

  Args:
    user_scores: `[users, n_frames]` per-frame importance of each annotator.
    change_points: `[n_shots, 2]` inclusive frame ranges covering every frame.
    proportion: summary budget as a fraction of `n_frames`.
    value_scale: optional integer quantisation of the knapsack values.

  Returns:
    `[users, n_frames]` int8 0/1 summaries.
  """
  u = _float_array(user_scores, 'user_scores', 2)
  n_frames = u.shape[1]
  cps = check_change_points(change_points, n_frames)
  proportion = _check_proportion(proportion)
  value_scale = _check_value_scale(value_scale)
  return np.stack([_keyshot_summary(row, cps, n_frames, proportion, value_scale) for row in u])


# ---------------------------------------------------------------------------
# Metrics.


def evaluate_summary(
  summary: Any, user_summary: Any, reduce: str, *, max_length_mismatch: int | None = 5
) -> float:
  """Keyshot F1 (percent) of a summary against every user summary.

  Both are binarised (> 0).  When the prediction is longer than the user
  summaries it is truncated, when shorter zero-padded (the benchmark files
  disagree by a frame or so); a difference above `max_length_mismatch`
  frames raises (None: any).  Per user: overlap = sum(pred & user),
  precision = overlap / sum(pred), recall = overlap / sum(user),
  F1 = 2PR / (P + R), and F1 = 0 when the overlap is 0.

  Args:
    summary: `[n_frames]` predicted 0/1 summary.
    user_summary: `[users, n_frames']` 0/1 user summaries.
    reduce: 'max' (SumMe) or 'avg' (TVSum) over users.
    max_length_mismatch: largest tolerated `|n_frames - n_frames'|`.

  Returns:
    F1 in percent, in [0, 100].
  """
  if reduce not in ('max', 'avg'):
    raise ValueError(f"reduce must be 'max' or 'avg', got {reduce!r}")
  pred = _float_array(summary, 'summary', 1) > 0
  users = _float_array(user_summary, 'user_summary', 2) > 0
  n = users.shape[1]
  diff = abs(pred.shape[0] - n)
  if max_length_mismatch is not None and diff > max_length_mismatch:
    raise ValueError(
      f'summary has {pred.shape[0]} frames but user_summary '
      f'has {n} (more than {max_length_mismatch} apart)'
    )
  pred = np.pad(pred[:n], (0, max(0, n - pred.shape[0])))
  overlap = users.astype(np.int64) @ pred.astype(np.int64)
  n_pred = int(pred.sum())
  n_user = users.sum(axis=1)
  f1 = np.zeros(users.shape[0])
  hit = overlap > 0
  precision = overlap[hit] / n_pred
  recall = overlap[hit] / n_user[hit]
  f1[hit] = 2 * precision * recall / (precision + recall)
  return float(100.0 * (f1.max() if reduce == 'max' else f1.mean()))


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Pearson correlation `[len(a), len(b)]` between rows; 0 for constants."""
  a = a - a.mean(axis=1, keepdims=True)
  b = b - b.mean(axis=1, keepdims=True)
  na = np.sqrt(np.einsum('ij,ij->i', a, a))
  nb = np.sqrt(np.einsum('ij,ij->i', b, b))
  denom = np.outer(na, nb)
  r = np.zeros(denom.shape)
  np.divide(a @ b.T, denom, out=r, where=denom > 0)
  return np.clip(r, -1.0, 1.0)


def spearman_matrix(a: Any, b: Any) -> np.ndarray:
  """Spearman rho between rows: Pearson of average ranks, `[len(a), len(b)]`.

  Equals `scipy.stats.spearmanr` per pair; 0 where a row is constant.
  """
  ra = scipy.stats.rankdata(np.asarray(a, np.float64), axis=1)
  rb = scipy.stats.rankdata(np.asarray(b, np.float64), axis=1)
  return _pearson_rows(ra, rb)


def kendall_tau_b(x: Any, y: Any) -> float:
  """scipy's Kendall tau-b, defined as 0 when either input is constant."""
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  if np.ptp(x) == 0 or np.ptp(y) == 0:
    return 0.0
  return float(scipy.stats.kendalltau(x, y).statistic)


def rank_correlation(scores: Any, user_scores: Any) -> dict[str, float]:
  """Otani et al. rank-order agreement, averaged over annotators.

  Kendall tau-b (`scipy.stats.kendalltau`) and Spearman rho
  (`scipy.stats.spearmanr`, computed as Pearson of average ranks) between
  the predicted frame scores and each annotator's scores.  A constant input
  has no ranking; its correlation counts as 0 (scipy would give NaN).

  Args:
    scores: `[n_frames]` predicted per-frame importance (see
      `upsample_scores` for sub-sampled predictions).
    user_scores: `[users, n_frames]` annotators' per-frame importance.

  Returns:
    {'kendall': mean tau, 'spearman': mean rho}.
  """
  s = _float_array(scores, 'scores', 1)
  u = _float_array(user_scores, 'user_scores', 2)
  if u.shape[1] != s.shape[0]:
    raise ValueError(f'scores have {s.shape[0]} frames but user_scores have {u.shape[1]}')
  if s.shape[0] < 2:
    raise ValueError('rank correlation needs at least 2 frames')
  kendall = [kendall_tau_b(s, row) for row in u]
  spearman = spearman_matrix(s[None], u)[0]
  return {'kendall': float(np.mean(kendall)), 'spearman': float(np.mean(spearman))}


def _concept_matrix(shot_concepts: Any) -> np.ndarray:
  """`[n_shots, n_concepts]` 0/1 float array from an array or from sets."""
  if isinstance(shot_concepts, np.ndarray) and shot_concepts.ndim == 2:
    m = shot_concepts
  elif (
    isinstance(shot_concepts, Sequence)
    and shot_concepts
    and all(isinstance(c, (set, frozenset)) for c in shot_concepts)
  ):
    labels: dict[Hashable, int] = {}
    for concepts in shot_concepts:
      for c in concepts:
        labels.setdefault(c, len(labels))
    m = np.zeros((len(shot_concepts), max(1, len(labels))))
    for i, concepts in enumerate(shot_concepts):
      m[i, [labels[c] for c in concepts]] = 1.0
    return m
  else:
    m = np.asarray(shot_concepts)
  try:
    m = np.asarray(m, np.float64)
  except (TypeError, ValueError):
    raise ValueError(
      'shot_concepts must be a [n_shots, n_concepts] 0/1 array or a sequence of sets'
    ) from None
  if m.ndim != 2 or m.shape[0] == 0:
    raise ValueError(
      'shot_concepts must be a [n_shots, n_concepts] 0/1 array '
      f'or a sequence of sets, got shape {m.shape}'
    )
  if not np.all((m == 0) | (m == 1)):
    raise ValueError('shot_concepts must hold only 0 and 1')
  return m


def _shot_indices(shots: Any, n_shots: int, name: str) -> np.ndarray:
  idx = _int_array(shots if isinstance(shots, np.ndarray) else list(shots), name, allow_empty=True)
  if idx.size and (idx.min() < 0 or idx.max() >= n_shots):
    raise ValueError(f'{name} must index shots 0..{n_shots - 1}, got {idx.min()}..{idx.max()}')
  if np.unique(idx).size != idx.size:
    raise ValueError(f'{name} lists a shot more than once')
  return idx


def concept_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """IoU of concept sets between rows: `[len(a), len(b)]`, 0 if union empty."""
  inter = a @ b.T
  union = a.sum(axis=1)[:, None] + b.sum(axis=1)[None, :] - inter
  iou = np.zeros(inter.shape)
  np.divide(inter, union, out=iou, where=union > 0)
  return iou


def qfvs_evaluate(
  predicted_shots: Iterable[int] | np.ndarray,
  user_shots: Iterable[int] | np.ndarray,
  shot_concepts: Any,
) -> dict[str, float]:
  """QFVS semantic precision / recall / F1 (Sharghi et al., CVPR 2017).

  Shot similarity is the IoU of the shots' concept sets (0 when both are
  empty, as the reference `semantic_iou`); predicted and user shots are
  matched one-to-one by maximum-weight bipartite matching
  (`scipy.optimize.linear_sum_assignment`, maximize=True).

  Args:
    predicted_shots: indices of the predicted summary's shots.
    user_shots: indices of the user summary's shots.
    shot_concepts: `[n_shots, n_concepts]` 0/1 array, or one set per shot.

  Returns:
    {'precision': matched / len(predicted), 'recall': matched / len(user),
     'f1': harmonic mean}, fractions in [0, 1]; all 0 if either is empty.
  """
  concepts = _concept_matrix(shot_concepts)
  pred = _shot_indices(predicted_shots, concepts.shape[0], 'predicted_shots')
  user = _shot_indices(user_shots, concepts.shape[0], 'user_shots')
  if pred.size == 0 or user.size == 0:
    return {'precision': 0.0, 'recall': 0.0, 'f1': 0.0}
  sim = concept_iou(concepts[pred], concepts[user])
  rows, cols = scipy.optimize.linear_sum_assignment(sim, maximize=True)
  matched = float(sim[rows, cols].sum())
  precision = matched / pred.size
  recall = matched / user.size
  f1 = 0.0 if matched == 0 else 2 * precision * recall / (precision + recall)
  return {'precision': precision, 'recall': recall, 'f1': f1}

"""The human baselines: how well the annotators agree with each other.

TVSum's raw annotations (`ydata-anno.tsv`, read by datasets/tvsum_annotations.py) give
the rank-correlation baseline; QFVS's user summaries the QFVS reference rows. The human baseline is the "Human" row of
Otani et al. (CVPR 2019) Table 1, which CLIP-It's supplementary repeats:
Kendall tau 0.177, Spearman rho 0.204.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from clipit_jax import protocol
from clipit_jax.datasets import tvsum_annotations

# Distinct score values up to which Kendall tau-b uses contingency tables.
_MAX_LEVELS = 32


def _pairwise_kendall_levels(codes: np.ndarray, levels: int) -> np.ndarray:
  """Exact Kendall tau-b between all rows of `[users, n]` codes 0..levels-1.

  All pairwise `[levels, levels]` contingency tables come from one one-hot
  matrix product; concordant minus discordant pairs and the tie counts follow
  from them: tau_b = (C - D) / sqrt((n0 - n1) (n0 - n2)), n0 = n (n - 1) / 2
  (scipy's formula).  0 where a row is constant.
  """
  users, n = codes.shape
  onehot = np.zeros((users, levels, n), np.float32)  # exact: n < 2**24
  onehot[np.arange(users)[:, None], codes, np.arange(n)[None, :]] = 1.0
  flat = onehot.reshape(users * levels, n)
  tables = np.rint(flat @ flat.T).astype(np.int64)
  tables = tables.reshape(users, levels, users, levels).transpose(0, 2, 1, 3)
  # above[..., a, b]: count with row level > a and column level > b;
  # below[..., a, b]: count with row level > a and column level < b.
  rows_after = np.cumsum(tables[..., ::-1, :], axis=-2)[..., ::-1, :]
  rows_after = np.concatenate(
    [rows_after[..., 1:, :], np.zeros_like(rows_after[..., :1, :])], axis=-2
  )
  after = np.cumsum(rows_after[..., ::-1], axis=-1)[..., ::-1]
  above = np.concatenate([after[..., 1:], np.zeros_like(after[..., :1])], axis=-1)
  before = np.cumsum(rows_after, axis=-1)
  below = np.concatenate([np.zeros_like(before[..., :1]), before[..., :-1]], axis=-1)
  con_minus_dis = np.sum(tables * (above - below), axis=(-2, -1))
  counts = np.stack([np.bincount(c, minlength=levels) for c in codes])
  ties = np.sum(counts * (counts - 1) // 2, axis=1)
  n0 = n * (n - 1) // 2
  denom = np.sqrt(np.outer(n0 - ties, n0 - ties).astype(np.float64))
  tau = np.zeros((users, users))
  np.divide(con_minus_dis, denom, out=tau, where=denom > 0)
  return tau


def pairwise_kendall(scores: Any) -> np.ndarray:
  """Kendall tau-b `[users, users]` between all annotators' score rows."""
  u = protocol._float_array(scores, 'user_scores', 2)
  values, codes = np.unique(u, return_inverse=True)
  if values.size <= _MAX_LEVELS:
    return _pairwise_kendall_levels(codes.reshape(u.shape), values.size)
  tau = np.eye(u.shape[0])
  for i in range(u.shape[0]):
    for j in range(i + 1, u.shape[0]):
      tau[i, j] = tau[j, i] = protocol.kendall_tau_b(u[i], u[j])
  return tau


def human_rank_correlation(user_scores: Any) -> dict[str, float]:
  """Leave-one-out human agreement of one video (Otani et al. 2019).

  Each annotator's frame scores are taken as the prediction and correlated
  with each other annotator separately (per-frame, no sub-sampling; Kendall
  tau-b and Spearman rho as scipy computes them); the mean over the others is
  averaged over annotators, i.e. the mean over ordered pairs i != j.  (Not the
  correlation with the mean of the others, which is much higher.)

  Args:
    user_scores: `[users, n_frames]` annotators' per-frame importance.

  Returns:
    {'kendall': mean tau, 'spearman': mean rho}.
  """
  u = protocol._float_array(user_scores, 'user_scores', 2)
  users, n = u.shape
  if users < 2 or n < 2:
    raise ValueError(f'need >= 2 annotators and >= 2 frames, got shape {u.shape}')
  off = ~np.eye(users, dtype=bool)
  return {
    'kendall': float(pairwise_kendall(u)[off].mean()),
    'spearman': float(protocol.spearman_matrix(u, u)[off].mean()),
  }


def tvsum_human_baseline(videos: Mapping[str, tvsum_annotations.TvsumVideo]) -> dict[str, float]:
  """`human_rank_correlation` averaged over videos (Otani's "Human" row)."""
  if not videos:
    raise ValueError('no videos to evaluate')
  per_video = [human_rank_correlation(v.user_scores) for v in videos.values()]
  return {k: float(np.mean([r[k] for r in per_video])) for k in ('kendall', 'spearman')}


def _mean_f1(rows: list[dict[str, float]]) -> dict[str, float]:
  return {k: float(np.mean([r[k] for r in rows])) for k in ('precision', 'recall', 'f1')}


def qfvs_reference_rows(
  release: Mapping[str, tuple[np.ndarray, list]], draws: int = 10, seed: int = 0
) -> dict[str, dict[str, Any]]:
  """QFVS's users and a random summary of the oracle's length, against the oracle.

  Concept-IoU precision / recall / F1 (protocol.qfvs_evaluate) of every user summary
  and of `draws` uniformly random shot sets of the oracle's size (numpy seeded with
  (seed, video index)), averaged over queries (and users or draws) per video, then over
  the videos.

  Args:
    release: qfvs.read_release's {video: (shot tags, [(pair, oracle, users)])}.
  Returns:
    {'users': {..., 'per_video': {video: f1}}, 'random': {...}} (no 'random' when
    `draws` is 0), fractions in [0, 1].
  """
  per_video: dict[str, dict[str, dict[str, float]]] = {'users': {}, 'random': {}}
  for v, (video, (tags, queries)) in enumerate(release.items()):
    rng = np.random.default_rng([seed, v])
    users, random = [], []
    for _, oracle, user_shots in queries:
      truth = np.flatnonzero(oracle)
      users += [protocol.qfvs_evaluate(np.flatnonzero(u), truth, tags) for u in user_shots]
      for _ in range(draws):
        shots = np.sort(rng.choice(tags.shape[0], truth.size, replace=False))
        random.append(protocol.qfvs_evaluate(shots, truth, tags))
    per_video['users'][video] = _mean_f1(users)
    if draws:
      per_video['random'][video] = _mean_f1(random)
  return {
    row: dict(_mean_f1(list(videos.values())), per_video={v: r['f1'] for v, r in videos.items()})
    for row, videos in per_video.items()
    if videos
  }


def human_baseline_main(dataset: str, anno_path: str | os.PathLike[str]) -> dict[str, Any]:
  """Human baseline for `eval.py --human_baseline DATASET --anno PATH`.

  Args:
    dataset: 'tvsum' (rank correlation of the annotators' per-frame scores) or 'qfvs'
      (the users' summaries against the oracle, concept-IoU F1).
    anno_path: `ydata-anno.tsv[.gz]`, or QFVS's `origin_data` directory.

  Returns:
    TVSum: {'kendall': ..., 'spearman': ...} (0.177 / 0.204 on the real file).
    QFVS: {'precision', 'recall', 'f1', 'per_video': {video: f1}}, fractions.
  """
  if dataset.lower() == 'qfvs':
    from clipit_jax.datasets import qfvs  # pylint: disable=g-import-not-at-top (tfds)

    return qfvs_reference_rows(qfvs.read_release(os.fspath(anno_path)), draws=0)['users']
  if dataset.lower() != 'tvsum':
    raise ValueError(
      f"the human baseline needs TVSum's per-frame scores or QFVS's summaries; got {dataset!r}"
    )
  result = tvsum_human_baseline(tvsum_annotations.load_tvsum_annotations(anno_path))
  if not all(math.isfinite(v) for v in result.values()):
    raise ValueError(f'{os.fspath(anno_path)}: baseline is not finite')
  return result

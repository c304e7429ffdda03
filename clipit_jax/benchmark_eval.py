"""Scores dataset videos with a model and evaluates them by the field's protocol.

Generic videos ('keyshot' protocol): the predicted scores of the sub-sampled frames
become a keyshot summary (KTS shots + knapsack at 15 %), compared by F1 with every
user summary (max over users for SumMe, mean otherwise); the scores spread to every
frame are ranked against each annotator's frame scores (Kendall tau-b, Spearman rho;
Otani et al. 2019).

Query-focused videos ('qfvs' protocol): the frame scores are averaged per 5-second shot
(the supplementary's best strategy), the top-k shots form the summary with k the
length of the oracle summary, and the concept-IoU matching metric is averaged over
the three users (Sharghi et al. 2017).
"""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from clipit_jax import evaluation
from clipit_jax import input_pipeline
from clipit_jax import models

METRICS = {'keyshot': ('f1', 'kendall', 'spearman'), 'qfvs': ('precision', 'recall', 'f1')}


def score_videos(apply_fn: Callable, params: Any, videos: Sequence[input_pipeline.Video],
                 window: int) -> list[np.ndarray]:
  """Per-video scores `[n_steps]`; `apply_fn` should be jitted (shapes are fixed per window)."""
  return [models.score_video(apply_fn, params, v.features, v.text, v.text_mask, window)
          for v in videos]


def shot_scores(frame_scores: np.ndarray, shot_of_frame: np.ndarray, n_shots: int) -> np.ndarray:
  """Mean score of each shot `[n_shots]` from frame scores and each frame's shot index."""
  total = np.bincount(shot_of_frame, weights=frame_scores, minlength=n_shots)
  count = np.bincount(shot_of_frame, minlength=n_shots)
  return np.where(count > 0, total / np.maximum(count, 1), -np.inf)


def evaluate_keyshot(scores: np.ndarray, ev: dict, proportion: float = 0.15) -> dict[str, float]:
  summary = evaluation.generate_summary(scores, ev['change_points'], ev['n_frames'], ev['picks'],
                                        proportion)
  row = {'f1': evaluation.evaluate_summary(summary, ev['user_summary'], ev['f1_reduction'])}
  frame_scores = evaluation.upsample_scores(scores, ev['picks'], ev['n_frames'])
  user_scores = np.asarray(ev['user_scores'], np.float64)
  n = min(frame_scores.shape[0], user_scores.shape[1])
  row.update(evaluation.rank_correlation(frame_scores[:n], user_scores[:, :n]))
  return row


def evaluate_qfvs(scores: np.ndarray, ev: dict) -> dict[str, float]:
  n_shots = ev['shot_concepts'].shape[0]
  per_shot = shot_scores(scores, ev['shot_of_frame'], n_shots)
  budget = int(np.sum(ev['oracle']))
  predicted = np.sort(np.argsort(-per_shot, kind='stable')[:budget])
  rows = [evaluation.qfvs_evaluate(predicted, np.flatnonzero(user), ev['shot_concepts'])
          for user in ev['user_shots']]
  return {k: float(np.mean([r[k] for r in rows])) for k in METRICS['qfvs']}


def evaluate_videos(apply_fn: Callable, params: Any, videos: Sequence[input_pipeline.Video],
                    window: int) -> dict[str, Any]:
  """Scores and evaluates videos; returns {'metrics': mean over videos, 'rows': per video}."""
  if not videos:
    raise ValueError('no videos to evaluate')
  rows = []
  for video, scores in zip(videos, score_videos(apply_fn, params, videos, window)):
    protocol = video.evaluation.get('protocol', 'keyshot')
    if protocol == 'qfvs':
      row = evaluate_qfvs(scores, video.evaluation)
    else:
      row = evaluate_keyshot(scores, video.evaluation)
    rows.append(dict(dataset=video.ref[0], video=video.ref[1], protocol=protocol, **row))
  protocols = {r['protocol'] for r in rows}
  if len(protocols) != 1:
    raise ValueError(f'cannot average over mixed protocols {sorted(protocols)}')
  keys = METRICS[protocols.pop()]
  return dict(metrics={k: float(np.mean([r[k] for r in rows])) for k in keys}, rows=rows)

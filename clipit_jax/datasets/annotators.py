"""Simulated annotators, and the ground-truth fields the eccv16 files derive from annotations.

Two kinds of annotation exist in the benchmarks:

- scores (TVSum): every annotator gives each 2-second segment a 1-5 importance score;
  the user summaries are then made by the standard procedure (shot means, knapsack at
  15 %), and gtscore is the mean score at the sub-sampled frames;
- selections (SumMe, YouTube, OVP): every annotator selects the shots of their own
  summary (0/1 per frame), of a length of their choosing; gtscore is the fraction of
  annotators that selected a frame.

In both cases gtsummary, the 0/1 keyframe labels the paper's Lc trains on, is the
keyshot summary of gtscore at the sub-sampled frames (Zhang et al. 2016).
"""

import numpy as np

from clipit_jax import protocol


def annotator_scores(
  truth_per_shot: np.ndarray,
  shot_of_frame: np.ndarray,
  rng: np.random.Generator,
  num_users: int,
  segment_frames: int,
  noise: float = 0.15,
) -> np.ndarray:
  """Per-frame 1-5 scores of simulated annotators, `[num_users, n_frames]` float32.

  Each annotator sees the truth (in [0, 1] per shot) with shot-level noise plus noise
  on every segment of `segment_frames` frames, and scores it on TVSum's 1-5 scale.
  """
  n_frames = shot_of_frame.shape[0]
  segment = np.arange(n_frames) // max(1, segment_frames)
  scores = np.empty((num_users, n_frames), np.float32)
  for u in range(num_users):
    shot_noise = rng.normal(0.0, noise, len(truth_per_shot))
    segment_noise = rng.normal(0.0, noise / 2, segment.max() + 1)
    value = truth_per_shot[shot_of_frame] + shot_noise[shot_of_frame] + segment_noise[segment]
    scores[u] = np.clip(np.round(1 + 4 * value), 1, 5)
  return scores


def annotator_selections(
  truth_per_shot: np.ndarray,
  change_points: np.ndarray,
  rng: np.random.Generator,
  num_users: int,
  proportions: tuple[float, float] = (0.05, 0.15),
  noise: float = 0.15,
) -> np.ndarray:
  """0/1 per-frame summaries of simulated annotators, `[num_users, n_frames]` int8.

  Each annotator sees the truth per shot with noise of their own and selects shots by
  knapsack within a summary length drawn uniformly from `proportions` of the video
  (SumMe's annotators made summaries of 5-15 %).
  """
  shot_of_frame = np.repeat(
    np.arange(len(change_points)), change_points[:, 1] - change_points[:, 0] + 1
  )
  out = []
  for _ in range(num_users):
    seen = truth_per_shot + rng.normal(0.0, noise, len(truth_per_shot))
    proportion = float(rng.uniform(*proportions))
    out.append(
      protocol.user_summaries_from_scores(seen[shot_of_frame][None], change_points, proportion)[0]
    )
  return np.stack(out)


def fields_from_scores(
  user_scores: np.ndarray, change_points: np.ndarray, picks: np.ndarray, n_frames: int
) -> dict[str, np.ndarray]:
  """TVSum's procedure: gtscore `[n_steps]` in [0, 1], gtsummary and user summaries.

  gtscore is the annotators' mean 1-5 score at `picks` mapped to [0, 1].
  """
  gtscore = ((user_scores.mean(axis=0)[picks] - 1.0) / 4.0).astype(np.float32)
  return dict(
    gtscore=gtscore,
    gtsummary=keyframe_labels(gtscore, change_points, n_frames, picks),
    user_summary=protocol.user_summaries_from_scores(user_scores, change_points),
  )


def fields_from_selections(
  user_summary: np.ndarray, change_points: np.ndarray, picks: np.ndarray, n_frames: int
) -> dict[str, np.ndarray]:
  """SumMe's procedure: gtscore is the fraction of annotators selecting each sampled frame."""
  gtscore = user_summary.mean(axis=0)[picks].astype(np.float32)
  return dict(
    gtscore=gtscore,
    gtsummary=keyframe_labels(gtscore, change_points, n_frames, picks),
    user_summary=user_summary.astype(np.int8),
  )


def keyframe_labels(
  gtscore: np.ndarray, change_points: np.ndarray, n_frames: int, picks: np.ndarray
) -> np.ndarray:
  """gtsummary `[n_steps]`: 0/1 at `picks` of the keyshot summary of gtscore (15 %)."""
  keyshots = protocol.generate_summary(gtscore, change_points, n_frames, picks)
  return keyshots[picks].astype(np.float32)

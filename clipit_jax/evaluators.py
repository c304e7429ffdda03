"""Applying the evaluation protocol (protocol.py) to videos and to a run.

Every dataset video carries its ground truth (`Video.truth`, an
`input_pipeline.GroundTruth`): one of the classes below, one per protocol. The training
loop, `inference.evaluate_checkpoint` (eval.py) and the ablations all evaluate through
`evaluate_videos`, which calls `truth.evaluate(scores)`. Which splits a run evaluates
after every epoch is listed in its config (`config.evaluators`, read by `make_evaluators`).

`KeyshotTruth` (generic summaries: SumMe, TVSum, YouTube, OVP, synthetic): the predicted
scores of the sub-sampled frames become a keyshot summary (KTS shots + knapsack at 15 %),
compared by F1 with every user summary (max over users for SumMe, mean otherwise); the
scores spread to every frame are ranked against each annotator's frame scores (Kendall
tau-b, Spearman rho; Otani et al. 2019).

`QfvsTruth` (query-focused, QFVS): the frame scores are averaged per 5-second shot (the
supplementary's best strategy), the top-k shots form the summary with k the length of the
oracle summary, and the concept-IoU matching metric is averaged over the three users
(Sharghi et al. 2017).
"""

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import ml_collections
import numpy as np

from clipit_jax import arrays
from clipit_jax import protocol
from clipit_jax import input_pipeline


@dataclasses.dataclass(frozen=True)
class KeyshotTruth:
  """A generic video's annotations, as the keyshot protocol uses them.

  picks `[n_steps]` source frame of each sub-sampled step; change_points `[shots, 2]`
  inclusive source-frame ranges (KTS); user_summary `[users, n_frames]` 0/1;
  user_scores `[users, n_frames]` each annotator's frame scores; gtscore `[n_steps]`.
  """

  protocol: ClassVar[str] = 'keyshot'
  metrics: ClassVar[tuple[str, ...]] = ('f1', 'kendall', 'spearman')

  picks: np.ndarray
  n_frames: int
  change_points: np.ndarray
  user_summary: np.ndarray
  user_scores: np.ndarray
  gtscore: np.ndarray
  f1_reduction: str  # 'max' (SumMe) or 'avg' over users.
  video_name: str = ''
  query: str | None = None  # The synthetic benchmark's query-focused part.

  def evaluate(self, scores: np.ndarray, proportion: float = 0.15) -> dict[str, float]:
    """F1 of the keyshot summary of `scores` `[n_steps]`, and its Kendall and Spearman."""
    summary = protocol.generate_summary(
      scores, self.change_points, self.n_frames, self.picks, proportion
    )
    row = {'f1': protocol.evaluate_summary(summary, self.user_summary, self.f1_reduction)}
    frame_scores = protocol.upsample_scores(scores, self.picks, self.n_frames)
    user_scores = np.asarray(self.user_scores, np.float64)
    n = min(frame_scores.shape[0], user_scores.shape[1])
    row.update(protocol.rank_correlation(frame_scores[:n], user_scores[:, :n]))
    return row


@dataclasses.dataclass(frozen=True)
class QfvsTruth:
  """A QFVS video-query pair: shot_of_frame `[n_steps]`, shot_concepts `[shots, concepts]`,
  the oracle summary `[shots]` 0/1 and the users' summaries `[users, shots]` 0/1."""

  protocol: ClassVar[str] = 'qfvs'
  metrics: ClassVar[tuple[str, ...]] = ('precision', 'recall', 'f1')

  shot_of_frame: np.ndarray
  shot_concepts: np.ndarray
  oracle: np.ndarray
  user_shots: np.ndarray
  query: str

  def evaluate(self, scores: np.ndarray) -> dict[str, float]:
    """Concept-IoU precision, recall and F1 of the top shots of `scores` `[n_steps]`."""
    per_shot = shot_scores(scores, self.shot_of_frame, self.shot_concepts.shape[0])
    budget = int(np.sum(self.oracle))
    predicted = np.sort(np.argsort(-per_shot, kind='stable')[:budget])
    rows = [
      protocol.qfvs_evaluate(predicted, np.flatnonzero(user), self.shot_concepts)
      for user in self.user_shots
    ]
    return {k: float(np.mean([r[k] for r in rows])) for k in self.metrics}


def shot_scores(frame_scores: np.ndarray, shot_of_frame: np.ndarray, n_shots: int) -> np.ndarray:
  """Mean score of each shot `[n_shots]` from frame scores and each frame's shot index."""
  total = np.bincount(shot_of_frame, weights=frame_scores, minlength=n_shots)
  count = np.bincount(shot_of_frame, minlength=n_shots)
  return np.where(count > 0, total / np.maximum(count, 1), -np.inf)


def score_video(
  apply_fn,
  params: Any,
  frames: np.ndarray,
  text: np.ndarray,
  text_mask: np.ndarray,
  window: int,
  batch_size: int = 16,
) -> np.ndarray:
  """Scores every frame of one video of any length.

  Args:
    apply_fn: `CLIPIt(config).apply` (or a jitted version of it).
    params: the model parameters.
    frames: `[T, frame_dim]` features of the video.
    text: `[L, text_dim]` caption or query embeddings, shared by every window.
    text_mask: `[L]` True on real text tokens.
    window: frames per window (`config.window`).
    batch_size: windows per call; the last call is padded so shapes stay fixed.
  Returns:
    scores `[T]` in (0, 1).
  """
  windows, mask = input_pipeline.split_into_windows(frames, window)
  n_windows = windows.shape[0]
  batch_size = max(1, min(batch_size, n_windows))
  scores = []
  for (chunk, chunk_mask), real in arrays.fixed_shape_batches(
    [windows, mask], batch_size, pad='zeros'
  ):
    texts = np.broadcast_to(text, (batch_size,) + text.shape)
    texts_mask = np.broadcast_to(text_mask, (batch_size,) + text_mask.shape)
    out = apply_fn({'params': params}, chunk, chunk_mask, texts, texts_mask)
    scores.append(np.asarray(out['scores'])[:real])
  if not scores:
    return np.zeros((0,), np.float32)
  return input_pipeline.stitch_windows(np.concatenate(scores), frames.shape[0])


def score_videos(
  apply_fn: Callable, params: Any, videos: Sequence[input_pipeline.Video], window: int
) -> list[np.ndarray]:
  """Per-video scores `[n_steps]`; `apply_fn` should be jitted (shapes are fixed per window)."""
  return [score_video(apply_fn, params, v.features, v.text, v.text_mask, window) for v in videos]


def evaluate_scores(
  videos: Sequence[input_pipeline.Video], scores: Sequence[np.ndarray]
) -> dict[str, Any]:
  """Evaluates given per-video scores; returns {'metrics': mean over videos, 'rows': per video}."""
  if not videos:
    raise ValueError('no videos to evaluate')
  protocols = {v.truth.protocol for v in videos}
  if len(protocols) != 1:
    raise ValueError(f'cannot average over mixed protocols {sorted(protocols)}')
  rows = [
    dict(dataset=v.ref[0], video=v.ref[1], protocol=v.truth.protocol, **v.truth.evaluate(s))
    for v, s in zip(videos, scores)
  ]
  keys = videos[0].truth.metrics
  return dict(metrics={k: float(np.mean([r[k] for r in rows])) for k in keys}, rows=rows)


def evaluate_videos(
  apply_fn: Callable, params: Any, videos: Sequence[input_pipeline.Video], window: int
) -> dict[str, Any]:
  """Scores videos with the model and evaluates them (`evaluate_scores`)."""
  return evaluate_scores(videos, score_videos(apply_fn, params, videos, window))


@dataclasses.dataclass(frozen=True)
class SplitEvaluator:
  """Evaluates the model on one split's videos after an epoch; logged as `<name>_<metric>`."""

  name: str
  split: str  # 'validation' (the training videos when none are held out) or 'test'.

  def __call__(
    self, apply_fn: Callable, params: Any, data: Mapping[str, Sequence[Any]], window: int
  ) -> dict[str, float]:
    """The protocol's metrics averaged over the split's videos."""
    videos = data[self.split]
    if self.split == 'validation' and not videos:
      videos = data['train']
    return evaluate_videos(apply_fn, params, videos, window)['metrics']


# The evaluators a config may list. 'val' picks the best checkpoint, so every run has it;
# 'test' is only logged (learning curves, the literature's optimistic best test epoch).
EVALUATORS = {
  'val': SplitEvaluator('val', 'validation'),
  'test': SplitEvaluator('test', 'test'),
}


def make_evaluators(config: ml_collections.ConfigDict) -> dict[str, SplitEvaluator]:
  """The evaluators a run applies after every epoch, by name, 'val' first.

  `config.evaluators` lists them by name (keys of `EVALUATORS`); `config.test_every_epoch`
  adds 'test' (the same as listing it).
  """
  names = list(config.evaluators) + (['test'] if config.test_every_epoch else [])
  unknown = sorted(set(names) - set(EVALUATORS))
  if unknown:
    raise ValueError(
      f'config.evaluators: unknown {", ".join(map(repr, unknown))}; expected some of '
      f'{", ".join(map(repr, EVALUATORS))}'
    )
  if 'val' not in names:
    raise ValueError("config.evaluators must list 'val': it picks the best checkpoint")
  return {name: EVALUATORS[name] for name in EVALUATORS if name in names}

"""Reference scorers that need no training of CLIP-It: what a trained model must beat.

Each returns frame scores `[n_steps]` for one video, to be evaluated by the same
protocol as a model's (evaluators.KeyshotTruth.evaluate):

- `random_scores`: uniform noise (the floor; keyshot F1 is far from 0 here, Otani et al.);
- `clip_similarity`: training-free, the CLIP cosine similarity of each frame to the
  query, or its maximum over the captions;
- `LinearProbe`: least squares from a frame's features to a target, fitted on the
  training videos: what a per-frame linear model can read off the features
  (`validated_probe` chooses its ridge on the validation videos);
- `within_video_rarity`: training-free context, how unlike the rest of its video a frame is;
- the annotators' mean score (the ground truth itself) is `video.importance`.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np
import scipy.linalg

from clipit_jax import protocol
from clipit_jax import evaluators


def random_scores(n_steps: int, rng: np.random.Generator) -> np.ndarray:
  return rng.random(n_steps)


def within_video_rarity(features: np.ndarray) -> np.ndarray:
  """Training-free context: how unlike the rest of its video each frame is, `[n]`.

  Minus the mean cosine similarity of a frame to every frame of the video, after
  subtracting the video's mean feature (the common direction that dominates CNN and CLIP
  features). A frame whose content recurs through the video scores low, a rare one high:
  what a per-frame model cannot see.

  Args:
    features: `[n, D]` frame features of one whole video.
  """
  x = np.asarray(features, np.float64)
  x = x - x.mean(axis=0)
  x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  return -(x @ x.mean(axis=0))


def clip_similarity(features: np.ndarray, text: np.ndarray) -> np.ndarray:
  """Training-free frame scores.

  Args:
    features: [n, 512] L2-normalised CLIP image embeddings.
    text: [L, 512] L2-normalised CLIP text embeddings (a query: L = 1).

  Returns:
    [n] max over L of the cosine similarity, min-max normalised to [0, 1].
  """
  similarity = np.asarray(features, np.float64) @ np.asarray(text, np.float64).T  # [n, L]
  return protocol.min_max(similarity.max(axis=1))


@dataclasses.dataclass
class LinearProbe:
  """`features @ weights + bias`, fitted by least squares (`fit`)."""

  weights: np.ndarray  # [frame_dim]
  bias: float

  @classmethod
  def fit(
    cls, features: list[np.ndarray], targets: list[np.ndarray], ridge: float = 0.0
  ) -> 'LinearProbe':
    """Fits on every frame of the given videos: features `[n_i, D]`, targets `[n_i]`.

    `ridge` scales an L2 penalty by the number of frames (0: ordinary least squares).
    """
    x = np.concatenate(features).astype(np.float64)
    y = np.concatenate(targets).astype(np.float64)
    x_mean, y_mean = x.mean(axis=0), y.mean()
    xc = x - x_mean
    gram = xc.T @ xc + ridge * len(x) * np.eye(x.shape[1])
    # QR with pivoting: robust where the SVD-based solver fails to converge (rank-deficient
    # features, e.g. videos repeated once per query).
    weights = scipy.linalg.lstsq(gram, xc.T @ (y - y_mean), lapack_driver='gelsy')[0]
    return cls(weights=weights, bias=float(y_mean - x_mean @ weights))

  def __call__(self, features: np.ndarray) -> np.ndarray:
    return np.asarray(features, np.float64) @ self.weights + self.bias


def validated_probe(
  train_videos,
  validation_videos,
  target: str,
  ridges: Sequence[float] = (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2),
) -> LinearProbe:
  """A linear probe on `target` ('labels' or 'importance') with its ridge chosen by Kendall's
  tau on the validation videos, then refitted on training and validation videos."""

  def fit(videos, ridge):
    return LinearProbe.fit(
      [v.features for v in videos], [getattr(v, target) for v in videos], ridge
    )

  if validation_videos:
    ridge = max(
      ridges,
      key=lambda r: evaluators.evaluate_scores(
        validation_videos, [fit(train_videos, r)(v.features) for v in validation_videos]
      )['metrics']['kendall'],
    )
  else:
    ridge = ridges[len(ridges) // 2]
  return fit(train_videos + validation_videos, ridge)

"""CLIP-It's losses: classification Lc, diversity Ld, reconstruction Lr.

Lc supervises the scores with one of two targets (`config.target`): 'keyframes', the
0/1 keyframe labels (gtsummary) as in the paper, by class-balanced cross-entropy; or
'importance', the annotators' mean score (gtscore, min-max normalised per video) by
squared error, as PGL-SUM, DSNet and VASNet train.

Every loss is computed per sample (one window of a video) over its real frames only,
giving `[B]`; `combine` weights them and `batch_mean` averages samples, so a padded
frame or a padded sample never contributes.
"""

import jax
import jax.numpy as jnp
import ml_collections
import optax

from clipit_jax import models

Array = jax.Array
_EPS = 1e-8


def classification_loss(logits: Array, labels: Array, mask: Array) -> Array:
  """Lc: class-balanced binary cross-entropy against 0/1 keyframe labels.

  Positives are weighted by (negatives / positives) of their sample, so the ~15 %
  keyframes weigh as much as the rest. Computed from logits for numerical stability.

  Args:
    logits: `[B, T]` pre-sigmoid frame scores.
    labels: `[B, T]` 0/1 keyframe labels.
    mask: `[B, T]` True on real frames.
  Returns:
    `[B]` mean weighted cross-entropy over each sample's real frames.
  """
  mask = mask.astype(jnp.float32)
  labels = labels.astype(jnp.float32) * mask
  positives = jnp.sum(labels, axis=-1, keepdims=True)
  negatives = jnp.sum(mask, axis=-1, keepdims=True) - positives
  pos_weight = jnp.where(positives > 0, negatives / jnp.maximum(positives, 1.0), 1.0)
  weights = jnp.where(labels > 0, pos_weight, 1.0)
  per_frame = weights * optax.sigmoid_binary_cross_entropy(logits, labels)
  return jnp.sum(per_frame * mask, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)


def importance_loss(scores: Array, importance: Array, mask: Array) -> Array:
  """Lc on the importance target: mean squared error of the scores.

  Args:
    scores: `[B, T]` frame scores in (0, 1).
    importance: `[B, T]` target importance in [0, 1].
    mask: `[B, T]` True on real frames.
  Returns:
    `[B]` mean over each sample's real frames.
  """
  mask = mask.astype(jnp.float32)
  squared = optax.squared_error(scores, importance) * mask
  return jnp.sum(squared, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)


def supervision_loss(outputs: dict[str, Array], batch: dict[str, Array], target: str) -> Array:
  """Lc `[B]` against `target`: 'keyframes' (batch['labels']) or 'importance'."""
  if target == 'keyframes':
    return classification_loss(outputs['logits'], batch['labels'], batch['frame_mask'])
  if target == 'importance':
    return importance_loss(outputs['scores'], batch['importance'], batch['frame_mask'])
  raise ValueError(f"unknown target {target!r}; expected 'keyframes' or 'importance'")


def diversity_loss(scores: Array, features: Array, mask: Array) -> Array:
  """Ld: score-weighted mean pairwise cosine similarity between distinct frames.

  Ld = sum_{i != j} s_i s_j cos(f_i, f_j) / sum_{i != j} s_i s_j over real frames: the
  average similarity of the pairs the scores select. Lowering it moves score mass away
  from frames that look alike (a repelling regulariser); it is invariant to scaling
  all scores, so it does not simply push scores to zero.

  The features are centred on the sample's mean real frame first. A video's frames
  share a large common component (CLIP's shared direction, a CNN's background), so
  raw cosines are all close to 1 (0.97 on the synthetic benchmark) and Ld would be
  flat; centred, they measure how the frames' content differs.

  Args:
    scores: `[B, T]` frame scores in (0, 1).
    features: `[B, T, D]` frame features.
    mask: `[B, T]` True on real frames.
  Returns:
    `[B]`; 0 for samples with fewer than two real frames.
  """
  centred = models.center_frames(features, mask)
  unit = centred / jnp.maximum(jnp.linalg.norm(centred, axis=-1, keepdims=True), _EPS)
  similarity = jnp.einsum('btd,bsd->bts', unit, unit)
  s = scores * mask.astype(scores.dtype)
  pair_weight = s[:, :, None] * s[:, None, :]
  pair_weight = pair_weight * (1.0 - jnp.eye(scores.shape[-1], dtype=scores.dtype))
  total = jnp.sum(pair_weight, axis=(-1, -2))
  return jnp.sum(pair_weight * similarity, axis=(-1, -2)) / jnp.maximum(total, _EPS)


def reconstruction_loss(reconstruction: Array, features: Array, mask: Array) -> Array:
  """Lr: mean squared error between reconstructed and input frame features.

  Args:
    reconstruction, features: `[B, T, D]`.
    mask: `[B, T]` True on real frames.
  Returns:
    `[B]` mean over real frames and feature dimensions.
  """
  mask = mask.astype(jnp.float32)
  squared = jnp.sum(jnp.square(reconstruction - features), axis=-1) * mask
  return jnp.sum(squared, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1) * features.shape[-1], 1.0)


def length_loss(scores: Array, mask: Array, rate: float) -> Array:
  """|mean score - rate| over each sample's real frames, `[B]` (SUM-GAN's sparsity loss).

  Without labels, Lr alone is lowest when every frame passes to the decoder, so the
  unsupervised scores drift to 1 together; this term holds their mean at the summary
  rate, so frames compete for it (Mahasseni et al. 2017, with rate 0.3 there).
  """
  mask = mask.astype(jnp.float32)
  mean = jnp.sum(scores * mask, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)
  return jnp.abs(mean - rate)


def per_sample_losses(
  outputs: dict[str, Array], batch: dict[str, Array], config: ml_collections.ConfigDict
) -> dict[str, Array]:
  """The three losses and their weighted total, each `[B]`.

  `config.loss` is 'supervised' (a*Lc + b*Ld + l*Lr with `config.loss_weights`, Lc
  against `config.target`) or 'unsupervised' (Ld + Lr, plus the summary-length term at
  `config.summary_rate` unless it is None; no target is read).
  """
  mask = batch['frame_mask']
  losses = dict(
    diversity=diversity_loss(outputs['scores'], batch['frames'], mask),
    reconstruction=reconstruction_loss(outputs['reconstruction'], batch['frames'], mask),
  )
  if config.loss == 'supervised':
    losses['classification'] = supervision_loss(outputs, batch, config.target)
    w = config.loss_weights
    losses['total'] = (
      w.classification * losses['classification']
      + w.diversity * losses['diversity']
      + w.reconstruction * losses['reconstruction']
    )
  elif config.loss == 'unsupervised':
    losses['total'] = losses['diversity'] + losses['reconstruction']
    rate = config.summary_rate
    if rate is not None:
      losses['length'] = length_loss(outputs['scores'], mask, rate)
      losses['total'] = losses['total'] + losses['length']
  else:
    raise ValueError(f"unknown loss {config.loss!r}; expected 'supervised' or 'unsupervised'")
  return losses


def batch_mean(per_sample: Array, sample_mask: Array, count: Array | None = None) -> Array:
  """Mean of `[B]` per-sample values over real samples (`count` overrides their number)."""
  sample_mask = sample_mask.astype(per_sample.dtype)
  if count is None:
    count = jnp.sum(sample_mask)
  return jnp.sum(per_sample * sample_mask) / jnp.maximum(count, 1.0)

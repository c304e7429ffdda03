"""Tests of Lc, Ld, Lr and their combination against loop-by-loop numpy references."""

import math

import numpy as np
import pytest

from clipit_jax import losses
from testutil import small_config


def _sigmoid(x):
  return 1.0 / (1.0 + math.exp(-x))


def test_classification_loss_by_hand():
  logits = np.array([[2.0, -1.0, 0.5, 3.0], [0.0, 1.0, -2.0, 0.0]], np.float32)
  labels = np.array([[1, 0, 0, 1], [0, 1, 0, 0]], np.float32)
  mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)
  got = np.asarray(losses.classification_loss(logits, labels, mask))
  # Sample 0: real frames 0..2, one positive, two negatives -> positive weight 2.
  s = [_sigmoid(x) for x in logits[0, :3]]
  want0 = -(2 * math.log(s[0]) + math.log(1 - s[1]) + math.log(1 - s[2])) / 3
  # Sample 1: four real frames, one positive, three negatives -> weight 3.
  s = [_sigmoid(x) for x in logits[1]]
  want1 = -(math.log(1 - s[0]) + 3 * math.log(s[1]) + math.log(1 - s[2]) + math.log(1 - s[3])) / 4
  np.testing.assert_allclose(got, [want0, want1], rtol=1e-5)


def test_classification_loss_without_positives_is_plain_bce():
  logits = np.array([[0.3, -0.7]], np.float32)
  got = losses.classification_loss(logits, np.zeros((1, 2)), np.ones((1, 2), bool))
  want = -(math.log(1 - _sigmoid(0.3)) + math.log(1 - _sigmoid(-0.7))) / 2
  np.testing.assert_allclose(got, [want], rtol=1e-5)


def test_diversity_loss_by_hand():
  rng = np.random.default_rng(0)
  features = rng.normal(size=(2, 4, 3)).astype(np.float32)
  scores = rng.uniform(0.1, 0.9, size=(2, 4)).astype(np.float32)
  mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)
  features[0, 3] = 1000.0  # Padding: neither in the mean nor in a pair.
  got = np.asarray(losses.diversity_loss(scores, features, mask))
  for b in range(2):
    num = den = 0.0
    real = np.flatnonzero(mask[b])
    centred = features[b] - features[b, real].mean(axis=0)
    for i in real:
      for j in real:
        if i == j:
          continue
        cos = centred[i] @ centred[j] / (np.linalg.norm(centred[i]) * np.linalg.norm(centred[j]))
        num += scores[b, i] * scores[b, j] * cos
        den += scores[b, i] * scores[b, j]
    np.testing.assert_allclose(got[b], num / den, rtol=1e-5)


def test_diversity_ignores_what_all_frames_share():
  """A common offset (CLIP's shared direction) does not make every pair look alike."""
  rng = np.random.default_rng(2)
  content = rng.normal(size=(1, 6, 8)).astype(np.float32)
  scores = rng.uniform(0.1, 0.9, size=(1, 6)).astype(np.float32)
  mask = np.ones((1, 6), bool)
  np.testing.assert_allclose(
    losses.diversity_loss(scores, content + 50.0, mask),
    losses.diversity_loss(scores, content, mask),
    rtol=1e-4,
  )


def test_diversity_prefers_dissimilar_selections():
  # Frames 0 and 1 are identical, frame 2 is orthogonal to them.
  features = np.array([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]], np.float32)
  mask = np.ones((1, 3), bool)
  similar = losses.diversity_loss(np.array([[0.9, 0.9, 0.1]], np.float32), features, mask)
  diverse = losses.diversity_loss(np.array([[0.9, 0.1, 0.9]], np.float32), features, mask)
  assert float(diverse[0]) < float(similar[0])
  # Scaling all scores leaves it unchanged, so it cannot be lowered by shrinking them.
  np.testing.assert_allclose(
    losses.diversity_loss(np.array([[0.45, 0.45, 0.05]], np.float32), features, mask),
    similar,
    rtol=1e-5,
  )


def test_diversity_of_a_single_frame_is_zero():
  got = losses.diversity_loss(
    np.array([[0.5, 0.5]], np.float32), np.ones((1, 2, 3), np.float32), np.array([[True, False]])
  )
  np.testing.assert_allclose(got, [0.0])


def test_reconstruction_loss_by_hand():
  features = np.arange(12, dtype=np.float32).reshape(1, 4, 3)
  reconstruction = features + np.array([1.0, 2.0, 3.0, 100.0], np.float32)[None, :, None]
  mask = np.array([[1, 1, 1, 0]], bool)
  got = losses.reconstruction_loss(reconstruction, features, mask)
  np.testing.assert_allclose(got, [(1 + 4 + 9) * 3 / 9], rtol=1e-6)


def _outputs_and_batch():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(2, 5)).astype(np.float32)
  outputs = dict(
    logits=logits,
    scores=1 / (1 + np.exp(-logits)),
    reconstruction=rng.normal(size=(2, 5, 3)).astype(np.float32),
  )
  batch = dict(
    frames=rng.normal(size=(2, 5, 3)).astype(np.float32),
    frame_mask=np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], bool),
    labels=np.array([[1, 0, 0, 0, 0], [0, 1, 1, 0, 0]], np.float32),
  )
  return outputs, batch


def test_supervised_total_uses_paper_weights():
  outputs, batch = _outputs_and_batch()
  config = small_config()
  got = losses.per_sample_losses(outputs, batch, config)
  np.testing.assert_allclose(
    got['total'],
    0.5 * np.asarray(got['classification'])
    + 0.3 * np.asarray(got['diversity'])
    + 0.2 * np.asarray(got['reconstruction']),
    rtol=1e-6,
  )
  config.loss_weights.classification = 1.0
  reweighted = losses.per_sample_losses(outputs, batch, config)
  np.testing.assert_allclose(
    np.asarray(reweighted['total']) - np.asarray(got['total']),
    0.5 * np.asarray(got['classification']),
    rtol=1e-5,
  )


def test_unsupervised_total_ignores_labels():
  outputs, batch = _outputs_and_batch()
  config = small_config()
  config.loss = 'unsupervised'
  del batch['labels']
  got = losses.per_sample_losses(outputs, batch, config)
  assert 'classification' not in got
  scores = np.asarray(outputs['scores'], np.float64)
  mask = batch['frame_mask']
  mean_scores = [scores[b][mask[b]].mean() for b in range(2)]
  np.testing.assert_allclose(got['length'], np.abs(np.array(mean_scores) - 0.15), rtol=1e-5)
  np.testing.assert_allclose(
    got['total'],
    np.asarray(got['diversity']) + np.asarray(got['reconstruction']) + np.asarray(got['length']),
    rtol=1e-6,
  )
  config.summary_rate = None  # The paper's Ld + Lr alone.
  got = losses.per_sample_losses(outputs, batch, config)
  assert 'length' not in got
  np.testing.assert_allclose(
    got['total'], np.asarray(got['diversity']) + np.asarray(got['reconstruction'])
  )


def test_importance_target_is_squared_error_on_the_scores():
  outputs, batch = _outputs_and_batch()
  batch['importance'] = np.array(
    [[0.0, 0.5, 1.0, 0.25, 9.0], [1.0, 0.0, 0.5, 0.5, 0.0]], np.float32
  )
  config = small_config()
  config.target = 'importance'
  got = losses.per_sample_losses(outputs, batch, config)
  scores = np.asarray(outputs['scores'], np.float64)
  want = [
    np.mean((scores[0, :4] - batch['importance'][0, :4]) ** 2),  # Frame 4 is padding.
    np.mean((scores[1] - batch['importance'][1]) ** 2),
  ]
  np.testing.assert_allclose(got['classification'], want, rtol=1e-5)
  del batch['labels']  # The keyframe labels are not read.
  np.testing.assert_allclose(
    losses.per_sample_losses(outputs, batch, config)['total'], got['total']
  )
  config.target = 'keyframes'
  with pytest.raises(KeyError):
    losses.per_sample_losses(outputs, batch, config)
  config.target = 'gtscore'
  with pytest.raises(ValueError, match="unknown target 'gtscore'"):
    losses.per_sample_losses(outputs, batch, config)


def test_unknown_loss_is_rejected():
  outputs, batch = _outputs_and_batch()
  config = small_config()
  config.loss = 'contrastive'
  with pytest.raises(ValueError, match="unknown loss 'contrastive'"):
    losses.per_sample_losses(outputs, batch, config)


def test_batch_mean_skips_padding_samples():
  values = np.array([1.0, 3.0, 1000.0], np.float32)
  sample_mask = np.array([True, True, False])
  np.testing.assert_allclose(losses.batch_mean(values, sample_mask), 2.0)
  np.testing.assert_allclose(losses.batch_mean(values, sample_mask, count=4.0), 1.0)

"""Tests of the optimizer and the train step on one device (data_parallel_test.py: several)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from clipit_jax import train_step
from testutil import random_batch, small_config


@pytest.mark.parametrize(
  'name,expected',
  [
    # p = 1000, g = 0.5, decay 1e-3. Adam's first step is -lr * sign(gradient it sees):
    # coupled: the gradient is g + 1e-3 * p = 1.5 -> -lr; decoupled: -lr * (g/|g| + 1e-3 * p).
    ('adam', -1e-4),
    ('adamw', -2e-4),
  ],
)
def test_weight_decay_coupling(name, expected):
  config = small_config()
  config.optimizer = name
  tx = train_step.make_optimizer(config)
  params = {'w': jnp.array([1000.0])}
  updates, _ = tx.update({'w': jnp.array([0.5])}, tx.init(params), params)
  np.testing.assert_allclose(updates['w'], [expected], rtol=1e-4)


def test_unknown_optimizer_is_rejected():
  config = small_config()
  config.optimizer = 'sgd'
  with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
    train_step.make_optimizer(config)


def test_train_step_ignores_padding_samples():
  config = small_config(dropout_rate=0.0, attention_dropout_rate=0.0)
  # Plain SGD, so that parameter differences are gradient differences (Adam's first
  # step would turn round-off in a zero gradient into +-lr).
  state = train_step.create_train_state(config, jax.random.PRNGKey(0)).replace(tx=optax.sgd(1.0))
  state = state.replace(opt_state=state.tx.init(state.params))
  step = jax.jit(functools.partial(train_step.train_step, config=config))
  batch = random_batch(config, 3, [16, 9, 0])
  padded = {k: np.concatenate([v, v[2:]]) for k, v in batch.items()}
  padded['frames'][3] = 1e3  # A padding sample full of junk.
  rng = jax.random.PRNGKey(1)
  a, metrics_a = step(state, batch, rng)
  b, metrics_b = step(state, padded, rng)
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_allclose(x, y, atol=1e-5)
  np.testing.assert_allclose(metrics_a['total'], metrics_b['total'], rtol=1e-6)


def test_training_drives_classification_loss_down():
  """A toy problem: a frame is a keyframe iff its first feature is large (2+2 layers)."""
  config = small_config(
    dropout_rate=0.0, attention_dropout_rate=0.0, num_encoder_layers=2, num_decoder_layers=2
  )
  config.learning_rate = 1e-3
  state = train_step.create_train_state(config, jax.random.PRNGKey(0))
  step = jax.jit(functools.partial(train_step.train_step, config=config))
  rng = np.random.default_rng(0)
  rng_key = jax.random.PRNGKey(0)
  history = []
  for i in range(300):
    batch = random_batch(config, 8, rng.integers(8, 17, size=8), seed=i)
    batch['labels'] = ((batch['frames'][..., 0] > 0.8) & batch['frame_mask']).astype(np.float32)
    state, metrics = step(state, batch, rng_key)
    history.append(float(metrics['classification']))
  first, last = np.mean(history[:10]), np.mean(history[-10:])
  assert last < 0.3 * first, (first, last)
  assert int(state.step) == 300


@pytest.mark.parametrize('micro', [2, 3])
def test_microbatches_give_the_whole_batch_update(micro):
  """Summed microbatch gradients are the whole batch's (5 samples: 2 or 3 do not divide it)."""
  config = small_config(dropout_rate=0.0, attention_dropout_rate=0.0)
  state = train_step.create_train_state(config, jax.random.PRNGKey(0)).replace(tx=optax.sgd(1.0))
  state = state.replace(opt_state=state.tx.init(state.params))
  batch = random_batch(config, 5, [16, 9, 0, 12, 3], seed=2)
  rng = jax.random.PRNGKey(1)
  config.microbatch_size = 0  # The whole batch at once.
  whole, metrics_whole = jax.jit(functools.partial(train_step.train_step, config=config))(
    state, batch, rng
  )
  config.microbatch_size = micro
  parts, metrics_parts = jax.jit(functools.partial(train_step.train_step, config=config))(
    state, batch, rng
  )
  moved = 0.0
  for x, y, p in zip(
    jax.tree.leaves(whole.params), jax.tree.leaves(parts.params), jax.tree.leaves(state.params)
  ):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
    moved = max(moved, float(np.max(np.abs(np.asarray(x) - np.asarray(p)))))
  assert moved > 1e-3  # The step did update the parameters.
  for k in metrics_whole:
    np.testing.assert_allclose(metrics_whole[k], metrics_parts[k], rtol=1e-5)


@pytest.mark.parametrize(
  'setting,platform,expected',
  [
    (None, 'cpu', train_step.CPU_MICROBATCH),
    (None, 'gpu', None),
    (None, 'tpu', None),
    (0, 'cpu', None),
    (3, 'gpu', 3),
    (16, 'cpu', None),
    (40, 'cpu', None),
  ],
)
def test_microbatch_size_setting(setting, platform, expected):
  """None: CPU_MICROBATCH on a CPU, the whole batch elsewhere; 0 or >= the batch: whole."""
  config = small_config()
  config.microbatch_size = setting
  assert train_step.microbatch_size(config, 16, platform) == expected

"""Training: optimizer, train state and the pure, pmap-ready train step."""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state

from clipit_jax import losses
from clipit_jax import models

Array = jax.Array
Batch = dict[str, Array]


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam with weight decay as in the paper.

  'adam' is PyTorch's `Adam(weight_decay=...)`: the decay is added to the gradient
  before the Adam moments (coupled L2). 'adamw' decouples it (Loshchilov & Hutter).
  """
  if config.optimizer == 'adam':
    return optax.chain(optax.add_decayed_weights(config.weight_decay),
                       optax.adam(config.learning_rate))
  if config.optimizer == 'adamw':
    return optax.adamw(config.learning_rate, weight_decay=config.weight_decay)
  raise ValueError(f"unknown optimizer {config.optimizer!r}; expected 'adam' or 'adamw'")


def create_train_state(config: ml_collections.ConfigDict, rng: Array) -> train_state.TrainState:
  """Freshly initialised parameters and optimizer state for `config.model`."""
  model = models.CLIPIt(config.model)
  params = models.init_params(config.model, rng)
  return train_state.TrainState.create(apply_fn=model.apply, params=params,
                                       tx=make_optimizer(config))


def train_step(state: train_state.TrainState, batch: Batch, rng: Array, *,
               config: ml_collections.ConfigDict,
               axis_name: str | None = None) -> tuple[train_state.TrainState, dict[str, Array]]:
  """One optimisation step on a batch of windows; pure.

  Args:
    state: the train state (replicated under pmap).
    batch: 'frames' `[B, T, frame_dim]`, 'frame_mask' `[B, T]`, 'text' `[B, L, text_dim]`,
      'text_mask' `[B, L]` and, for the supervised loss, 'labels' `[B, T]`. A sample with
      no real frame is padding and does not count.
    rng: dropout key; the step number (and the device index under pmap) is folded in,
      so the same key may be passed at every step.
    config: the full config (losses and their weights).
    axis_name: the pmap axis (`config.axis_name`) when run under `jax.pmap`, else None.
  Returns:
    The new state, and metrics averaged over the global batch's real samples.

  Under pmap, every device normalises by the global number of real samples times the
  device count and the gradients are `pmean`-ed, so the update equals the one a
  single device computes on the whole global batch, uneven padding included.
  """
  rng = jax.random.fold_in(rng, state.step)
  sample_mask = jnp.any(batch['frame_mask'], axis=-1)
  count = jnp.sum(sample_mask).astype(jnp.float32)
  num_devices = 1.0
  if axis_name is not None:
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
    count = jax.lax.psum(count, axis_name)
    num_devices = jax.lax.psum(1.0, axis_name)
  local_count = count / num_devices

  def loss_fn(params):
    outputs = state.apply_fn({'params': params}, batch['frames'], batch['frame_mask'],
                             batch['text'], batch['text_mask'], deterministic=False,
                             rngs={'dropout': rng})
    per_sample = losses.per_sample_losses(outputs, batch, config)
    loss = losses.batch_mean(per_sample['total'], sample_mask, local_count)
    return loss, per_sample

  grads, per_sample = jax.grad(loss_fn, has_aux=True)(state.params)
  metric_sums = {k: jnp.sum(v * sample_mask) for k, v in per_sample.items()}
  if axis_name is not None:
    grads = jax.lax.pmean(grads, axis_name)
    metric_sums = jax.lax.psum(metric_sums, axis_name)
  metrics = {k: v / jnp.maximum(count, 1.0) for k, v in metric_sums.items()}
  return state.apply_gradients(grads=grads), metrics


def make_train_step(config: ml_collections.ConfigDict, *, pmapped: bool) -> Any:
  """`train_step` compiled for the config: `jax.pmap` over local devices, or `jax.jit`."""
  if pmapped:
    step = functools.partial(train_step, config=config, axis_name=config.axis_name)
    return jax.pmap(step, axis_name=config.axis_name, donate_argnums=(0,))
  return jax.jit(functools.partial(train_step, config=config), donate_argnums=(0,))

"""The optimizer, the train state and the pure per-device train step.

`train_step(state, batch, rng, config=..., axis_name=...)` is the one step every
parallelism runs (`parallel.py`): on one device with `axis_name=None`, or per device with
named-axis collectives over `config.axis_name`.
"""

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


def learning_rate(config: ml_collections.ConfigDict, total_steps: int) -> float | optax.Schedule:
  """'constant' (the paper) or 'cosine': linear warmup over `config.warmup_steps`, then
  cosine decay to zero at `total_steps`."""
  if config.lr_schedule == 'constant':
    return config.learning_rate
  if config.lr_schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(
      0.0, config.learning_rate, config.warmup_steps, max(total_steps, config.warmup_steps + 1)
    )
  raise ValueError(f"unknown lr_schedule {config.lr_schedule!r}; expected 'constant' or 'cosine'")


def make_optimizer(
  config: ml_collections.ConfigDict, total_steps: int = 1
) -> optax.GradientTransformation:
  """Adam with weight decay as in the paper.

  'adam' is PyTorch's `Adam(weight_decay=...)`: the decay is added to the gradient
  before the Adam moments (coupled L2). 'adamw' decouples it (Loshchilov & Hutter).
  """
  lr = learning_rate(config, total_steps)
  if config.optimizer == 'adam':
    return optax.chain(optax.add_decayed_weights(config.weight_decay), optax.adam(lr))
  if config.optimizer == 'adamw':
    return optax.adamw(lr, weight_decay=config.weight_decay)
  raise ValueError(f"unknown optimizer {config.optimizer!r}; expected 'adam' or 'adamw'")


def create_train_state(
  config: ml_collections.ConfigDict, rng: Array, total_steps: int = 1
) -> train_state.TrainState:
  """Freshly initialised parameters and optimizer state for `config.model`.

  `total_steps` only shapes the learning-rate schedule; the state's structure does
  not depend on it, so any value serves as a restore target.
  """
  model = models.CLIPIt(config.model)
  params = models.init_params(config.model, rng)
  return train_state.TrainState.create(
    apply_fn=model.apply, params=params, tx=make_optimizer(config, total_steps)
  )


def train_step(
  state: train_state.TrainState,
  batch: Batch,
  rng: Array,
  *,
  config: ml_collections.ConfigDict,
  axis_name: str | None = None,
) -> tuple[train_state.TrainState, dict[str, Array]]:
  """One optimisation step on a batch of windows; pure.

  Args:
    state: the train state (the same on every device).
    batch: 'frames' `[B, T, frame_dim]`, 'frame_mask' `[B, T]`, 'text' `[B, L, text_dim]`,
      'text_mask' `[B, L]` and, for the supervised loss, 'labels' `[B, T]`. A sample with
      no real frame is padding and does not count.
    rng: dropout key; the step number (and, per device, the device index) is folded in,
      so the same key may be passed at every step.
    config: the full config (losses and their weights, `microbatch_size`: see
      `microbatch_size`).
    axis_name: the device axis (`config.axis_name`) when run per device under
      `jax.shard_map` or `jax.pmap`, else None.
  Returns:
    The new state, and metrics averaged over the global batch's real samples.

  With `axis_name`, each device divides its loss sum by the global number of real
  samples over the device count, and the gradients are `pmean`-ed, so the update equals the one a
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

  def loss_fn(params, batch, rng):
    outputs = state.apply_fn(
      {'params': params},
      batch['frames'],
      batch['frame_mask'],
      batch['text'],
      batch['text_mask'],
      deterministic=False,
      rngs={'dropout': rng},
    )
    per_sample = losses.per_sample_losses(outputs, batch, config)
    real = jnp.any(batch['frame_mask'], axis=-1)
    loss = losses.batch_mean(per_sample['total'], real, local_count)
    return loss, {k: jnp.sum(v * real) for k, v in per_sample.items()}

  grad_fn = jax.grad(loss_fn, has_aux=True)
  micro = microbatch_size(config, batch['frames'].shape[0])
  if micro is None:
    grads, metric_sums = grad_fn(state.params, batch, rng)
  else:
    grads, metric_sums = _accumulate(grad_fn, state.params, batch, rng, micro)
  if axis_name is not None:
    grads = jax.lax.pmean(grads, axis_name)
    metric_sums = jax.lax.psum(metric_sums, axis_name)
  metrics = {k: v / jnp.maximum(count, 1.0) for k, v in metric_sums.items()}
  return state.apply_gradients(grads=grads), metrics


# Windows per forward/backward pass on a CPU when `config.microbatch_size` is None: what
# the `micro` rows of benchmarks/train_step.py measured fastest per window (see
# benchmarks/README.md); it also bounds the activations held at once.
CPU_MICROBATCH = 4


def microbatch_size(
  config: ml_collections.ConfigDict, batch_size: int, platform: str | None = None
) -> int | None:
  """Windows per forward/backward pass for a per-device batch of `batch_size`, None: all.

  `config.microbatch_size` when set (0: the whole batch); when None, `CPU_MICROBATCH`
  on a CPU and the whole batch on accelerators (`platform`, default JAX's backend).
  """
  micro = config.microbatch_size
  if micro is None:
    micro = CPU_MICROBATCH if (platform or jax.default_backend()) == 'cpu' else 0
  return micro if 0 < micro < batch_size else None


def _accumulate(
  grad_fn, params: Any, batch: Batch, rng: Array, micro: int
) -> tuple[Any, dict[str, Array]]:
  """Sums `grad_fn(params, microbatch, rng)` over microbatches of `micro` samples.

  The batch is padded with empty samples (no real frame, so they add nothing) to a
  multiple of `micro`, and microbatch i draws its dropout from `fold_in(rng, i)`. The
  loss is a sum over samples divided by a fixed count, so the summed gradients are
  those of the whole batch.
  """
  size = batch['frames'].shape[0]
  n = -(-size // micro)
  pad = n * micro - size
  micro_batches = jax.tree.map(
    lambda x: jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)).reshape((n, micro) + x.shape[1:]),
    batch,
  )

  def body(sums, inputs):
    i, micro_batch = inputs
    out = grad_fn(params, micro_batch, jax.random.fold_in(rng, i))
    return jax.tree.map(jnp.add, sums, out), None

  first = jax.tree.map(lambda x: x[0], micro_batches)
  zeros = jax.tree.map(
    lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(grad_fn, params, first, rng)
  )
  sums, _ = jax.lax.scan(body, zeros, (jnp.arange(n), micro_batches))
  return sums

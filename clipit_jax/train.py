"""Training: optimizer, train state, the pure per-device train step, and the loop.

`train_and_evaluate(config, workdir)` trains data-parallel over every device of every
host (`jax.shard_map` on a one-axis mesh, or `jax.pmap`), validates every epoch,
checkpoints the latest and the best epoch, and resumes from the latest checkpoint when
the workdir already holds one.

Faults: one run at a time holds a workdir (`lock_workdir`); an epoch's metrics line is
written before its checkpoint, and Ctrl-C waits until both are written, so after any
kill `metrics.jsonl` resumes in agreement with the checkpoints.
"""

import collections
import contextlib
import functools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from flax.training import train_state
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from clipit_jax import checkpoints
from clipit_jax import config_checks
from clipit_jax import evaluators
from clipit_jax import files
from clipit_jax import input_pipeline
from clipit_jax import losses
from clipit_jax import models
from clipit_jax.datasets import loading

Array = jax.Array
Batch = dict[str, Array]
LOCK_FILE = 'train.lock'


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
    rng: dropout key; the step number (and the device index under pmap) is folded in,
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
  micro = config.get('microbatch_size')
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


PARALLELISMS = ('shard_map', 'pmap')


def parallelism(config: ml_collections.ConfigDict) -> str:
  """`config.parallelism` ('shard_map' when absent, as in configs saved before it existed)."""
  mode = config.get('parallelism', 'shard_map')
  if mode not in PARALLELISMS:
    raise ValueError(f'unknown parallelism {mode!r}; expected one of {PARALLELISMS}')
  return mode


def make_mesh(config: ml_collections.ConfigDict) -> Mesh:
  """Every device of every host on one data axis, `config.axis_name`."""
  return Mesh(np.array(jax.devices()), (config.axis_name,))


def make_train_step(config: ml_collections.ConfigDict, mesh: Mesh | None = None) -> Any:
  """`train_step` compiled for `config.parallelism`, with the state donated.

  'shard_map' (the default): `jax.jit(jax.shard_map(train_step))` over `mesh`, the
  devices of all hosts. The state and the dropout key are replicated
  (`NamedSharding(mesh, P())`, see `place_state`), the batch `[global_batch, ...]` is
  split over the mesh axis (`place_batch`), and each device runs `train_step` on its
  part with `pmean`/`psum` over `config.axis_name`.
  'pmap': the same per-device `train_step` under `jax.pmap` over the local devices, on
  state `[local_devices, ...]` and batches `[local_devices, per_device, ...]`.
  Without a mesh: `jax.jit` of `train_step` on one device, no collectives.
  """
  if mesh is None:
    return jax.jit(functools.partial(train_step, config=config), donate_argnums=(0,))
  step = functools.partial(train_step, config=config, axis_name=config.axis_name)
  if parallelism(config) == 'pmap':
    return jax.pmap(step, axis_name=config.axis_name, donate_argnums=(0,))
  replicated, split = P(), P(config.axis_name)
  # check_vma=False: autodiff must not insert its own psum into the gradients of the
  # replicated parameters; the step averages them itself, as under pmap.
  per_device = jax.shard_map(
    step,
    mesh=mesh,
    in_specs=(replicated, split, replicated),
    out_specs=(replicated, replicated),
    check_vma=False,
  )
  return jax.jit(per_device, donate_argnums=(0,))


def place_state(tree: Any, config: ml_collections.ConfigDict, mesh: Mesh) -> Any:
  """The state (or the dropout key) as the step of `make_train_step(config, mesh)` takes it.

  'shard_map': one global array per leaf, replicated on every device of `mesh`. Every
  host must pass the same values. 'pmap': `[local_devices, ...]` copies, laid out as
  `jax.pmap` lays out its outputs (`flax.jax_utils.replicate` names its mesh axis
  otherwise, so the state a pmapped step returned would not match the one it was
  given, and the second step would compile again).
  """
  if parallelism(config) == 'pmap':
    local = Mesh(np.array(jax.local_devices()), (config.axis_name,))
    sharding = NamedSharding(local, P(config.axis_name))
    n = jax.local_device_count()
    return jax.tree.map(
      lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (n,) + np.shape(x)), sharding), tree
    )
  return jax.device_put(tree, NamedSharding(mesh, P()))


def place_batch(batch: Batch, config: ml_collections.ConfigDict, mesh: Mesh) -> Batch:
  """A host batch `[local_devices, per_device, ...]` (`input_pipeline.epoch_batches`) on device.

  'shard_map': this host's part of one global array `[global_batch, ...]` split over
  the mesh axis (`jax.make_array_from_process_local_data`). 'pmap': split over the
  local devices along the first axis.
  """
  if parallelism(config) == 'pmap':
    local = Mesh(np.array(jax.local_devices()), (config.axis_name,))
    return jax.device_put(batch, NamedSharding(local, P(config.axis_name)))
  sharding = NamedSharding(mesh, P(config.axis_name))
  return {
    k: jax.make_array_from_process_local_data(sharding, v.reshape((-1,) + v.shape[2:]))
    for k, v in batch.items()
  }


def global_state(placed: Any, config: ml_collections.ConfigDict, mesh: Mesh) -> Any:
  """The state replicated over `mesh` whatever the parallelism: what Orbax saves and restores."""
  if parallelism(config) == 'pmap':
    first = lambda x: np.asarray(x.addressable_data(0)).reshape(x.shape[1:])  # noqa: E731
    return jax.device_put(jax.tree.map(first, placed), NamedSharding(mesh, P()))
  return placed


def local_copy(tree: Any) -> Any:
  """This host's first device's copy of replicated arrays: evaluation runs there."""
  return jax.tree.map(lambda x: x.addressable_data(0), tree)


def prefetch(
  batches: Iterator[Batch], place: Callable[[Batch], Batch], ahead: int = 1
) -> Iterator[Batch]:
  """`place(batch)` for each batch, placed `ahead` batches before it is needed.

  The step runs asynchronously, so the next batch is assembled and copied to the
  devices while the current step computes.
  """
  queue = collections.deque()
  for batch in batches:
    queue.append(place(batch))
    if len(queue) > ahead:
      yield queue.popleft()
  while queue:
    yield queue.popleft()


def train_epoch(
  step: Callable,
  state: Any,
  rng: Array,
  batches: Iterator[Batch],
  real_per_batch: list[int],
  *,
  in_flight: int = 2,
) -> tuple[Any, dict[str, float]]:
  """Runs `state, metrics = step(state, batch, rng)` over an epoch's batches.

  Args:
    step, state, rng: from `make_train_step`, `place_state`.
    batches: placed batches, from `prefetch`.
    real_per_batch: the real samples in each global batch, which weigh its metrics.
    in_flight: steps queued ahead of the devices at most; the host waits for no other.
  Returns:
    The state, and the metrics averaged over the epoch's real samples. They stay on
    the devices until the end of the epoch and are fetched once.
  """
  outputs = []
  for batch in batches:
    state, metrics = step(state, batch, rng)
    outputs.append(metrics)
    if len(outputs) > in_flight:
      jax.block_until_ready(outputs[-in_flight - 1])
  weights = np.asarray(real_per_batch[: len(outputs)], np.float64)
  fetched = jax.device_get(outputs)  # Under pmap, one copy per local device: take the first.
  means = {}
  for key in fetched[0] if fetched else ():
    values = np.array([np.ravel(m[key])[0] for m in fetched])
    means[key] = float(np.sum(values * weights) / max(np.sum(weights), 1.0))
  return state, means


class MetricsWriter:
  """One JSON line per epoch in `workdir/metrics.jsonl`, and TensorBoard scalars.

  On resume, lines of epochs after the restored checkpoint are dropped (they are trained
  again), and so is a line a kill cut short, with a warning.
  """

  def __init__(self, workdir: str, resumed_epoch: int):
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self.enabled = jax.process_index() == 0
    if not self.enabled:
      return
    if os.path.exists(self.path):
      files.write_text(self.path, ''.join(self._lines_up_to(resumed_epoch)))
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

    self.tensorboard = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def _lines_up_to(self, epoch: int) -> list[str]:
    kept, torn = [], 0
    with open(self.path) as f:
      for line in f:
        if not line.strip():
          continue
        try:
          record = json.loads(line)
          if record['epoch'] <= epoch:
            kept.append(line if line.endswith('\n') else line + '\n')
        except (ValueError, KeyError, TypeError):
          torn += 1
    if torn:
      print(
        f'warning: {self.path}: dropped {torn} unreadable line(s) (cut short by a kill?)',
        file=sys.stderr,
        flush=True,
      )
    return kept

  def write(self, epoch: int, metrics: dict[str, float]) -> None:
    if not self.enabled:
      return
    with open(self.path, 'a') as f:
      f.write(json.dumps(dict(epoch=epoch, **metrics)) + '\n')
      f.flush()
      os.fsync(f.fileno())
    for name, value in metrics.items():
      self.tensorboard.add_scalar(name, value, epoch)
    self.tensorboard.flush()

  def close(self) -> None:
    if self.enabled:
      self.tensorboard.close()


@contextlib.contextmanager
def interrupts_deferred():
  """Holds a Ctrl-C (SIGINT) back until the block ends, then raises KeyboardInterrupt.

  Around an epoch's metrics line and checkpoint: an interrupted run stops between
  epochs, never half-way through writing them.
  """
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  received = []
  previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)
  if received and callable(previous):
    previous(signal.SIGINT, None)  # Python's default handler raises KeyboardInterrupt.
  elif received and previous != signal.SIG_IGN:
    raise KeyboardInterrupt


@contextlib.contextmanager
def lock_workdir(workdir: str):
  """One training run per workdir (a lock file, released when the run ends or dies)."""
  if jax.process_index() != 0:  # Hosts of one multi-host run share the workdir.
    yield
    return
  with files.exclusive_lock(
    os.path.join(workdir, LOCK_FILE),
    advice=f'another train.py is running in {workdir}: wait for it to end, or use '
    'another --workdir',
  ):
    yield


def check_compatible(workdir: str, config: ml_collections.ConfigDict) -> None:
  """A workdir's saved model must be the configured one, or resuming would fail obscurely."""
  if not os.path.exists(os.path.join(workdir, checkpoints.CONFIG_FILE)):
    return
  saved = checkpoints.load_config(workdir)
  if saved.model.to_dict() != config.model.to_dict():
    changed = sorted(k for k in config.model if saved.model.get(k) != config.model[k])
    raise checkpoints.CheckpointError(
      f'{workdir} holds a run with another model (differs in {", ".join(changed)}); '
      'use a new --workdir'
    )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train_state.TrainState:
  """Trains `config` in `workdir`, resuming from its latest checkpoint; returns the final state.

  Resuming skips checkpoints that no longer read (moving them aside, with a warning);
  another run in the same workdir is refused (ValueError).
  """
  config_checks.check_config(config)
  os.makedirs(workdir, exist_ok=True)
  with lock_workdir(workdir):
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train_state.TrainState:
  check_compatible(workdir, config)
  data = loading.load_data(config)
  window = config.model.window
  windows = input_pipeline.video_windows(data['train'], window)
  validation = data['validation'] or data['train']

  local_devices = jax.local_device_count()
  num_windows = windows['window_id'].shape[0]
  steps_per_epoch = input_pipeline.num_batches(num_windows, config.batch_size, jax.device_count())
  real_per_batch = input_pipeline.real_samples_per_batch(
    num_windows, config.batch_size, jax.device_count()
  )
  init_rng, dropout_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  mesh = make_mesh(config)
  # Replicated over the mesh, so that Orbax saves and restores it in that layout on every host.
  state = jax.device_put(
    create_train_state(config, init_rng, steps_per_epoch * config.num_epochs),
    NamedSharding(mesh, P()),
  )
  manager = checkpoints.make_manager(workdir, config.best_metric)
  start_epoch = 0
  if manager.latest_step() is not None:
    state, start_epoch = checkpoints.restore_newest(manager, workdir, state)
    print(f'Resuming from {workdir} after epoch {start_epoch}.', flush=True)
  checkpoints.save_config(workdir, config)
  writer = MetricsWriter(workdir, start_epoch)

  step = make_train_step(config, mesh)
  eval_apply = jax.jit(models.CLIPIt(config.model).apply)
  placed = place_state(state, config, mesh)
  placed_rng = place_state(dropout_rng, config, mesh)
  last_epoch = (
    config.num_epochs
    if config.stop_after_epoch is None
    else min(config.num_epochs, config.stop_after_epoch)
  )

  for epoch in range(start_epoch + 1, last_epoch + 1):
    start = time.time()
    batches = input_pipeline.epoch_batches(
      windows,
      config.batch_size,
      seed=config.seed,
      epoch=epoch,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
      local_devices=local_devices,
    )
    batches = tqdm.tqdm(
      batches,
      total=steps_per_epoch,
      desc=f'epoch {epoch}/{config.num_epochs}',
      leave=False,
      disable=not config.progress,
    )
    placed, train_metrics = train_epoch(
      step,
      placed,
      placed_rng,
      prefetch(batches, lambda b: place_batch(b, config, mesh)),
      real_per_batch,
    )
    train_seconds = time.time() - start
    state = global_state(placed, config, mesh)
    val = evaluators.evaluate_videos(eval_apply, local_copy(state.params), validation, window)[
      'metrics'
    ]
    epoch_metrics = {f'train_{k}': v for k, v in train_metrics.items()}
    epoch_metrics.update({f'val_{k}': v for k, v in val.items()})
    if config.get('test_every_epoch'):  # Logged only: the best checkpoint is chosen on val.
      test = evaluators.evaluate_videos(eval_apply, local_copy(state.params), data['test'], window)
      epoch_metrics.update({f'test_{k}': v for k, v in test['metrics'].items()})
    epoch_metrics['train_seconds'] = train_seconds
    epoch_metrics['epoch_seconds'] = time.time() - start
    with interrupts_deferred():  # The line first: a kill between the two re-trains the epoch.
      writer.write(epoch, epoch_metrics)
      checkpoints.save(manager, epoch, state, val)
    print(
      f'epoch {epoch:3d}/{config.num_epochs}  loss {epoch_metrics["train_total"]:.4f}  '
      + '  '.join(f'val_{k} {v:.4f}' for k, v in val.items())
      + f'  ({epoch_metrics["epoch_seconds"]:.1f}s)',
      flush=True,
    )
  writer.close()
  return state

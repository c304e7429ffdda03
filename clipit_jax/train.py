"""The training loop: `train_and_evaluate(config, workdir)`.

Trains data-parallel over every device of every host (`parallel.py`: the per-device
`train_step.train_step` under `jax.shard_map`, or `jax.pmap`), validates every epoch,
checkpoints the latest and the best epoch, and resumes from the latest checkpoint when
the workdir already holds a run of the same config (`run_dir.check_fingerprint`).

Faults: one run at a time holds a workdir (`run_dir.lock_workdir`); an epoch's metrics
line is written before its checkpoint, and Ctrl-C waits until both are written, so after
any kill `metrics.jsonl` resumes in agreement with the checkpoints. A diverging run stops
with one line naming the learning rate, keeping its last good checkpoint.
"""

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from flax.training import train_state
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from clipit_jax import checkpoints
from clipit_jax import config_checks
from clipit_jax import evaluators
from clipit_jax import input_pipeline
from clipit_jax import models
from clipit_jax import parallel
from clipit_jax import run_dir
from clipit_jax import train_step
from clipit_jax.datasets import loading

Array = jax.Array
Batch = dict[str, Array]


class DivergedError(ValueError):
  """The training loss or the parameters stopped being finite."""


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
    step, state, rng: from `parallel.make_train_step` and its `place_state`.
    batches: placed batches, from `parallel.prefetch`.
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


@dataclasses.dataclass
class Run:
  """What the epochs of one run share: its data, its step, where it stands."""

  config: ml_collections.ConfigDict
  workdir: str
  data: dict[str, list[input_pipeline.Video]]
  windows: dict[str, np.ndarray]
  real_per_batch: list[int]
  step: parallel.ShardMapStep
  manager: Any  # The Orbax CheckpointManager.
  state: train_state.TrainState  # Replicated over the mesh: what is saved.
  start_epoch: int
  dropout_rng: Array


def start_run(config: ml_collections.ConfigDict, workdir: str) -> Run:
  """Reads the data, builds the state and step, and restores the latest checkpoint."""
  data = loading.load_data(config)
  windows = input_pipeline.video_windows(data['train'], config.model.window)
  num_windows = windows['window_id'].shape[0]
  steps_per_epoch = input_pipeline.num_batches(num_windows, config.batch_size, jax.device_count())
  init_rng, dropout_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  mesh = parallel.make_mesh(config)
  # Replicated over the mesh, so that Orbax saves and restores it in that layout on every host.
  state = jax.device_put(
    train_step.create_train_state(config, init_rng, steps_per_epoch * config.num_epochs),
    NamedSharding(mesh, P()),
  )
  manager = checkpoints.make_manager(workdir, config.best_metric)
  start_epoch = 0
  if manager.latest_step() is not None:
    state, start_epoch = checkpoints.restore_newest(manager, workdir, state)
    print(f'Resuming from {workdir} after epoch {start_epoch}.', flush=True)
  checkpoints.save_config(workdir, config)
  run_dir.record_fingerprint(workdir, config)
  return Run(
    config=config,
    workdir=workdir,
    data=data,
    windows=windows,
    real_per_batch=input_pipeline.real_samples_per_batch(
      num_windows, config.batch_size, jax.device_count()
    ),
    step=parallel.make_train_step(config, mesh),
    manager=manager,
    state=state,
    start_epoch=start_epoch,
    dropout_rng=dropout_rng,
  )


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, *, restart: bool = False
) -> train_state.TrainState:
  """Trains `config` in `workdir`, resuming from its latest checkpoint; returns the final state.

  Resuming skips checkpoints that no longer read (moving them aside, with a warning).
  Refused (ValueError, one line): another run in the same workdir at once, and a workdir
  holding a run of another config, unless `restart` (which moves that run to
  `workdir/replaced/<time>/` and starts over).
  """
  config_checks.check_config(config)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ValueError(f'--workdir {workdir} is a file; give a directory (new or of a run)')
  os.makedirs(workdir, exist_ok=True)
  with run_dir.lock_workdir(workdir):
    if restart:
      moved = run_dir.move_aside(workdir)  # By process 0; the others wait for it.
      multihost_utils.sync_global_devices('clipit_jax.train: restart')
      if moved:
        print(f'Moved the earlier run in {workdir} to {moved}; starting over.', flush=True)
    else:
      run_dir.check_fingerprint(workdir, config)
    return _train(start_run(config, workdir))


def _train(run: Run) -> train_state.TrainState:
  config = run.config
  writer = run_dir.MetricsWriter(run.workdir, run.start_epoch)
  eval_apply = jax.jit(models.CLIPIt(config.model).apply)
  evals = evaluators.make_evaluators(config)
  placed = run.step.place_state(run.state)
  placed_rng = run.step.place_state(run.dropout_rng)
  last_epoch = min(config.num_epochs, config.stop_after_epoch or config.num_epochs)
  for epoch in range(run.start_epoch + 1, last_epoch + 1):
    start = time.time()
    placed, train_metrics = train_epoch(
      run.step, placed, placed_rng, _epoch_batches(run, epoch), run.real_per_batch
    )
    train_seconds = time.time() - start
    state = run.step.global_state(placed)
    _check_finite(run, epoch, train_metrics, state.params)
    params = parallel.local_copy(state.params)
    results = {n: ev(eval_apply, params, run.data, config.model.window) for n, ev in evals.items()}
    val = results['val']  # Picks the best checkpoint; the others are logged only.
    epoch_metrics = {f'train_{k}': v for k, v in train_metrics.items()}
    for name, metrics in results.items():
      epoch_metrics.update({f'{name}_{k}': v for k, v in metrics.items()})
    epoch_metrics['train_seconds'] = train_seconds
    epoch_metrics['epoch_seconds'] = time.time() - start
    with run_dir.interrupts_deferred():  # The line first: a kill between the two re-trains it.
      writer.write(epoch, epoch_metrics)
      checkpoints.save(run.manager, epoch, state, val)
    print(
      f'epoch {epoch:3d}/{config.num_epochs}  loss {epoch_metrics["train_total"]:.4f}  '
      + '  '.join(f'val_{k} {v:.4f}' for k, v in val.items())
      + f'  ({epoch_metrics["epoch_seconds"]:.1f}s)',
      flush=True,
    )
    run.state = state
  writer.close()
  return run.state


def _epoch_batches(run: Run, epoch: int) -> Iterator[Batch]:
  """The epoch's shuffled batches of windows, placed on the devices ahead of their step."""
  config = run.config
  batches = input_pipeline.epoch_batches(
    run.windows,
    config.batch_size,
    seed=config.seed,
    epoch=epoch,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    local_devices=jax.local_device_count(),
  )
  batches = tqdm.tqdm(
    batches,
    total=len(run.real_per_batch),
    desc=f'epoch {epoch}/{config.num_epochs}',
    leave=False,
    disable=not config.progress,
  )
  return parallel.prefetch(batches, run.step.place_batch)


@jax.jit
def _all_finite(tree: Any) -> Array:
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _check_finite(run: Run, epoch: int, metrics: dict[str, float], params: Any) -> None:
  """Raises DivergedError (one line: the learning rate, the checkpoint kept) when the
  epoch's loss or the parameters are not finite; nothing of the epoch is saved."""
  loss = metrics.get('total', math.nan)
  if math.isfinite(loss) and bool(_all_finite(params)):
    return
  config = run.config
  kept = run.manager.latest_step()
  kept = (
    f'the checkpoint of epoch {kept} is kept in {run.workdir}'
    if kept is not None
    else 'no checkpoint was saved'
  )
  raise DivergedError(
    f'training diverged in epoch {epoch} (loss {loss}) at learning_rate={config.learning_rate} '
    f'({config.lr_schedule} schedule); {kept}: lower --config.learning_rate and train in '
    'another --workdir, or with --restart'
  )

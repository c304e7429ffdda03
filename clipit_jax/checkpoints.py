"""A run's working directory: its config and its Orbax checkpoints.

    workdir/config.json           the full config the run was started with
    workdir/checkpoints/<epoch>/  the train state after that many epochs; the latest
                                  and the best by `config.best_metric` are kept
    workdir/metrics.jsonl         one line per epoch (written by train.py)

Orbax writes each checkpoint into a temporary directory and renames it when complete,
so an interrupted save never leaves a checkpoint that looks finished.
"""

import json
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy

from clipit_jax import files

CONFIG_FILE = 'config.json'
CHECKPOINT_DIR = 'checkpoints'


class CheckpointError(ValueError):
  """A workdir has no usable checkpoint or config; the message says what is wrong."""


def save_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  files.write_text(os.path.join(workdir, CONFIG_FILE), config.to_json_best_effort(indent=2))


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run in `workdir` was started with."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise CheckpointError(f'{workdir}: no {CONFIG_FILE}; is this a train.py --workdir?')
  try:
    with open(path) as f:
      return ml_collections.ConfigDict(json.load(f))
  except (OSError, json.JSONDecodeError) as e:
    raise CheckpointError(f'{path}: unreadable ({e})') from None


def make_manager(workdir: str, best_metric: str, *,
                 read_only: bool = False) -> ocp.CheckpointManager:
  """Keeps the latest checkpoint and the best one by the validation metric `best_metric`."""
  policy = preservation_policy.AnyPreservationPolicy([
      preservation_policy.LatestN(1),
      preservation_policy.BestN(get_metric_fn=lambda m: m[best_metric], n=1),
  ])
  options = ocp.CheckpointManagerOptions(
      preservation_policy=policy, best_fn=lambda m: m[best_metric], best_mode='max',
      read_only=read_only, create=not read_only, enable_async_checkpointing=False,
      cleanup_tmp_directories=not read_only)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR)),
                               options=options, item_names=('state',))


def save(manager: ocp.CheckpointManager, epoch: int, state: Any, metrics: dict[str, float]) -> None:
  """Saves the train state after `epoch` epochs, with its validation metrics.

  Every host calls it with the same state, replicated over all devices (or on one
  device in a single process); Orbax writes each array once.
  """
  manager.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
               metrics={k: float(v) for k, v in metrics.items()})
  manager.wait_until_finished()


def restore(manager: ocp.CheckpointManager, target: Any, which: str = 'latest', *,
            params_only: bool = False) -> tuple[Any, int]:
  """Restores `which` ('latest' or 'best') checkpoint into the structure of `target`.

  Each array is restored with the shape, dtype and sharding of its `target` leaf
  (arrays or `jax.ShapeDtypeStruct`s), so a state replicated over a mesh of several
  hosts comes back that way. With `params_only`, `target` is the parameters alone and
  only they are read, not the optimizer state (evaluation and summarizing).
  Returns the restored state (or parameters) and its epoch. A checkpoint of another
  model size raises CheckpointError.
  """
  if which not in ('latest', 'best'):
    raise CheckpointError(f"unknown checkpoint {which!r}; expected 'latest' or 'best'")
  step = manager.latest_step() if which == 'latest' else manager.best_step()
  if step is None:
    raise CheckpointError(f'{manager.directory}: no checkpoint found')
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  if params_only:
    abstract = {'params': abstract}
    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract)
    item = ocp.args.PyTreeRestore(abstract, restore_args=restore_args, partial_restore=True)
  else:
    item = ocp.args.StandardRestore(abstract)
  try:
    restored = manager.restore(step, args=ocp.args.Composite(state=item))
  except (ValueError, KeyError, TypeError) as e:
    raise CheckpointError(f'{manager.directory}/{step}: does not fit the configured model '
                          f'({str(e).splitlines()[0][:200]})') from None
  return restored['state']['params'] if params_only else restored['state'], step

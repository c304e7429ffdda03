"""A run's working directory: its config and its Orbax checkpoints.

    workdir/config.json           the full config the run was started with
    workdir/checkpoints/<epoch>/  the train state after that many epochs; the latest
                                  and the best by `config.best_metric` are kept
    workdir/metrics.jsonl         one line per epoch (written by train.py)

Orbax writes each checkpoint into a temporary directory and renames it when complete,
so an interrupted save never leaves a checkpoint that looks finished. A checkpoint
damaged afterwards (a truncated file) raises `UnreadableCheckpoint`; resuming then
falls back to the newest one that restores (`restore_newest`).
"""

import errno
import json
import logging
import os
import shutil
import sys
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint.checkpoint_managers import preservation_policy

from clipit_jax import cli
from clipit_jax import config_checks
from clipit_jax import config_defaults
from clipit_jax import files

CONFIG_FILE = 'config.json'
CHECKPOINT_DIR = 'checkpoints'
UNREADABLE_DIR = 'unreadable_checkpoints'  # Where resuming moves checkpoints that do not restore.
_ORBAX_FILES = f'{os.sep}orbax{os.sep}'  # In the paths of Orbax's source files.


class CheckpointError(ValueError):
  """A workdir has no usable checkpoint or config; the message says what is wrong."""


class UnreadableCheckpoint(CheckpointError):
  """A checkpoint's files are damaged (truncated, corrupt or missing)."""


def save_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  files.write_text(os.path.join(workdir, CONFIG_FILE), config.to_json_best_effort(indent=2))


def check_run_dir(workdir: str) -> None:
  """Raises CheckpointError, in one line with the fix, when `workdir` (a --ckpt) is missing
  or a file rather than a run's directory."""
  if os.path.isdir(workdir):
    return
  if not os.path.exists(workdir):
    raise CheckpointError(
      f'{workdir}: checkpoint directory not found; pass the --workdir of a train.py run'
    )
  parent = os.path.dirname(os.path.abspath(workdir))
  inside = os.path.exists(os.path.join(parent, CONFIG_FILE))
  raise CheckpointError(
    f'{workdir}: a file, not a directory; pass the --workdir of a train.py run'
    + (f' (the directory it is in: {parent})' if inside else ' (the directory with config.json)')
  )


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run in `workdir` was started with, merged over the defaults and checked.

  Raises CheckpointError, in one line naming config.json, for a file that does not read
  or parse, an unknown field, a value of the wrong type or range, or a missing field that
  fixes the parameters' shapes.
  """
  check_run_dir(workdir)
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise CheckpointError(f'{workdir}: no {CONFIG_FILE}; is this a train.py --workdir?')
  try:
    with open(path) as f:
      saved = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise CheckpointError(f'{path}: unreadable ({e})') from None
  try:
    config = config_defaults.merge_saved(saved)
  except ValueError as e:
    raise CheckpointError(f'{path}: {e}') from None
  try:
    config_checks.check_config(config, source=path)
  except ValueError as e:
    raise CheckpointError(str(e)) from None
  return config


def make_manager(
  workdir: str, best_metric: str, *, read_only: bool = False
) -> ocp.CheckpointManager:
  """Keeps the latest checkpoint and the best one by the validation metric `best_metric`.

  Orbax's notices (a read-only manager's 'Given directory is read only', ...) are hidden:
  a successful `--ckpt` run, or the Python API, prints no absl WARNING lines.
  """
  _quiet_orbax()
  policy = preservation_policy.AnyPreservationPolicy(
    [
      preservation_policy.LatestN(1),
      preservation_policy.BestN(get_metric_fn=lambda m: m[best_metric], n=1),
    ]
  )
  options = ocp.CheckpointManagerOptions(
    preservation_policy=policy,
    best_fn=lambda m: m[best_metric],
    best_mode='max',
    read_only=read_only,
    create=not read_only,
    enable_async_checkpointing=False,
    cleanup_tmp_directories=not read_only,
  )
  return ocp.CheckpointManager(
    os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR)), options=options, item_names=('state',)
  )


def _reason(e: BaseException) -> str:
  """The innermost cause's first line, shortened (Orbax wraps the informative error), or
  'no space left on device' when that is the cause anywhere in the chain."""
  while True:
    if (isinstance(e, OSError) and e.errno == errno.ENOSPC) or os.strerror(errno.ENOSPC) in str(
      e
    ):  # TensorStore: "... No space left on device".
      return 'no space left on device'
    if e.__cause__ is None and e.__context__ is None:
      break
    e = e.__cause__ or e.__context__
  return cli.first_line(e)


class _NoOrbaxRecords(logging.Filter):
  """Drops Orbax's log records, and asyncio's about the tasks Orbax abandons.

  Nothing else in this package uses asyncio, so every 'exception was never retrieved'
  comes from an abandoned Orbax read or write.
  """

  def filter(self, record: logging.LogRecord) -> bool:
    return not (
      _ORBAX_FILES in record.pathname
      or record.name == 'asyncio'
      and 'never retrieved' in record.getMessage()
    )


def _quiet_orbax() -> None:
  """Hides Orbax's own reports of a failing save or restore (once per process).

  When one array fails, Orbax closes its event loop with the other reads or writes
  pending; its threads log tracebacks, TensorStore reports 'Event loop is closed', the
  coroutines complain when collected and asyncio logs 'exception was never retrieved':
  hundreds of lines around our one-line CheckpointError, some after it, at exit. This
  filters the 'absl' and 'asyncio' loggers and wraps `sys.unraisablehook` to drop
  just those; the CheckpointError says what failed.
  """
  if getattr(sys.unraisablehook, 'hides_orbax', False):
    return
  previous = sys.unraisablehook

  def hook(unraisable):
    closed_loop = isinstance(unraisable.exc_value, RuntimeError) and 'Event loop is closed' in str(
      unraisable.exc_value
    )
    code = getattr(unraisable.object, 'cr_code', None)
    if not (closed_loop or code is not None and _ORBAX_FILES in code.co_filename):
      previous(unraisable)

  hook.hides_orbax = True
  sys.unraisablehook = hook
  for name in ('absl', 'asyncio'):
    logging.getLogger(name).addFilter(_NoOrbaxRecords())


def save(manager: ocp.CheckpointManager, epoch: int, state: Any, metrics: dict[str, float]) -> None:
  """Saves the train state after `epoch` epochs, with its validation metrics.

  Every host calls it with the same state, replicated over all devices (or on one
  device in a single process); Orbax writes each array once. Raises CheckpointError (in
  one line) when the checkpoint cannot be written, e.g. on a full disk; the checkpoints
  already saved stay as they were.
  """
  _quiet_orbax()
  try:
    manager.save(
      epoch,
      args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
      metrics={k: float(v) for k, v in metrics.items()},
    )
    manager.wait_until_finished()
  except Exception as e:  # pylint: disable=broad-except (Orbax raises bare Exceptions)
    raise CheckpointError(
      f'{manager.directory}: could not save the checkpoint of epoch {epoch} ({_reason(e)}); '
      'the earlier checkpoints are intact: fix the cause and run the same command to '
      'resume'
    ) from None


def _tree_paths(tree: Any) -> dict[str, tuple[int, ...]]:
  """{'params/frame_projection/kernel': shape} for the arrays of a pytree or Orbax metadata."""

  def name(key):
    for attribute in ('key', 'name', 'idx'):
      if hasattr(key, attribute):
        return str(getattr(key, attribute))
    return str(key)

  return {
    '/'.join(name(k) for k in path): tuple(np.shape(leaf))
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
  }


def _mismatch(step_dir: str, abstract: Any) -> str | None:
  """The first array whose saved shape differs from `abstract`'s, described; else None
  (also when the metadata does not read: the restore then says the files are damaged)."""
  try:
    saved = _tree_paths(ocp.StandardCheckpointHandler().metadata(epath.Path(step_dir)))
  except Exception:  # pylint: disable=broad-except
    return None
  for name, shape in _tree_paths(abstract).items():
    if name not in saved:
      return f'{name} is not in the checkpoint'
    if saved[name] != shape:
      return f'{name} has shape {list(saved[name])} there but {list(shape)} in the config'
  return None


def _restore_step(
  manager: ocp.CheckpointManager, step: int, abstract: Any, params_only: bool = False
) -> Any:
  """The state (or with `params_only` the parameters) saved at `step`.

  The saved shapes are checked first: Orbax would restore other shapes silently into
  a target without shardings. Raises CheckpointError for another model's checkpoint,
  UnreadableCheckpoint for damaged files; both in one line.
  """
  step_dir = os.path.join(os.fspath(manager.directory), str(step))
  if params_only:
    abstract = {'params': abstract}
  mismatch = _mismatch(os.path.join(step_dir, 'state'), abstract)
  if mismatch:
    raise CheckpointError(
      f'{step_dir}: the checkpoint does not fit the configured model ({mismatch}); was '
      f'{CONFIG_FILE} edited after training? Restore it, or train in a new --workdir'
    )
  if params_only:
    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract)
    item = ocp.args.PyTreeRestore(abstract, restore_args=restore_args, partial_restore=True)
  else:
    item = ocp.args.StandardRestore(abstract)
  _quiet_orbax()
  try:
    restored = manager.restore(step, args=ocp.args.Composite(state=item))['state']
  except Exception as e:  # pylint: disable=broad-except (Orbax raises bare Exceptions)
    raise UnreadableCheckpoint(
      f'{step_dir}: cannot be read, its files are damaged ({_reason(e)})'
    ) from None
  return restored['params'] if params_only else restored


def restore(
  manager: ocp.CheckpointManager, target: Any, which: str = 'latest', *, params_only: bool = False
) -> tuple[Any, int]:
  """Restores `which` ('latest' or 'best') checkpoint into the structure of `target`.

  Each array is restored with the shape, dtype and sharding of its `target` leaf
  (arrays or `jax.ShapeDtypeStruct`s), so a state replicated over a mesh of several
  hosts comes back that way. With `params_only`, `target` is the parameters alone and
  only they are read, not the optimizer state (evaluation and summarizing).
  Returns the restored state (or parameters) and its epoch. A checkpoint of another
  model size raises CheckpointError; a damaged one UnreadableCheckpoint, saying whether
  the other checkpoint ('best' for 'latest' and the other way) restores instead.
  """
  if which not in ('latest', 'best'):
    raise CheckpointError(f"unknown checkpoint {which!r}; expected 'latest' or 'best'")
  other = 'best' if which == 'latest' else 'latest'
  step = manager.latest_step() if which == 'latest' else manager.best_step()
  if step is None:
    raise CheckpointError(f'{manager.directory}: no checkpoint found')
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  try:
    return _restore_step(manager, step, abstract, params_only), step
  except UnreadableCheckpoint as e:
    other_step = manager.latest_step() if other == 'latest' else manager.best_step()
    if other_step is None or other_step == step:
      advice = 'no other checkpoint is kept: train again in a new --workdir'
    else:
      try:
        _restore_step(manager, other_step, abstract, params_only)
        advice = f'the {other} one (epoch {other_step}) restores: use --checkpoint {other}'
      except CheckpointError:
        advice = f'the {other} one cannot be read either: train again in a new --workdir'
    raise UnreadableCheckpoint(f'{e}; it is the {which} checkpoint, {advice}') from None


def restore_newest(manager: ocp.CheckpointManager, workdir: str, target: Any) -> tuple[Any, int]:
  """Restores the newest checkpoint that reads, for resuming; returns (state, epoch).

  Newer checkpoints that do not read are moved to `workdir/unreadable_checkpoints/`
  (saying so), so that training can save those epochs again; with several processes,
  the error says what to move instead. Raises CheckpointError when none restores
  (nothing is moved then).
  """
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  if not manager.all_steps():
    raise CheckpointError(f'{manager.directory}: no checkpoint found')
  unreadable = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      state = _restore_step(manager, step, abstract)
    except UnreadableCheckpoint as e:
      unreadable.append((step, str(e)))
      continue
    if unreadable and jax.process_count() > 1:  # One process must not move what others read.
      raise CheckpointError(
        f'{unreadable[0][1]}; move it out of {manager.directory} and run '
        f'again to resume from epoch {step}'
      )
    for bad, message in unreadable:
      moved = _move_aside(manager, workdir, bad)
      print(
        f'warning: {message}; moved it to {moved} and resuming from epoch {step}',
        file=sys.stderr,
        flush=True,
      )
    if unreadable:
      manager.reload()
    return state, step
  raise CheckpointError(
    f'{workdir}: no checkpoint restores ({unreadable[0][1]}); train again in a new --workdir'
  )


def _move_aside(manager: ocp.CheckpointManager, workdir: str, step: int) -> str:
  directory = os.path.join(workdir, UNREADABLE_DIR)
  os.makedirs(directory, exist_ok=True)
  target, n = os.path.join(directory, str(step)), 1
  while os.path.exists(target):
    target, n = os.path.join(directory, f'{step}.{n}'), n + 1
  shutil.move(os.path.join(os.fspath(manager.directory), str(step)), target)
  return target

"""A run directory: what it is (its config fingerprint), who holds it, what it has logged.

    workdir/fingerprint.json   what defines the run's results (`fingerprint`)
    workdir/train.lock         held by the one train.py running there (`lock_workdir`)
    workdir/metrics.jsonl      one line per epoch (`MetricsWriter`); config.json and the
                               checkpoints are `checkpoints.py`'s
    workdir/replaced/<time>/   an earlier run, moved aside by --restart (`move_aside`)

Resuming with another fingerprint is refused (`check_fingerprint`): its epochs would
be mixed with the new config's. reproduce and ablations reuse a finished run only when
`matches(workdir, config)`.
"""

import contextlib
import datetime
import hashlib
import json
import os
import shutil
import signal
import sys
import threading
from typing import Any

import jax
import ml_collections

from clipit_jax import checkpoints
from clipit_jax import files

LOCK_FILE = 'train.lock'
FINGERPRINT_FILE = 'fingerprint.json'
REPLACED_DIR = 'replaced'

# What defines a run's results, besides every model field: the data, the losses, the
# optimisation. Not: where the data lives, progress bars, logging, when to stop, and how
# the batch is split over devices or microbatches (the same updates).
_FIELDS = (
  'data.dataset',
  'data.setting',
  'data.split',
  'data.splits_file',
  'data.features',
  'data.part',
  'data.validation_fraction',
  'loss',
  'target',
  'summary_rate',
  'loss_weights.classification',
  'loss_weights.diversity',
  'loss_weights.reconstruction',
  'optimizer',
  'learning_rate',
  'lr_schedule',
  'warmup_steps',
  'weight_decay',
  'batch_size',
  'seed',
  'best_metric',
)


def fingerprint(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """{'data.dataset': 'synthetic', ..., 'model.width': 128, ...}: what defines the results.

  With a split file, also its sha256 ('data.splits_file_sha256'; None when it does not
  read). `num_epochs` counts under the cosine schedule only, whose decay it sets; under a
  constant rate a run may be resumed to train longer.
  """
  found = {}
  for field in _FIELDS:
    value = config
    for part in field.split('.'):
      value = value[part]
    found[field] = value
  found.update({f'model.{k}': v for k, v in config.model.items()})
  if config.lr_schedule == 'cosine':
    found['num_epochs'] = config.num_epochs
  if config.data.splits_file:
    found['data.splits_file_sha256'] = _sha256(config.data.splits_file)
  return json.loads(json.dumps(found))  # As read back from the file (tuples as lists).


def _sha256(path: str) -> str | None:
  try:
    with open(path, 'rb') as f:
      return hashlib.sha256(f.read()).hexdigest()
  except OSError:
    return None


def recorded_fingerprint(workdir: str) -> dict[str, Any] | None:
  """The fingerprint a run in `workdir` recorded (derived from its config.json for runs
  before fingerprint.json existed); None for a workdir without a run."""
  path = os.path.join(workdir, FINGERPRINT_FILE)
  if os.path.exists(path):
    try:
      with open(path) as f:
        return json.load(f)
    except (OSError, ValueError) as e:
      raise checkpoints.CheckpointError(f'{path}: unreadable ({e})') from None
  if os.path.exists(os.path.join(workdir, checkpoints.CONFIG_FILE)):
    return fingerprint(checkpoints.load_config(workdir))
  return None


def differences(workdir: str, config: ml_collections.ConfigDict) -> list[str]:
  """'key: recorded -> configured' for each fingerprint key that differs; [] for a workdir
  without a run."""
  recorded = recorded_fingerprint(workdir)
  if recorded is None:
    return []
  wanted = fingerprint(config)
  return [
    f'{k}: {recorded.get(k)!r} -> {wanted.get(k)!r}'
    for k in sorted(set(recorded) | set(wanted))
    if recorded.get(k) != wanted.get(k)
  ]


def matches(workdir: str, config: ml_collections.ConfigDict) -> bool:
  """Whether `workdir` holds a run of `config`'s fingerprint (False when it holds none)."""
  return recorded_fingerprint(workdir) is not None and not differences(workdir, config)


def check_fingerprint(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Refuses (CheckpointError, one line) to resume a run of another fingerprint."""
  changed = differences(workdir, config)
  if changed:
    raise checkpoints.CheckpointError(
      f'{workdir} holds a run of another config ({"; ".join(changed)}): train in another '
      '--workdir, or pass --restart to start over there (the old run is moved to '
      f'{os.path.join(workdir, REPLACED_DIR)}/)'
    )


def record_fingerprint(workdir: str, config: ml_collections.ConfigDict) -> None:
  if jax.process_index() == 0:
    files.write_text(
      os.path.join(workdir, FINGERPRINT_FILE), json.dumps(fingerprint(config), indent=2)
    )


def move_aside(workdir: str) -> str | None:
  """Moves the run in `workdir` (all but the lock and earlier replaced runs) to
  `workdir/replaced/<UTC time>/`; returns that directory, None when there was nothing."""
  keep = (LOCK_FILE, REPLACED_DIR)
  entries = [e for e in sorted(os.listdir(workdir)) if e not in keep]
  if not entries or jax.process_index() != 0:
    return None
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%S.%fZ')
  target = os.path.join(workdir, REPLACED_DIR, stamp)
  os.makedirs(target)
  for entry in entries:
    shutil.move(os.path.join(workdir, entry), os.path.join(target, entry))
  return target


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

"""Trains CLIP-It.

  python train.py --config configs/summe_transfer.py --workdir runs/summe_transfer
  python train.py --config configs/synthetic.py --workdir runs/synthetic --config.num_epochs=3
  python train.py --config configs/tvsum_standard.py --workdir runs/tvsum_standard --all_splits

Running again on the same workdir resumes from its latest checkpoint, if the workdir holds
a run of the same config (data, losses, optimisation, model); --restart moves that run
aside and starts over. On several hosts (or processes), run it on each with --distributed
(see the README).
"""

import os

from absl import app
from absl import logging
from absl import flags
from ml_collections import config_flags

from clipit_jax import cli
from clipit_jax import config_checks

_CONFIG = config_flags.DEFINE_config_file(
  'config', None, 'A config file under configs/.', lock_config=True
)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and config.')
_ALL_SPLITS = flags.DEFINE_bool(
  'all_splits',
  False,
  'Train every split into WORKDIR/split_<k>: '
  'the 5 standard ones, or every entry of data.splits_file.',
)
_RESTART = flags.DEFINE_bool(
  'restart',
  False,
  'Start over in a WORKDIR that holds a run: that run is moved to WORKDIR/replaced/<time>/.',
)
_DISTRIBUTED = flags.DEFINE_bool(
  'distributed',
  False,
  'Call jax.distributed.initialize() first (several hosts or processes; see the README).',
)
_COORDINATOR = flags.DEFINE_string(
  'coordinator_address',
  None,
  'With --distributed: host:port of process 0, where no TPU, SLURM or MPI environment says it.',
)
_NUM_PROCESSES = flags.DEFINE_integer(
  'num_processes',
  None,
  'With --distributed: how many processes, where the environment does not say.',
)
_PROCESS_ID = flags.DEFINE_integer(
  'process_id',
  None,
  'With --distributed: this process, 0 to num_processes - 1, where the environment does not say.',
)
_DISTRIBUTED_TIMEOUT = flags.DEFINE_float(
  'distributed_timeout',
  300,
  'With --distributed: seconds to wait for every process to join before giving up.',
)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)  # Orbax logs every save at INFO and notes at WARNING.
  with cli.one_line_errors('train.py', on_interrupt='run the same command to resume'):
    config_checks.check_config(_CONFIG.value)  # Before the heavy imports below.
    from clipit_jax import train  # pylint: disable=g-import-not-at-top
    from clipit_jax.datasets import loading  # pylint: disable=g-import-not-at-top

    cli.enable_compilation_cache()
    if _DISTRIBUTED.value:
      cli.start_distributed(
        'train.py',
        _COORDINATOR.value,
        _NUM_PROCESSES.value,
        _PROCESS_ID.value,
        _DISTRIBUTED_TIMEOUT.value,
      )
    config = _CONFIG.value
    if not _ALL_SPLITS.value:
      train.train_and_evaluate(config, _WORKDIR.value, restart=_RESTART.value)
      return
    for split in range(loading.num_splits(config.data)):
      with config.unlocked():
        config.data.split = split
      print(f'--- split {split} ---', flush=True)
      workdir = os.path.join(_WORKDIR.value, f'split_{split}')
      train.train_and_evaluate(config, workdir, restart=_RESTART.value)


if __name__ == '__main__':
  app.run(main, flags_parser=cli.flags_parser('train.py'))

"""Evaluates a trained run, or computes the human baseline.

  python eval.py --ckpt runs/summe_transfer [--split test] [--checkpoint best|latest]
  python eval.py --ckpt runs/tvsum_standard --all_splits      # mean and std over split_0..4
  python eval.py --human_baseline tvsum --anno ../shared/data/tvsum/ydata-anno.tsv.gz

Prints a table, writes eval.json into the workdir, and ends with one JSON line of the
aggregate metrics.
"""

import json
import os

import numpy as np
from absl import app
from absl import logging
from absl import flags

from clipit_jax import cli
from clipit_jax import files

_CKPT = flags.DEFINE_string('ckpt', None, 'The workdir of a train.py run.')
_SPLIT = flags.DEFINE_enum('split', 'test', ['train', 'validation', 'test'], 'Videos to evaluate.')
_CHECKPOINT = flags.DEFINE_enum('checkpoint', 'best', ['best', 'latest'], 'Which checkpoint.')
_ALL_SPLITS = flags.DEFINE_bool(
  'all_splits',
  False,
  'Aggregate CKPT/split_<k> over every split '
  '(the 5 standard ones, or the entries of the splits file): '
  'mean and std.',
)
_HUMAN = flags.DEFINE_string(
  'human_baseline', None, 'Human agreement of: tvsum, or qfvs (users against the oracle).'
)
flags.DEFINE_alias('human-baseline', 'human_baseline')  # The spelling of earlier versions.
_ANNO = flags.DEFINE_string(
  'anno', None, 'The raw annotation file (QFVS: origin_data directory) for the human baseline.'
)


def _print_table(rows: list[dict], keys: tuple[str, ...]) -> None:
  print(f'{"video":<28}' + ''.join(f'{k:>12}' for k in keys))
  for row in rows:
    print(f'{row["dataset"] + "/" + row["video"]:<28}' + ''.join(f'{row[k]:>12.4f}' for k in keys))


def _evaluate_one(workdir: str) -> dict:
  from clipit_jax import inference  # pylint: disable=g-import-not-at-top (after the flags)

  result = inference.evaluate_checkpoint(workdir, _SPLIT.value, _CHECKPOINT.value)
  _print_table(result['rows'], tuple(result['metrics']))
  print(f'{"mean":<28}' + ''.join(f'{v:>12.4f}' for v in result['metrics'].values()))
  files.write_text(os.path.join(workdir, 'eval.json'), json.dumps(result, indent=2))
  return result['metrics']


def _check_flags() -> None:
  """Refuses flags that do not apply: a run's flags with --human_baseline, --anno without it."""
  if not _HUMAN.value:
    if _ANNO.value:
      raise ValueError('--anno applies to --human_baseline only; remove it')
    return
  if not _ANNO.value:
    raise ValueError('--human_baseline needs --anno (the raw annotation file)')
  for name in ('ckpt', 'split', 'checkpoint', 'all_splits'):
    if flags.FLAGS[name].present:
      raise ValueError(
        f'--{name} does not apply to --human_baseline (it evaluates annotators, not a run); '
        'evaluate the run in a separate eval.py --ckpt command'
      )


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)  # Orbax logs every save at INFO and notes at WARNING.
  with cli.one_line_errors('eval.py', on_interrupt='nothing was written'):
    _check_flags()  # Before anything heavy is imported.
    cli.enable_compilation_cache()
    if _HUMAN.value:
      from clipit_jax import human_baseline  # pylint: disable=g-import-not-at-top

      print(json.dumps(human_baseline.human_baseline_main(_HUMAN.value, _ANNO.value)))
      return
    if not _CKPT.value:
      raise ValueError('give --ckpt WORKDIR (or --human_baseline DATASET --anno FILE)')
    if not _ALL_SPLITS.value:
      print(json.dumps(_evaluate_one(_CKPT.value)))
      return
    from clipit_jax import checkpoints  # pylint: disable=g-import-not-at-top
    from clipit_jax.datasets import loading  # pylint: disable=g-import-not-at-top

    per_split = []
    first = checkpoints.load_config(os.path.join(_CKPT.value, 'split_0'))
    for split in range(loading.num_splits(first.data)):
      print(f'--- split {split} ---')
      per_split.append(_evaluate_one(os.path.join(_CKPT.value, f'split_{split}')))
    summary = {k: float(np.mean([m[k] for m in per_split])) for k in per_split[0]}
    summary.update({f'{k}_std': float(np.std([m[k] for m in per_split])) for k in per_split[0]})
    files.write_text(
      os.path.join(_CKPT.value, 'eval.json'),
      json.dumps(dict(splits=per_split, **summary), indent=2),
    )
    print(json.dumps(summary))


if __name__ == '__main__':
  app.run(main, flags_parser=cli.flags_parser('eval.py'))

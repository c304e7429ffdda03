"""The paper's ablations on one config: Table 2 (losses) and Table 3 (MLP for the attention).

    python -m clipit_jax.ablations --config configs/synthetic.py --workdir runs/ablations/synthetic
    python -m clipit_jax.ablations --config configs/tvsum_standard.py \\
        --workdir runs/ablations/tvsum --seeds 0,1,2 --config.data.data_dir ~/clipit_standins

Every variant is trained with each seed in `WORKDIR/<variant>/seed_<k>` (experiments.run:
finished runs are skipped, interrupted ones resume, so the command can simply be run
again; a workdir holding runs of another config fingerprint is refused before any
training), evaluated on the test videos, and reported as mean ± std of F1, Kendall's tau
and Spearman's rho beside reference scorers (baselines.py) on the same videos. Writes
`WORKDIR/table.md` and `WORKDIR/table.json` (the config file with every override, and
the config's values).
"""

import json
import os
from collections.abc import Sequence
from typing import NamedTuple

import ml_collections
import numpy as np
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from clipit_jax import baselines
from clipit_jax import cli
from clipit_jax import evaluators
from clipit_jax import experiments
from clipit_jax import files
from clipit_jax.datasets import loading


class Variant(NamedTuple):
  table: int  # The paper's table: 2 (losses) or 3 (cross-modal block).
  label: str
  terms: tuple[str, ...]  # Loss terms on; the paper's weights are kept for them.
  cross_modal: str


ALL_TERMS = ('classification', 'diversity', 'reconstruction')
VARIANTS = {  # Key: the variant's workdir under --workdir.
  'lc': Variant(2, 'Lc', ('classification',), 'attention'),
  'lc_lr': Variant(2, 'Lc + Lr', ('classification', 'reconstruction'), 'attention'),
  'lc_ld': Variant(2, 'Lc + Ld', ('classification', 'diversity'), 'attention'),
  'ld_lr': Variant(
    2,
    'Ld + Lr (unsupervised, with the summary-length term)',
    ('diversity', 'reconstruction'),
    'attention',
  ),
  'full': Variant(2, 'Lc + Ld + Lr (CLIP-It)', ALL_TERMS, 'attention'),
  'mlp': Variant(3, 'CLIP-It with an MLP for the cross-modal attention', ALL_TERMS, 'mlp'),
}
METRICS = ('f1', 'kendall', 'spearman')


def variant_config(
  base: ml_collections.ConfigDict, variant: str, seed: int
) -> ml_collections.ConfigDict:
  """`base` with the variant's loss terms and cross-modal block, and `seed`."""
  terms = VARIANTS[variant].terms
  config = ml_collections.ConfigDict(base.to_dict())
  config.seed = seed
  config.model.cross_modal = VARIANTS[variant].cross_modal
  if 'classification' not in terms:
    config.loss = 'unsupervised'
  else:
    config.loss = 'supervised'
    for term in config.loss_weights:
      if term not in terms:
        config.loss_weights[term] = 0.0
  return config


def _evaluate(videos, scores) -> dict[str, float]:
  return evaluators.evaluate_scores(videos, scores)['metrics']


def reference_rows(
  config: ml_collections.ConfigDict, seeds: Sequence[int]
) -> dict[str, list[dict[str, float]]]:
  """Reference scorers on the config's test videos: {name: [metrics per seed or one]}."""
  data = loading.load_data(config)
  test = data['test']
  rows = {
    'random scores': [
      _evaluate(
        test, [baselines.random_scores(len(v.features), np.random.default_rng(s)) for v in test]
      )
      for s in seeds
    ]
  }
  if all(v.text_mask.any() for v in test):
    rows['training-free CLIP similarity to the text'] = [
      _evaluate(test, [baselines.clip_similarity(v.features, v.text[v.text_mask]) for v in test])
    ]
  for target, name in (('labels', 'keyframes (gtsummary)'), ('importance', 'importance (gtscore)')):
    probe = baselines.validated_probe(data['train'], data['validation'], target)
    rows[f'linear probe on {name}'] = [_evaluate(test, [probe(v.features) for v in test])]
  rows["the annotators' mean score (ground truth)"] = [
    _evaluate(test, [v.importance for v in test])
  ]
  return rows


def write_tables(
  workdir: str,
  config_name: str,
  results: dict[str, list[dict]],
  references: dict[str, list[dict[str, float]]],
) -> str:
  """table.md and table.json; returns the markdown."""
  lines = [
    f'Config: `{config_name}`; test videos of split {results["split"]}; '
    f'mean ± std over seeds {results["seeds"]}.',
    '',
    '| table | variant | F1 | Kendall tau | Spearman rho | epoch chosen | minutes/run |',
    '|---|---|---|---|---|---|---|',
  ]
  summary = {
    'config': config_name,
    'config_values': results.get('config_values'),
    'split': results['split'],
    'seeds': results['seeds'],
    'variants': {},
    'references': {},
  }
  for variant, runs in results['runs'].items():
    stats = experiments.mean_std([r['metrics'] for r in runs])
    summary['variants'][variant] = dict(
      stats, epochs=[r['epoch'] for r in runs], seconds=[r['seconds'] for r in runs]
    )
    lines.append(
      f'| {VARIANTS[variant].table} | {VARIANTS[variant].label} | '
      + ' | '.join(experiments.format_mean_std(stats[k], 1 if k == 'f1' else 3) for k in METRICS)
      + f' | {", ".join(str(r["epoch"]) for r in runs)}'
      + f' | {np.mean([r["seconds"] for r in runs]) / 60:.1f} |'
    )
  for name, rows in references.items():
    stats = experiments.mean_std(rows)
    summary['references'][name] = stats
    lines.append(
      f'| ref | {name} | '
      + ' | '.join(experiments.format_mean_std(stats[k], 1 if k == 'f1' else 3) for k in METRICS)
      + ' | | |'
    )
  markdown = '\n'.join(lines) + '\n'
  files.write_text(os.path.join(workdir, 'table.md'), markdown)
  files.write_text(os.path.join(workdir, 'table.json'), json.dumps(summary, indent=2))
  return markdown


def run_ablations(
  base: ml_collections.ConfigDict,
  workdir: str,
  variants: Sequence[str],
  seeds: Sequence[int],
  config_name: str,
) -> str:
  """Trains (or reuses) every variant with every seed, then writes and returns the tables."""
  unknown = [v for v in variants if v not in VARIANTS]
  if unknown:
    raise ValueError(f'unknown variants {unknown}; expected some of {list(VARIANTS)}')
  if not seeds:
    raise ValueError('no seeds; give one or more, e.g. --seeds=0,1,2')
  planned = {
    (variant, seed): (
      variant_config(base, variant, seed),
      os.path.join(workdir, variant, f'seed_{seed}'),
    )
    for variant in variants
    for seed in seeds
  }
  experiments.check_reusable(
    planned.values(),
    'a --workdir holds the runs of one config: pass another --workdir for this one',
  )
  runs = {}
  for variant in variants:
    runs[variant] = []
    for seed in seeds:
      result = experiments.run(*planned[variant, seed])
      print(
        f'{VARIANTS[variant].label}, seed {seed}: '
        + '  '.join(f'{k} {result["metrics"][k]:.4f}' for k in METRICS)
        + f'  (best epoch {result["epoch"]}, {result["seconds"] / 60:.1f} min)',
        flush=True,
      )
      runs[variant].append(result)
  results = dict(
    split=base.data.split,
    seeds=list(seeds),
    runs=runs,
    config_values=json.loads(base.to_json_best_effort()),
  )
  return write_tables(workdir, config_name, results, reference_rows(base, seeds))


def main() -> None:
  """The command line; its flags are defined here, so importing the module defines none."""
  config = config_flags.DEFINE_config_file(
    'config', None, 'A config file under configs/.', lock_config=False
  )
  workdir = flags.DEFINE_string('workdir', None, 'One subdirectory per variant and seed.')
  seeds = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds of every variant.')
  variants = flags.DEFINE_list('variants', list(VARIANTS), 'Which variants (default: all).')
  flags.mark_flags_as_required(['config', 'workdir'])

  def run(argv):
    del argv
    logging.set_verbosity(logging.ERROR)
    with cli.one_line_errors('ablations'):
      cli.enable_compilation_cache()
      print(
        run_ablations(
          config.value,
          workdir.value,
          variants.value,
          cli.int_list('seeds', seeds.value),
          cli.config_name(flags.FLAGS['config']),
        )
      )

  app.run(run, flags_parser=cli.flags_parser('ablations'))


if __name__ == '__main__':
  main()

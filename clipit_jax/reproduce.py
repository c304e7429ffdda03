"""The paper's Table 2 (F1 on SumMe and TVSum x Standard, Augment, Transfer) and Table 1
(TVSum Kendall tau / Spearman rho) from one command.

    python -m clipit_jax.reproduce --workdir runs/paper
    python -m clipit_jax.reproduce --workdir runs/paper_dsnet --splits_file=standard=splits/{dataset}.yml \\
        --splits_file=augment=splits/{dataset}_aug.yml --splits_file=transfer=splits/{dataset}_trans.yml
    python -m clipit_jax.reproduce --workdir runs/paper_unsup --datasets tvsum --settings standard \\
        --config configs/tvsum_standard_unsupervised.py --config.num_epochs=10

Every (dataset, setting, split) asked for trains in `WORKDIR/<dataset>_<setting>/split_<k>`
(experiments.run: a finished run is skipped and an interrupted one resumes, so the
command can simply be run again; a workdir holding runs of another config fingerprint is
refused before any training). `--config` gives the model, losses and optimisation;
each run sets data.dataset, data.setting, data.split and data.splits_file, and evaluates
the test videos after every epoch (`test_every_epoch`) for the optimistic column. The
splits are the entries of a split file of the field (`--splits_file [SETTING=]PATH`,
`{dataset}` in PATH is replaced), or our seeded ones (5, 1 for transfer) for settings
without one. Writes `WORKDIR/table.md` and `WORKDIR/table.json` after every run, with the
config file and every `--config.` override.
"""

import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from clipit_jax import cli
from clipit_jax import experiments
from clipit_jax import files
from clipit_jax.datasets import registry
from clipit_jax.datasets import settings
from clipit_jax.datasets import split_files

METRICS = ('f1', 'kendall', 'spearman')
OPTIMISTIC = 'best test epoch (optimistic, as in the literature)'
# The supplementary's Table 2 (loss terms) and Table 3 (MLP): F1 of Standard, Augment, Transfer.
PAPER_F1 = {
  'Lc': {'summe': (49.1, 52.6, 46.2), 'tvsum': (60.2, 61.7, 57.3)},
  'Lc + Lr': {'summe': (53.0, 55.4, 50.3), 'tvsum': (64.5, 66.5, 63.4)},
  'Lc + Ld': {'summe': (53.7, 55.8, 50.8), 'tvsum': (65.4, 67.6, 64.3)},
  'Lunsup = Ld + Lr': {'summe': (52.5, 54.7, 50.0), 'tvsum': (63.0, 65.7, 62.8)},
  'Lsup = Lc + Ld + Lr': {'summe': (54.2, 56.4, 51.9), 'tvsum': (66.3, 69.0, 65.5)},
  'CLIP-It (MLP)': {'summe': (50.6, 51.08, 48.1), 'tvsum': (63.0, 65.8, 61.4)},
}
# Table 1: CLIP-It on TVSum (the setting is not stated; shown beside Standard).
PAPER_TVSUM_RANK = {'kendall': 0.108, 'spearman': 0.147}


@dataclasses.dataclass
class Row:
  """One cell of Table 2: a dataset and setting, on the entries `splits` of a file or ours."""

  dataset: str
  setting: str
  splits: list[int]
  splits_file: split_files.SplitsFile | None = None

  @property
  def name(self) -> str:
    return f'{self.dataset}_{self.setting}'

  def describe_splits(self) -> str:
    entries = ','.join(map(str, self.splits))
    if self.splits_file is None:
      return (
        'ours: all of the target'
        if self.setting == 'transfer'
        else f'ours: seeded 80/20, splits {entries}'
      )
    return f'`{self.splits_file.name}` entries {entries} (sha256 {self.splits_file.sha256[:12]})'


def paper_row(config: ml_collections.ConfigDict) -> str | None:
  """The paper's row that `config` reproduces (a key of PAPER_F1), or None."""
  if config.loss == 'unsupervised':
    terms = ('Ld', 'Lr')
  else:
    weights = config.loss_weights
    terms = tuple(
      t
      for t, w in (
        ('Lc', weights.classification),
        ('Ld', weights.diversity),
        ('Lr', weights.reconstruction),
      )
      if w > 0
    )
  if config.model.cross_modal == 'mlp':
    return 'CLIP-It (MLP)' if terms == ('Lc', 'Ld', 'Lr') else None
  return {
    ('Lc',): 'Lc',
    ('Lc', 'Lr'): 'Lc + Lr',
    ('Lc', 'Ld'): 'Lc + Ld',
    ('Ld', 'Lr'): 'Lunsup = Ld + Lr',
    ('Lc', 'Ld', 'Lr'): 'Lsup = Lc + Ld + Lr',
  }.get(terms)


def parse_splits_files(values: Sequence[str], wanted: Sequence[str]) -> dict[str, str]:
  """{setting: path template} from `[SETTING=]PATH` values; no SETTING= means every setting.

  Raises ValueError for a SETTING= that is no setting or not among `wanted`.
  """
  templates = {}
  for value in values:
    setting, sep, path = value.partition('=')
    if sep and setting not in settings.SETTINGS and '/' not in setting:
      raise ValueError(
        f'--splits_file={value}: {setting!r} is not a setting; write '
        f'--splits_file=SETTING=PATH with SETTING one of {", ".join(settings.SETTINGS)}, '
        'or --splits_file=PATH for every setting'
      )
    if sep and setting in settings.SETTINGS and setting not in wanted:
      raise ValueError(
        f'--splits_file={value}: {setting} is not among --settings={",".join(wanted)}; '
        f'add it there or drop this file'
      )
    if not sep or setting not in settings.SETTINGS:
      setting, path = None, value
    for s in [setting] if setting else wanted:
      templates[s] = path
  return templates


def plan(
  datasets: Sequence[str],
  wanted: Sequence[str],
  templates: dict[str, str],
  only: Sequence[int] | None = None,
) -> list[Row]:
  """The rows to run: each requested (dataset, setting) with its split file and splits."""
  for name, values, known in (
    ('datasets', datasets, settings.TARGETS),
    ('settings', wanted, settings.SETTINGS),
  ):
    unknown = [v for v in values if v not in known]
    if unknown or not values:
      raise ValueError(f'unknown {name} {unknown}; expected some of {list(known)}')
  for template in templates.values():
    if len(datasets) > 1 and '{dataset}' not in template:
      raise ValueError(
        f'--splits_file {template} serves several datasets; write {{dataset}} '
        'where the file names differ'
      )
  rows = []
  for dataset in datasets:
    for setting in wanted:
      template = templates.get(setting)
      splits = split_files.read(template.replace('{dataset}', dataset)) if template else None
      count = (
        len(splits.entries)
        if splits
        else registry.get(dataset).num_splits(ml_collections.ConfigDict(dict(setting=setting)))
      )
      chosen = list(range(count)) if only is None else [k for k in only if 0 <= k < count]
      if not chosen:
        raise ValueError(
          f'{dataset} {setting} has splits 0-{count - 1}; --splits {only} names none of them'
        )
      rows.append(Row(dataset, setting, chosen, splits))
  return rows


def run_config(base: ml_collections.ConfigDict, row: Row, split: int) -> ml_collections.ConfigDict:
  """`base` on one split of `row`, evaluating the test videos every epoch (logged only)."""
  config = ml_collections.ConfigDict(base.to_dict())
  config.data.dataset = row.dataset
  config.data.setting = row.setting
  config.data.split = split
  config.data.splits_file = row.splits_file.path if row.splits_file else None
  config.test_every_epoch = True
  return config


def _mean_std(results: Sequence[dict], key: str) -> dict[str, list[float]] | None:
  metrics = [r[key] if key == 'metrics' else (r[key] or {}).get('metrics') for r in results]
  if not metrics or any(m is None for m in metrics):
    return None
  return {k: list(v) for k, v in experiments.mean_std(metrics).items() if k in METRICS}


def summarize(
  base: ml_collections.ConfigDict,
  config_name: str,
  rows: Sequence[Row],
  results: dict[str, list[dict]],
) -> dict[str, Any]:
  """table.json's content: per row, mean and std over its finished splits."""
  paper = paper_row(base)
  out = dict(
    config=config_name,
    paper_row=paper,
    config_values=json.loads(base.to_json_best_effort()),
    model_selection=dict(
      ours='the checkpoint with the best validation '
      f'{base.best_metric} (videos held out of the training videos)',
      optimistic=f'{OPTIMISTIC}: the epoch with the best test F1 (test videos '
      'evaluated after every epoch); never used to choose a checkpoint',
    ),
    rows=[],
  )
  planned = {(row.dataset, row.setting): row for row in rows}
  for dataset in settings.TARGETS:  # Every cell of Table 2, requested or not.
    for index, setting in enumerate(settings.SETTINGS):
      paper_values = {}
      if paper is not None:
        paper_values['f1'] = PAPER_F1[paper][dataset][index]
      if paper == 'Lsup = Lc + Ld + Lr' and dataset == 'tvsum' and setting == 'standard':
        paper_values.update(PAPER_TVSUM_RANK)
      cell = dict(
        dataset=dataset,
        setting=setting,
        paper=paper_values,
        splits=[],
        splits_description='not requested',
        splits_file=None,
        runs=0,
        ours=None,
        optimistic=None,
        epochs=[],
        optimistic_epochs=[],
        seconds=[],
      )
      row = planned.get((dataset, setting))
      if row is not None:
        runs = results.get(row.name, [])
        cell.update(
          splits=row.splits,
          splits_description=row.describe_splits(),
          splits_file=row.splits_file
          and dict(
            name=row.splits_file.name, path=row.splits_file.path, sha256=row.splits_file.sha256
          ),
          runs=len(runs),
          ours=_mean_std(runs, 'metrics'),
          optimistic=_mean_std(runs, 'best_test_epoch'),
          epochs=[r['epoch'] for r in runs],
          optimistic_epochs=[(r.get('best_test_epoch') or {}).get('epoch') for r in runs],
          seconds=[r['seconds'] for r in runs],
        )
      out['rows'].append(cell)
  return out


def _cell(stats: dict | None, metric: str, digits: int) -> str:
  return experiments.format_mean_std(stats[metric], digits) if stats else '—'


def _paper(value: float | None, digits: int) -> str:
  return '—' if value is None else f'{value:.{digits}f}'


def _runs(row: dict[str, Any]) -> str:
  return f'{row["runs"]}/{len(row["splits"])}' if row['splits'] else '—'


def markdown(summary: dict[str, Any]) -> str:
  """table.md: Table 2 (F1) and Table 1 (TVSum tau and rho) with the paper beside ours."""
  paper = summary['paper_row']
  lines = [
    f'Config: `{summary["config"]}`; each run sets data.dataset, data.setting, data.split and '
    'data.splits_file. Paper column: '
    + (f'its row "{paper}".' if paper else 'none (no row of the paper has these loss terms).'),
    '',
    f'Model selection. **Ours** (the headline): {summary["model_selection"]["ours"]}. '
    f'**{OPTIMISTIC}**: the epoch with the best test F1; it never chooses a checkpoint. '
    'Mean ± std over splits; runs: finished/requested.',
    '',
    "### F1 (%), the paper's Table 2",
    '',
    f'| dataset | setting | splits | runs | F1 ours | F1 paper | F1, {OPTIMISTIC} |',
    '|---|---|---|---|---|---|---|',
  ]
  for row in summary['rows']:
    lines.append(
      f'| {registry.get(row["dataset"]).title} | {row["setting"].capitalize()} | '
      f'{row["splits_description"]} | {_runs(row)} | {_cell(row["ours"], "f1", 1)} | '
      f'{_paper(row["paper"].get("f1"), 1)} | {_cell(row["optimistic"], "f1", 1)} |'
    )
  lines += [
    '',
    "### TVSum Kendall tau and Spearman rho, the paper's Table 1",
    '',
    '| setting | runs | tau ours | tau paper | rho ours | rho paper | '
    f'tau, {OPTIMISTIC} | rho, {OPTIMISTIC} |',
    '|---|---|---|---|---|---|---|---|',
  ]
  for row in summary['rows']:
    if row['dataset'] != 'tvsum':
      continue
    lines.append(
      f'| {row["setting"].capitalize()} | {_runs(row)} | '
      + ' | '.join(
        [
          _cell(row['ours'], 'kendall', 3),
          _paper(row['paper'].get('kendall'), 3),
          _cell(row['ours'], 'spearman', 3),
          _paper(row['paper'].get('spearman'), 3),
          _cell(row['optimistic'], 'kendall', 3),
          _cell(row['optimistic'], 'spearman', 3),
        ]
      )
      + ' |'
    )
  return '\n'.join(lines) + '\n'


def write_tables(workdir: str, summary: dict[str, Any]) -> str:
  """Writes table.json and table.md; returns the markdown."""
  text = markdown(summary)
  files.write_text(os.path.join(workdir, 'table.json'), json.dumps(summary, indent=2))
  files.write_text(os.path.join(workdir, 'table.md'), text)
  return text


def _progress(row: Row, split: int, result: dict, seconds: float | None) -> str:
  where = (
    f'{row.splits_file.name} entry {split}'
    if row.splits_file
    else 'our transfer split'
    if row.setting == 'transfer'
    else f'our split {split}'
  )
  metrics = result['metrics']
  line = (
    f'{row.dataset} {row.setting} split {split} ({where}): F1 {metrics["f1"]:.2f}  '
    f'tau {metrics["kendall"]:.3f}  rho {metrics["spearman"]:.3f}  '
    f'(best validation epoch {result["epoch"]}'
  )
  optimistic = result.get('best_test_epoch')
  if optimistic:
    line += f'; best test epoch {optimistic["epoch"]}: F1 {optimistic["metrics"]["f1"]:.2f}'
  return line + (')  finished earlier' if seconds is None else f')  {seconds / 60:.1f} min')


def reproduce(
  base: ml_collections.ConfigDict,
  workdir: str,
  rows: Sequence[Row],
  config_name: str,
  log: Callable[[str], None] = print,
) -> dict[str, Any]:
  """Runs every split of every row (skipping finished ones) and writes the tables after each.

  A split's directory holding a run of another config fingerprint is refused before any
  training (its results would be relabelled).
  """
  runs = [
    (row, split, run_config(base, row, split), os.path.join(workdir, row.name, f'split_{split}'))
    for row in rows
    for split in row.splits
  ]
  experiments.check_reusable(
    [(config, path) for _, _, config, path in runs],
    'a --workdir holds the runs of one config: pass another --workdir for this one',
  )
  results: dict[str, list[dict]] = {}
  for done, (row, split, config, path) in enumerate(runs, 1):
    finished = experiments.finished_result(config, path) is not None
    if not finished:
      log(f'[{done}/{len(runs)}] {row.dataset} {row.setting} split {split}: training in {path}')
    start = time.time()
    result = experiments.run(config, path)
    results.setdefault(row.name, []).append(result)
    summary = summarize(base, config_name, rows, results)
    write_tables(workdir, summary)
    log(
      f'[{done}/{len(runs)}] '
      + _progress(row, split, result, None if finished else time.time() - start)
    )
  return summary


_CONFIG = config_flags.DEFINE_config_file(
  'config',
  'configs/tvsum_standard.py',
  'The model, losses and optimisation of every run '
  '(a benchmark config; its data.dataset and data.setting are set per run).',
  lock_config=False,
)
_WORKDIR = flags.DEFINE_string('workdir', None, 'One subdirectory per dataset, setting and split.')
_DATASETS = flags.DEFINE_list('datasets', ['summe', 'tvsum'], 'Target datasets.')
_SETTINGS = flags.DEFINE_list('settings', list(settings.SETTINGS), 'Settings.')
_SPLITS_FILE = flags.DEFINE_multi_string(
  'splits_file',
  [],
  '[SETTING=]PATH of a split file of the field (JSON or YAML); {dataset} '
  'in PATH is replaced; repeat for several settings. Settings without one use our splits.',
)
_SPLITS = flags.DEFINE_list(
  'splits', None, 'Only these splits (entries) of every row (default: all).'
)


_QFVS_ANNO = flags.DEFINE_string(
  'qfvs_anno',
  None,
  "QFVS's origin_data directory: adds its table of reference rows, F1 against the oracle "
  "(a random summary of the oracle's length, mean of 10 seeded draws; the users).",
)
QFVS_ROWS = (
  ('random', "random summary of the oracle's length (seed 0, mean of 10 draws)"),
  ('users', 'the users against the oracle'),
)


def qfvs_markdown(rows: dict[str, dict[str, Any]]) -> str:
  """QFVS's table: per video and mean concept-IoU F1 (%) of the reference rows against the
  oracle (`human_baseline.qfvs_reference_rows`)."""
  videos = list(next(iter(rows.values()))['per_video'])
  lines = [
    '### QFVS: F1 (%) against the oracle summaries',
    '',
    '| scorer | ' + ' | '.join(videos) + ' | mean |',
    '|---|' + '---|' * (len(videos) + 1),
  ]
  for key, label in QFVS_ROWS:
    if key in rows:
      per_video = rows[key]['per_video']
      cells = [f'{100 * per_video[v]:.1f}' for v in videos] + [f'{100 * rows[key]["f1"]:.1f}']
      lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def check_base_config(base: ml_collections.ConfigDict, name: str) -> None:
  """Refuses, before any work, a --config that is not a SumMe/TVSum benchmark config."""
  if base.data.get('dataset') not in settings.TARGETS:
    raise ValueError(
      f'--config {name} trains on {base.data.get("dataset")!r} data; reproduce runs the '
      "paper's SumMe and TVSum tables: pass a benchmark config such as "
      'configs/tvsum_standard.py (train.py trains any config)'
    )
  if base.data.get('splits_file'):
    raise ValueError(
      'name split files with --splits_file [SETTING=]PATH, not --config.data.splits_file'
    )


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  with cli.one_line_errors('reproduce'):
    cli.enable_compilation_cache()
    check_base_config(_CONFIG.value, config_flags.get_config_filename(flags.FLAGS['config']))
    only = cli.int_list('splits', _SPLITS.value)
    rows = plan(
      _DATASETS.value,
      _SETTINGS.value,
      parse_splits_files(_SPLITS_FILE.value, _SETTINGS.value),
      only,
    )
    config_name = cli.config_name(flags.FLAGS['config'])
    summary = reproduce(_CONFIG.value, _WORKDIR.value, rows, config_name)
    print(markdown(summary))
    if _QFVS_ANNO.value:
      from clipit_jax import human_baseline  # pylint: disable=g-import-not-at-top
      from clipit_jax.datasets import qfvs  # pylint: disable=g-import-not-at-top

      release = qfvs.read_release(_QFVS_ANNO.value)
      text = qfvs_markdown(human_baseline.qfvs_reference_rows(release, draws=10, seed=0))
      files.write_text(os.path.join(_WORKDIR.value, 'table_qfvs.md'), text)
      print(text)


if __name__ == '__main__':
  flags.mark_flags_as_required(['workdir'])
  app.run(main, flags_parser=cli.flags_parser('reproduce'))

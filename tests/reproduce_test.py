"""`python -m clipit_jax.reproduce` on the stand-ins: tables, split files, resuming, the CLI."""

import hashlib
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from clipit_jax import cli
from clipit_jax import experiments
from clipit_jax import reproduce
from clipit_jax.datasets import settings
from testutil import ROOT, TINY_MODEL, load_config_file, path_key, tiny_config
from testutil import write_splits_file

# Its tests share module-scoped fixtures: one worker runs them all (pytest -n --dist loadgroup).
pytestmark = pytest.mark.xdist_group('reproduce')

VIDEOS = [f'video_{i}' for i in range(1, 7)]
TINY = dict(num_epochs=2, batch_size=4, learning_rate=1e-3, progress=False)


@pytest.fixture
def data_dir(standin_data_dir):
  return standin_data_dir


@pytest.fixture(scope='module')
def compilation_cache():
  """The runs share one model: the disk cache (as the command uses) compiles it once."""
  before = (
    jax.config.jax_compilation_cache_dir,
    jax.config.jax_persistent_cache_min_compile_time_secs,
  )
  cli.enable_compilation_cache()
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.2)
  yield
  jax.config.update('jax_compilation_cache_dir', before[0])
  jax.config.update('jax_persistent_cache_min_compile_time_secs', before[1])


def test_shipped_configs_differ_only_in_the_fields_a_run_sets():
  """reproduce runs every row from one base config: that is each row's own config file."""
  for loss in ('', '_unsupervised'):
    base = load_config_file(f'tvsum_standard{loss}')
    for dataset in settings.TARGETS:
      for setting in settings.SETTINGS:
        row = reproduce.Row(dataset, setting, [0])
        expected = load_config_file(f'{dataset}_{setting}{loss}')
        expected.test_every_epoch = True
        assert reproduce.run_config(base, row, 0).to_dict() == expected.to_dict()
    assert reproduce.paper_row(base) == ('Lunsup = Ld + Lr' if loss else 'Lsup = Lc + Ld + Lr')


def _splits_file(tmp_path):
  """DSNet-style tvsum.yml: two entries whose test videos our seeded split 0 would train on."""
  entries = [
    dict(
      train_keys=[path_key('tvsum', v) for v in VIDEOS if v not in test],
      test_keys=[path_key('tvsum', v) for v in test],
    )
    for test in (['video_1', 'video_2'], ['video_5', 'video_6'])
  ]
  return write_splits_file(tmp_path / 'tvsum.yml', entries)


class Interrupted(Exception):
  pass


def test_reproduce_writes_both_tables_and_resumes(data_dir, tmp_path, compilation_cache, capsys):
  del compilation_cache
  workdir = str(tmp_path / 'paper')
  splits_path = _splits_file(tmp_path)
  rows = reproduce.plan(
    ['tvsum'],
    ['standard', 'transfer'],
    reproduce.parse_splits_files(
      [f'standard={tmp_path}/{{dataset}}.yml'], ['standard', 'transfer']
    ),
  )
  assert [(r.setting, r.splits, r.splits_file and r.splits_file.path) for r in rows] == [
    ('standard', [0, 1], splits_path),
    ('transfer', [0], None),
  ]
  rows = rows[:1]  # Training the standard row is enough here.

  # Interrupted after the first run, stopped after epoch 1 of 2.
  lines = []

  def log(line):
    lines.append(line)
    if line.startswith('[1/2] tvsum standard split 0 '):
      raise Interrupted()

  base = tiny_config('tvsum_standard', data_dir, **TINY)
  stopped = tiny_config('tvsum_standard', data_dir, stop_after_epoch=1, **TINY)
  with pytest.raises(Interrupted):
    reproduce.reproduce(stopped, workdir, rows, 'tiny', log)
  with open(os.path.join(workdir, 'table.json')) as f:
    assert [r['runs'] for r in json.load(f)['rows'] if r['splits']] == [1]
  assert not os.path.exists(os.path.join(workdir, 'tvsum_standard', 'split_1'))

  # Run again: the first run resumes from epoch 1, the second trains.
  capsys.readouterr()
  lines.clear()
  summary = reproduce.reproduce(base, workdir, rows, 'tiny', lines.append)
  assert capsys.readouterr().out.count('Resuming from') == 1
  assert [line.split(':')[0] for line in lines if 'training in' not in line] == [
    '[1/2] tvsum standard split 0 (tvsum.yml entry 0)',
    '[2/2] tvsum standard split 1 (tvsum.yml entry 1)',
  ]
  assert all(line.endswith(' min') for line in lines if 'training in' not in line)

  results = {}
  for name, split in (('tvsum_standard', 0), ('tvsum_standard', 1)):
    run_dir = os.path.join(workdir, name, f'split_{split}')
    with open(os.path.join(run_dir, 'result.json')) as f:
      result = json.load(f)
    with open(os.path.join(run_dir, 'metrics.jsonl')) as f:
      epochs = [json.loads(line) for line in f]
    assert [e['epoch'] for e in epochs] == [1, 2]
    # The optimistic figure: the epoch with the best test F1 in the per-epoch log.
    best = max(epochs, key=lambda e: e['test_f1'])
    assert result['best_test_epoch'] == dict(
      epoch=best['epoch'], metrics={k: best[f'test_{k}'] for k in reproduce.METRICS}
    )
    # The headline: the checkpoint chosen on validation, evaluated on the test videos.
    assert epochs[result['epoch'] - 1]['val_f1'] == max(e['val_f1'] for e in epochs)
    results.setdefault(name, []).append(result)

  with open(splits_path, 'rb') as f:
    sha256 = hashlib.sha256(f.read()).hexdigest()
  for split, result in enumerate(results['tvsum_standard']):
    assert result['splits_file'] == dict(
      name='tvsum.yml', path=splits_path, sha256=sha256, entry=split
    )
    assert result['videos'] == [
      ['tvsum', v] for v in (['video_1', 'video_2'], ['video_5', 'video_6'])[split]
    ]

  # table.json: every cell of the paper's Table 2; mean and std over the runs.
  with open(os.path.join(workdir, 'table.json')) as f:
    table = json.load(f)
  assert table == json.loads(json.dumps(summary))
  cells = {(r['dataset'], r['setting']): r for r in table['rows']}
  assert sorted(cells) == sorted((d, s) for d in settings.TARGETS for s in settings.SETTINGS)
  standard = cells['tvsum', 'standard']
  f1 = [r['metrics']['f1'] for r in results['tvsum_standard']]
  np.testing.assert_allclose(standard['ours']['f1'], [np.mean(f1), np.std(f1)])
  optimistic = [r['best_test_epoch']['metrics']['kendall'] for r in results['tvsum_standard']]
  np.testing.assert_allclose(
    standard['optimistic']['kendall'], [np.mean(optimistic), np.std(optimistic)]
  )
  assert standard['paper'] == dict(f1=66.3, kendall=0.108, spearman=0.147)
  assert standard['splits_file']['sha256'] == sha256 and standard['runs'] == 2
  assert cells['summe', 'augment']['paper'] == dict(f1=56.4)
  assert cells['summe', 'augment']['runs'] == 0 and cells['summe', 'augment']['ours'] is None

  markdown = open(os.path.join(workdir, 'table.md')).read()
  assert markdown == reproduce.markdown(table)
  mean, std = standard['ours']['f1']
  assert (
    f'| TVSum | Standard | `tvsum.yml` entries 0,1 (sha256 {sha256[:12]}) | 2/2 | '
    f'{mean:.1f} ± {std:.1f} | 66.3 |'
  ) in markdown
  assert '| SumMe | Augment | not requested | — | — | 56.4 | — |' in markdown
  assert reproduce.OPTIMISTIC in markdown

  # The command line, run again: every run is finished, so nothing trains.
  out = subprocess.run(
    [
      sys.executable,
      '-m',
      'clipit_jax.reproduce',
      f'--workdir={workdir}',
      '--datasets=tvsum',
      '--settings=standard',
      f'--splits_file=standard={tmp_path}/{{dataset}}.yml',
      '--config=configs/tvsum_standard.py',
      f'--config.data.data_dir={data_dir}',
      *[f'--config.{k}={v}' for k, v in TINY.items()],
      *TINY_MODEL,
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  progress = [line for line in out.stdout.splitlines() if line.startswith('[')]
  assert len(progress) == 2 and all(line.endswith('finished earlier') for line in progress)
  with open(os.path.join(workdir, 'table.json')) as f:
    again = json.load(f)
  assert again['rows'] == table['rows']
  # The table records the config file and every override.
  assert again['config'].startswith('configs/tvsum_standard.py --config.batch_size=4 ')
  assert f'--config.data.data_dir={data_dir} ' in again['config']
  assert '--config.model.width=32' in again['config']

  # eval.py aggregates the same workdirs over the file's two entries to the same numbers.
  out = subprocess.run(
    [sys.executable, str(ROOT / 'eval.py'), f'--ckpt={workdir}/tvsum_standard', '--all_splits'],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  aggregate = json.loads(out.stdout.strip().splitlines()[-1])
  np.testing.assert_allclose([aggregate['f1'], aggregate['f1_std']], standard['ours']['f1'])
  with open(os.path.join(workdir, 'tvsum_standard', 'split_1', 'eval.json')) as f:
    assert json.load(f)['splits_file'] == results['tvsum_standard'][1]['splits_file']

  # Other loss weights and learning rate: refused before anything trains (reused, the
  # finished runs' F1 would be labelled with this config and its paper row).
  other = tiny_config('tvsum_standard', data_dir, **dict(TINY, learning_rate=2e-3))
  other.loss_weights.diversity = 0.0
  with pytest.raises(
    ValueError,
    match=r'split_0 holds a run of another config \(learning_rate: 0.001 -> 0.002; '
    r'loss_weights.diversity: 0.3 -> 0.0\); a --workdir holds the runs of one config',
  ):
    reproduce.reproduce(other, workdir, rows, 'tiny', lambda line: pytest.fail(line))
  # A finished workdir is not resumed on other videos, nor on a changed split file.
  config = reproduce.run_config(base, rows[0], 0)
  config.data.split = 1
  with pytest.raises(ValueError, match=r'holds a run of another config \(data.split: 0 -> 1\)'):
    experiments.run(config, os.path.join(workdir, 'tvsum_standard', 'split_0'))
  with open(splits_path, 'a') as f:
    f.write('# edited\n')
  with pytest.raises(ValueError, match='tvsum.yml has changed since'):
    experiments.run(
      reproduce.run_config(base, rows[0], 0), os.path.join(workdir, 'tvsum_standard', 'split_0')
    )


def test_bad_requests_are_errors_that_name_them(tmp_path):
  (tmp_path / 'summe.yml').write_text('[]')
  for args, expected in (
    ((['ovp'], ['standard'], {}), r"unknown datasets \['ovp'\]"),
    (
      (['summe'], ['standard'], {'standard': 'nowhere/{dataset}.yml'}),
      'nowhere/summe.yml: split file not found',
    ),
    (
      (['summe', 'tvsum'], ['standard'], {'standard': f'{tmp_path}/summe.yml'}),
      'serves several datasets; write {dataset}',
    ),
    ((['summe'], ['standard'], {'standard': f'{tmp_path}/summe.yml'}), 'holds no split'),
    ((['summe'], ['transfer'], {}, [3]), r'summe transfer has splits 0-0; --splits \[3\]'),
  ):
    with pytest.raises(ValueError, match=expected):
      reproduce.plan(*args)
  for values, wanted, expected in (
    (
      ['bogus=x.yml'],
      ['standard'],
      r"--splits_file=bogus=x.yml: 'bogus' is not a setting; write --splits_file=SETTING=PATH",
    ),
    (['augment=x.yml'], ['standard'], 'augment is not among --settings=standard'),
  ):
    with pytest.raises(ValueError, match=expected):
      reproduce.parse_splits_files(values, wanted)
  assert reproduce.parse_splits_files(['s/a=b.yml'], ['standard']) == {'standard': 's/a=b.yml'}
  with pytest.raises(ValueError, match=r"--config configs/synthetic.py trains on 'synthetic' data"):
    reproduce.check_base_config(load_config_file('synthetic'), 'configs/synthetic.py')
  # On the command line: one line and exit 1.
  out = subprocess.run(
    [
      sys.executable,
      '-m',
      'clipit_jax.reproduce',
      f'--workdir={tmp_path}',
      '--datasets=summe',
      '--settings=standard',
      f'--splits_file={tmp_path}/{{dataset}}.yml',
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  assert out.returncode == 1 and 'Traceback' not in out.stderr, out.stderr[-2000:]
  assert out.stderr.strip().splitlines()[-1] == (
    f'reproduce: error: {tmp_path}/summe.yml: holds no split'
  )

"""Configs checked before any work: overrides, config files, and a run's saved config.json.

Each bad value is one line naming the field (or file) and what it must be; a saved
config.json is merged over the defaults (clipit_jax/config_defaults.py).
"""

import json
import os
import subprocess
import sys

import pytest

from clipit_jax import checkpoints
from clipit_jax import config_checks
from clipit_jax import config_defaults
from clipit_jax import evaluators
from clipit_jax.summarize import command
from clipit_jax.summarize import summarizer
from testutil import REDS, ROOT, load_config_file, scenes_video


def _script(*args):
  return subprocess.run(
    [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
  )


def _with(config, field, value):
  *parents, name = field.split('.')
  target = config
  for part in parents:
    target = target[part]
  target[name] = value
  return config


@pytest.mark.parametrize(
  'field, value, message',
  [
    ('model.dropout_rate', 1.5, 'must be a number in [0, 1), got 1.5'),
    ('model.attention_dropout_rate', -0.1, 'must be a number in [0, 1), got -0.1'),
    ('model.width', 0, 'must be an integer >= 1, got 0'),
    ('model.num_heads', 0, 'must be an integer >= 1, got 0'),
    ('model.score_smoothing', 4, 'must be an odd integer >= 1, got 4'),
    ('model.width', 66, 'must be divisible by model.num_heads (8), got 66'),
    ('model.width', 132, 'must be divisible by model.language_heads (8), got 132'),
    ('best_metric', 'bogus', "must be one of 'f1', 'kendall', 'spearman', got 'bogus'"),
    ('loss', 'sup', "must be one of 'supervised', 'unsupervised', got 'sup'"),
    ('model.text_fusion', 'sum', "must be one of 'concat', 'tokens', 'query', got 'sum'"),
    ('parallelism', 'vmap', "must be one of 'shard_map', 'pmap', got 'vmap'"),
    ('evaluators', ('test',), "must list 'val' and maybe 'test'"),
    ('data.splits_file', 'bad.json', "does not apply to data.dataset='synthetic'"),
    ('data.setting', 'augment', "'augment' does not apply to data.dataset='synthetic'"),
  ],
)
def test_bad_values_name_the_field_and_what_it_must_be(field, value, message):
  config = load_config_file('synthetic')
  if field == 'model.width' and value == 132:  # 132 = 12 * 11: the frame heads divide it.
    config.model.update(num_heads=12, language_heads=8)
  _with(config, field, value)
  with pytest.raises(ValueError) as e:
    config_checks.check_config(config)
  assert str(e.value).startswith(f'config.{field} {message}'), e.value
  assert str(e.value).endswith(f'(--config.{field})'), e.value


def test_choices_are_those_of_the_modules_that_use_them():
  assert config_checks.best_metrics('summe') == evaluators.KeyshotTruth.metrics
  assert config_checks.best_metrics('qfvs') == evaluators.QfvsTruth.metrics
  assert config_checks.EVALUATORS == tuple(evaluators.EVALUATORS)


@pytest.mark.parametrize(
  'override, words',
  [
    ('--config.model.dropout_rate=1.5', 'config.model.dropout_rate must be a number in [0, 1)'),
    ('--config.model.width=66', 'config.model.width must be divisible by model.num_heads (8)'),
    ('--config.best_metric=bogus', "config.best_metric must be one of 'f1', 'kendall'"),
    ('--config.data.splits_file=bad.json', 'config.data.splits_file does not apply'),
  ],
)
def test_train_py_refuses_a_bad_override_before_any_work(tmp_path, override, words):
  out = _script('train.py', '--config=configs/synthetic.py', f'--workdir={tmp_path}', override)
  assert out.returncode == 1
  lines = out.stderr.splitlines()
  assert len(lines) == 1 and lines[0].startswith(f'train.py: error: {words}'), out.stderr
  assert not os.listdir(tmp_path)


def test_a_config_file_that_does_not_run_is_one_line_naming_it(tmp_path):
  bad = tmp_path / 'bad.py'
  bad.write_text('def get_config(:\n  pass\n')
  out = _script('train.py', f'--config={bad}', f'--workdir={tmp_path / "w"}')
  assert out.returncode == 2
  assert out.stderr.splitlines() == [
    f'train.py: error: --config {bad}: line 1: invalid syntax; fix the file'
  ]
  bad.write_text('def get_config():\n  return {}[0]\n')
  out = _script('train.py', f'--config={bad}', f'--workdir={tmp_path / "w"}')
  assert out.stderr.splitlines() == [
    f'train.py: error: --config {bad}: get_config() raised KeyError: 0'
  ]
  assert not (tmp_path / 'w').exists()


# --- a run's saved config.json ----------------------------------------------------------------


def _saved_run(workdir, edit):
  """A run directory whose config.json (the synthetic config's) is changed by `edit`."""
  config = json.loads(load_config_file('synthetic').to_json_best_effort())
  edit(config)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    json.dump(config, f)
  return str(workdir)


def _delete_width(c):
  del c['model']['width']


SAVED_CASES = [
  (lambda c: c['model'].update(width='abc'), "model.width must be of type int, got 'abc'"),
  (lambda c: c['model'].update(width=[128]), 'model.width must be of type int, got [128]'),
  (_delete_width, "model.width is missing (it fixes the saved parameters' shapes)"),
  (lambda c: c['data'].update(colour='red'), "unknown field 'data.colour'"),
  (
    lambda c: c['model'].update(frame_dim=None),
    'model.frame_dim must be an integer >= 1, got None',
  ),
  (lambda c: c.update(best_metric='bogus'), "best_metric must be one of 'f1', 'kendall'"),
]


@pytest.fixture(scope='module')
def video(tmp_path_factory):
  return scenes_video(tmp_path_factory.mktemp('video') / 'v.mp4', REDS[:2], seconds=1.0)


@pytest.mark.parametrize('edit, problem', SAVED_CASES)
def test_a_bad_saved_config_is_one_line_naming_the_file(tmp_path, video, capsys, edit, problem):
  workdir = _saved_run(tmp_path / 'run', edit)
  expected = f'{workdir}/config.json: {problem}'
  with pytest.raises(checkpoints.CheckpointError) as e:
    summarizer.Summarizer.from_checkpoint(workdir, clip_model='tiny')
  assert str(e.value).startswith(expected), e.value
  with pytest.raises(SystemExit) as e:
    command.main([str(video), '--ckpt', workdir, '--out', str(tmp_path / 'out')])
  assert e.value.code == 1
  err = capsys.readouterr().err.splitlines()
  assert len(err) == 1 and err[0].startswith(f'clipit-summarize: error: {expected}'), err


def test_eval_py_names_the_bad_saved_config(tmp_path):
  workdir = _saved_run(tmp_path / 'run', lambda c: c['model'].update(width='abc'))
  out = _script('eval.py', f'--ckpt={workdir}')
  assert out.returncode == 1
  assert out.stderr.splitlines() == [
    f"eval.py: error: {workdir}/config.json: model.width must be of type int, got 'abc'"
  ]


def test_a_saved_config_is_merged_over_the_defaults(tmp_path):
  """A field the run did not save (added since) takes its default; saved values stay."""
  workdir = _saved_run(tmp_path / 'run', lambda c: c['model'].pop('attention'))
  config = checkpoints.load_config(workdir)
  assert config.model.attention == config_defaults.get_model_config().attention
  assert config == load_config_file('synthetic')


def test_human_baseline_refuses_the_flags_of_a_run():
  out = _script('eval.py', '--human_baseline=tvsum', '--anno=x.tsv', '--ckpt=runs/x')
  assert out.returncode == 1
  assert out.stderr.splitlines() == [
    'eval.py: error: --ckpt does not apply to --human_baseline (it evaluates annotators, not a '
    'run); evaluate the run in a separate eval.py --ckpt command'
  ]
  out = _script('eval.py', '--human-baseline=tvsum')  # The earlier spelling still works.
  assert out.stderr.splitlines() == [
    'eval.py: error: --human_baseline needs --anno (the raw annotation file)'
  ]

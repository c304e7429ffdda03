"""A run directory knows what it is: its config fingerprint, checked before resuming."""

import json
import os

import pytest

from clipit_jax import checkpoints
from clipit_jax import run_dir
from testutil import load_config_file


def _changed(**fields):
  config = load_config_file('synthetic')
  for field, value in fields.items():
    *parents, name = field.split('__')
    target = config
    for part in parents:
      target = target[part]
    target[name] = value
  return config


@pytest.mark.parametrize(
  'field, value',
  [
    ('data__split', 1),
    ('loss', 'unsupervised'),
    ('learning_rate', 1e-2),
    ('loss_weights__diversity', 0.5),
    ('model__width', 64),
    ('target', 'keyframes'),
    ('num_epochs', 30),  # The synthetic config's cosine schedule decays over num_epochs.
  ],
)
def test_what_defines_the_results_is_in_the_fingerprint(field, value):
  before, after = run_dir.fingerprint(_changed()), run_dir.fingerprint(_changed(**{field: value}))
  assert {k for k in before if before[k] != after[k]} == {field.replace('__', '.')}


def test_how_and_how_long_it_runs_is_not():
  base = run_dir.fingerprint(_changed())
  for field, value in (
    ('progress', False),
    ('stop_after_epoch', 3),
    ('microbatch_size', 2),
    ('parallelism', 'pmap'),
    ('data__data_dir', '/elsewhere'),
    ('test_every_epoch', True),
  ):
    assert run_dir.fingerprint(_changed(**{field: value})) == base, field
  constant = dict(lr_schedule='constant')  # Training longer at a constant rate resumes.
  assert run_dir.fingerprint(_changed(**constant)) == run_dir.fingerprint(
    _changed(num_epochs=90, **constant)
  )


def test_a_split_file_counts_by_its_content(tmp_path):
  path = tmp_path / 'splits.json'
  path.write_text('[{"train_keys": ["video_1"], "test_keys": ["video_2"]}]')
  config = _changed(data__dataset='tvsum', data__splits_file=str(path))
  before = run_dir.fingerprint(config)
  path.write_text('[{"train_keys": ["video_2"], "test_keys": ["video_1"]}]')
  after = run_dir.fingerprint(config)
  assert {k for k in before if before[k] != after[k]} == {'data.splits_file_sha256'}


def _recorded_run(workdir, config):
  os.makedirs(workdir)
  checkpoints.save_config(str(workdir), config)
  run_dir.record_fingerprint(str(workdir), config)
  return str(workdir)


def test_resuming_with_another_split_or_learning_rate_is_refused(tmp_path):
  workdir = _recorded_run(tmp_path / 'run', _changed())
  assert run_dir.matches(workdir, _changed(progress=False))
  run_dir.check_fingerprint(workdir, _changed(stop_after_epoch=2))
  other = _changed(data__split=1, learning_rate=0.01)
  assert not run_dir.matches(workdir, other)
  with pytest.raises(checkpoints.CheckpointError) as e:
    run_dir.check_fingerprint(workdir, other)
  assert str(e.value) == (
    f'{workdir} holds a run of another config (data.split: 0 -> 1; learning_rate: 0.001 -> '
    '0.01): train in another --workdir, or pass --restart to start over there (the old run '
    f'is moved to {workdir}/replaced/)'
  )
  assert not run_dir.matches(str(tmp_path / 'empty'), _changed())  # No run there.


def test_a_run_from_before_fingerprints_is_judged_by_its_config_json(tmp_path):
  workdir = _recorded_run(tmp_path / 'run', _changed())
  os.remove(os.path.join(workdir, run_dir.FINGERPRINT_FILE))
  assert run_dir.matches(workdir, _changed())
  assert run_dir.differences(workdir, _changed(loss='unsupervised')) == [
    "loss: 'supervised' -> 'unsupervised'"
  ]


def test_move_aside_keeps_the_whole_run(tmp_path):
  workdir = _recorded_run(tmp_path / 'run', _changed())
  (tmp_path / 'run' / 'checkpoints' / '3').mkdir(parents=True)
  (tmp_path / 'run' / run_dir.LOCK_FILE).write_text('')
  moved = run_dir.move_aside(workdir)
  assert sorted(os.listdir(workdir)) == [run_dir.REPLACED_DIR, run_dir.LOCK_FILE]
  assert sorted(os.listdir(moved)) == ['checkpoints', 'config.json', 'fingerprint.json']
  with open(os.path.join(moved, 'fingerprint.json')) as f:
    assert json.load(f) == run_dir.fingerprint(_changed())
  assert run_dir.move_aside(workdir) is None  # Nothing left to move.

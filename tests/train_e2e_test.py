"""train.py and eval.py end to end on the TVSum-shaped stand-in (a tiny model, a few seconds a run)."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from clipit_jax import checkpoints
from clipit_jax import inference
from clipit_jax import train
from clipit_jax.datasets import errors
from clipit_jax.datasets import loading
from testutil import ROOT, load_config_file, tiny_config


def quick_config(data_dir, **overrides):
  """configs/tvsum_standard.py with the tiny model, two epochs."""
  return tiny_config('tvsum_standard', data_dir, **{'num_epochs': 2, **overrides})


def _params_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def _metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def _run(script, *args):
  return subprocess.run(
    [sys.executable, str(ROOT / script), *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )


def test_train_checkpoint_evaluate(standin_data_dir, tmp_path):
  workdir = str(tmp_path / 'run')
  state = train.train_and_evaluate(quick_config(standin_data_dir), workdir)
  assert int(state.step) > 0
  lines = _metrics(workdir)
  assert [m['epoch'] for m in lines] == [1, 2]
  for m in lines:
    assert 0 <= m['val_f1'] <= 100 and -1 <= m['val_kendall'] <= 1
    assert np.isfinite(m['train_total']) and m['train_classification'] > 0
  assert sorted(os.listdir(os.path.join(workdir, 'tensorboard')))
  assert checkpoints.load_config(workdir).model.width == 32
  result = inference.evaluate_checkpoint(workdir, 'test', 'latest')
  num_test = len(loading.load_data(quick_config(standin_data_dir))['test'])
  assert result['epoch'] == 2 and len(result['rows']) == num_test > 0
  assert 0 <= result['metrics']['f1'] <= 100
  assert -1 <= result['metrics']['kendall'] <= 1 and -1 <= result['metrics']['spearman'] <= 1

  out = _run('eval.py', f'--ckpt={workdir}', '--checkpoint=latest')
  assert out.returncode == 0, out.stderr
  last = json.loads(out.stdout.strip().splitlines()[-1])
  assert set(last) == {'f1', 'kendall', 'spearman'}
  np.testing.assert_allclose(last['kendall'], result['metrics']['kendall'], rtol=1e-6)
  with open(os.path.join(workdir, 'eval.json')) as f:
    saved = json.load(f)
  assert saved['split_fingerprint'] and len(saved['videos']) == num_test


def test_interrupted_and_resumed_run_equals_uninterrupted(standin_data_dir, tmp_path):
  straight = train.train_and_evaluate(quick_config(standin_data_dir), str(tmp_path / 'straight'))
  resumed_dir = str(tmp_path / 'resumed')
  first = train.train_and_evaluate(quick_config(standin_data_dir, stop_after_epoch=1), resumed_dir)
  assert int(first.step) * 2 == int(straight.step)
  assert [m['epoch'] for m in _metrics(resumed_dir)] == [1]
  resumed = train.train_and_evaluate(quick_config(standin_data_dir), resumed_dir)
  _params_equal(straight.params, resumed.params)
  assert [m['train_total'] for m in _metrics(resumed_dir)] == [
    m['train_total'] for m in _metrics(str(tmp_path / 'straight'))
  ]


# --- bad input -----------------------------------------------------------------------------------


def _one_line_error(result):
  assert result.returncode != 0
  lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
  assert 'Traceback' not in result.stderr, result.stderr
  return lines


def test_unknown_config_field_is_one_clear_error(tmp_path):
  out = _run(
    'train.py', '--config=configs/synthetic.py', f'--workdir={tmp_path}', '--config.num_epoch=3'
  )
  lines = _one_line_error(out)
  assert any('num_epoch' in l for l in lines), out.stderr


def test_eval_of_a_workdir_without_checkpoint(tmp_path):
  out = _run('eval.py', f'--ckpt={tmp_path}')
  assert _one_line_error(out) == [
    f'eval.py: error: {tmp_path}: no config.json; is this a train.py --workdir?'
  ]
  checkpoints.save_config(str(tmp_path), load_config_file('synthetic'))
  out = _run('eval.py', f'--ckpt={tmp_path}')
  lines = _one_line_error(out)
  assert len(lines) == 1 and 'no checkpoint found' in lines[0]


def test_checkpoint_of_another_model_size(standin_data_dir, tmp_path):
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(quick_config(standin_data_dir, num_epochs=1), workdir)
  bigger = quick_config(standin_data_dir)
  bigger.model.width = 48
  with pytest.raises(checkpoints.CheckpointError) as e:
    train.train_and_evaluate(bigger, workdir)
  assert str(e.value) == (
    f'{workdir} holds a run of another config (model.width: 32 -> 48): train in another '
    f'--workdir, or pass --restart to start over there (the old run is moved to '
    f'{workdir}/replaced/)'
  )
  # A config file edited by hand no longer fits the saved parameters.
  checkpoints.save_config(workdir, bigger)
  out = _run('eval.py', f'--ckpt={workdir}')
  assert out.returncode != 0
  # Orbax's I/O thread may log its own traceback (before or after ours) while the
  # restore fails; our one error line names the problem.
  ours = [l for l in out.stderr.splitlines() if l.startswith('eval.py: error:')]
  assert len(ours) == 1 and 'does not fit the configured model' in ours[0], out.stderr
  # --restart moves the earlier run aside, whole, and starts over.
  before = sorted(os.listdir(workdir))
  train.train_and_evaluate(bigger, workdir, restart=True)
  (moved,) = os.listdir(os.path.join(workdir, 'replaced'))
  moved = os.path.join(workdir, 'replaced', moved)
  assert sorted(os.listdir(moved)) == [n for n in before if n != 'train.lock']
  assert [m['epoch'] for m in _metrics(moved)] == [1]
  assert [m['epoch'] for m in _metrics(workdir)] == [1, 2]
  assert checkpoints.load_config(workdir).model.width == 48


def test_divergence_names_the_learning_rate_and_keeps_the_last_good_checkpoint(
  standin_data_dir, tmp_path, monkeypatch
):
  workdir = str(tmp_path / 'run')
  config = quick_config(standin_data_dir, learning_rate=1e30)  # Adam moves every weight by ~lr.
  with pytest.raises(train.DivergedError) as e:
    train.train_and_evaluate(config, workdir)
  assert str(e.value).startswith('training diverged in epoch 1 (loss ')
  assert str(e.value).endswith(
    'at learning_rate=1e+30 (constant schedule); no checkpoint was saved: lower '
    '--config.learning_rate and train in another --workdir, or with --restart'
  )
  assert not os.path.exists(os.path.join(workdir, 'metrics.jsonl'))
  # Parameters that stop being finite in epoch 2 (a fault injected into the real step's
  # output): the checkpoint of epoch 1 stays, and the metrics log ends there.
  epochs = []
  real_epoch = train.train_epoch

  def poisoned_second_epoch(*args, **kwargs):
    state, metrics = real_epoch(*args, **kwargs)
    epochs.append(1)
    if len(epochs) == 2:
      state = state.replace(params=jax.tree.map(lambda x: x * np.nan, state.params))
    return state, metrics

  monkeypatch.setattr(train, 'train_epoch', poisoned_second_epoch)
  workdir = str(tmp_path / 'run2')
  with pytest.raises(train.DivergedError, match=f'the checkpoint of epoch 1 is kept in {workdir}'):
    train.train_and_evaluate(quick_config(standin_data_dir), workdir)
  assert [m['epoch'] for m in _metrics(workdir)] == [1]
  _, params, epoch = inference.load_trained(workdir, 'latest')
  assert epoch == 1 and all(np.isfinite(x).all() for x in jax.tree.leaves(params))


def test_mismatched_feature_width_names_the_fix(standin_data_dir, tmp_path):
  config = quick_config(standin_data_dir)
  config.model.frame_dim = 512
  with pytest.raises(errors.DatasetError, match='config.model.frame_dim is 512; set it to 1024'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))


def test_every_config_file_loads():
  names = sorted(p.stem for p in (ROOT / 'configs').glob('*.py') if p.stem != 'summe_tvsum')
  assert len(names) == 16
  for name in names:
    config = load_config_file(name)
    assert config.model.frame_dim in (512, 1024)
    assert config.data.dataset in ('summe', 'tvsum', 'synthetic', 'qfvs')
  assert load_config_file('summe_transfer', 'clip').model.frame_dim == 512
  assert load_config_file('tvsum_standard_unsupervised').loss == 'unsupervised'

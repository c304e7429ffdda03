"""train.py and eval.py end to end on the synthetic benchmark (built once for this module)."""

import dataclasses
import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from clipit_jax import baselines
from clipit_jax import benchmark_eval
from clipit_jax import checkpoints
from clipit_jax import models
from clipit_jax import train
from clipit_jax.datasets import loading
from testutil import ROOT, load_config_file


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """The synthetic benchmark (100 videos, tiny CLIP), built once: about 25 s."""
  directory = str(tmp_path_factory.mktemp('tfds'))
  loading.load_builder('synthetic', 'tiny', directory, needs_manual_dir=False)
  return directory


QUICK_MODEL = dict(width=64, mlp_dim=128, head_mlp_dim=32, num_encoder_layers=1,
                   num_decoder_layers=1)
QUICK_RUN = dict(num_epochs=2, progress=False)
NO_DROPOUT = dict(dropout_rate=0.0, attention_dropout_rate=0.0)


def quick_config(data_dir, name='synthetic', **overrides):
  """The synthetic config with a small model, for runs of a few seconds."""
  config = load_config_file(name)
  config.data.data_dir = data_dir
  config.model.update(QUICK_MODEL)
  config.update({**QUICK_RUN, **overrides})
  return config


def _params_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def _metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def _run(script, *args):
  return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=600, check=False)


def test_train_checkpoint_evaluate(data_dir, tmp_path):
  workdir = str(tmp_path / 'run')
  state = train.train_and_evaluate(quick_config(data_dir), workdir)
  assert int(state.step) > 0
  lines = _metrics(workdir)
  assert [m['epoch'] for m in lines] == [1, 2]
  for m in lines:
    assert 0 <= m['val_f1'] <= 100 and -1 <= m['val_kendall'] <= 1
    assert np.isfinite(m['train_total']) and m['train_classification'] > 0
  assert sorted(os.listdir(os.path.join(workdir, 'tensorboard')))
  assert checkpoints.load_config(workdir).model.width == 64
  result = train.evaluate_checkpoint(workdir, 'test', 'latest')
  assert result['epoch'] == 2 and len(result['rows']) == 20
  assert 0 <= result['metrics']['f1'] <= 100
  assert -1 <= result['metrics']['kendall'] <= 1 and -1 <= result['metrics']['spearman'] <= 1

  out = _run('eval.py', f'--ckpt={workdir}', '--checkpoint=latest')
  assert out.returncode == 0, out.stderr
  last = json.loads(out.stdout.strip().splitlines()[-1])
  assert set(last) == {'f1', 'kendall', 'spearman'}
  np.testing.assert_allclose(last['kendall'], result['metrics']['kendall'], rtol=1e-6)
  with open(os.path.join(workdir, 'eval.json')) as f:
    saved = json.load(f)
  assert saved['split_fingerprint'] and len(saved['videos']) == 20


def test_interrupted_and_resumed_run_equals_uninterrupted(data_dir, tmp_path):
  straight = train.train_and_evaluate(quick_config(data_dir), str(tmp_path / 'straight'))
  resumed_dir = str(tmp_path / 'resumed')
  first = train.train_and_evaluate(quick_config(data_dir, stop_after_epoch=1), resumed_dir)
  assert int(first.step) * 2 == int(straight.step)
  assert [m['epoch'] for m in _metrics(resumed_dir)] == [1]
  resumed = train.train_and_evaluate(quick_config(data_dir), resumed_dir)
  _params_equal(straight.params, resumed.params)
  assert [m['train_total'] for m in _metrics(resumed_dir)] == [
      m['train_total'] for m in _metrics(str(tmp_path / 'straight'))]


_FOUR_DEVICES = '''
import sys
sys.path.insert(0, {tests!r})
import jax
from clipit_jax import train
from train_e2e_test import no_dropout_config
assert jax.device_count() == 4
train.train_and_evaluate(no_dropout_config({data_dir!r}), {workdir!r})
'''


def no_dropout_config(data_dir):
  """`quick_config` without dropout: one device and four then see the same masks."""
  config = quick_config(data_dir)
  config.model.update(NO_DROPOUT)
  return config


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


# train.py, counting the compiles of the train step.
_TRAIN_PY_COUNTING_COMPILES = '''
import atexit, runpy, sys, jax
names = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, _, fun_name="", **__: names.append(fun_name)
    if event.endswith("backend_compile_duration") else None)
atexit.register(lambda: print("train_step compiles:", sum("train_step" in n for n in names)))
sys.argv[0] = "train.py"
runpy.run_path("train.py", run_name="__main__")
'''


def _train_two_processes(data_dir, workdir, *flags):
  """train.py as 2 processes x 2 CPU devices on localhost (gloo collectives); its stdouts."""
  overrides = [f'--config.data.data_dir={data_dir}']
  overrides += [f'--config.{k}={v}' for k, v in QUICK_RUN.items()]
  overrides += [f'--config.model.{k}={v}' for k, v in {**QUICK_MODEL, **NO_DROPOUT}.items()]
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  env.update(JAX_PLATFORMS='cpu', JAX_NUM_CPU_DEVICES='2', CLIPIT_NO_XLA_CACHE='1')
  port = _free_port()
  processes = [subprocess.Popen(
      [sys.executable, '-c', _TRAIN_PY_COUNTING_COMPILES, '--config=configs/synthetic.py',
       f'--workdir={workdir}', '--distributed', f'--coordinator_address=localhost:{port}',
       '--num_processes=2', f'--process_id={i}', *overrides, *flags],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  outputs = [p.communicate(timeout=600) for p in processes]
  for p, (out, err) in zip(processes, outputs):
    assert p.returncode == 0, err[-3000:]
    assert 'train_step compiles: 1' in out, out  # One shape, one compile.
  return [out for out, _ in outputs]


def test_four_devices_and_two_processes_give_the_same_training(data_dir, tmp_path):
  """1 device, 4 devices in one process, and 2 processes x 2 devices interrupted and resumed."""
  train.train_and_evaluate(no_dropout_config(data_dir), str(tmp_path / 'one'))
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4')
  code = _FOUR_DEVICES.format(tests=str(ROOT / 'tests'), data_dir=data_dir,
                              workdir=str(tmp_path / 'four'))
  out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                       timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  one, four = _metrics(str(tmp_path / 'one')), _metrics(str(tmp_path / 'four'))
  for a, b in zip(one, four):
    for key in ('train_total', 'train_classification', 'train_diversity', 'train_reconstruction',
                'val_kendall'):
      np.testing.assert_allclose(b[key], a[key], rtol=1e-4, atol=1e-5, err_msg=key)

  two_by_two = str(tmp_path / 'two_by_two')
  _train_two_processes(data_dir, two_by_two, '--config.stop_after_epoch=1')
  assert [m['epoch'] for m in _metrics(two_by_two)] == [1]
  assert all('Resuming' in out for out in _train_two_processes(data_dir, two_by_two))
  for a, b in zip(four, _metrics(two_by_two)):
    for key in ('train_total', 'val_kendall'):
      np.testing.assert_allclose(b[key], a[key], rtol=1e-5, err_msg=key)
  _, expected, _ = train.load_trained(str(tmp_path / 'four'), 'latest')
  _, params, epoch = train.load_trained(two_by_two, 'latest')
  assert epoch == 2
  for x, y in zip(jax.tree.leaves(expected), jax.tree.leaves(params)):
    np.testing.assert_allclose(x, y, atol=1e-5)  # Adam amplifies round-off in ~0 gradients.


def _mean(rows, key):
  return float(np.mean([r[key] for r in rows]))


def test_trained_model_beats_clip_similarity_and_random(data_dir, tmp_path):
  """The embedded default (configs/synthetic.py), stopped after half its epochs to keep the
  suite short, scored on its test videos."""
  config = load_config_file('synthetic')
  config.data.data_dir = data_dir
  config.progress = False
  config.stop_after_epoch = config.num_epochs // 2
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  trained = train.evaluate_checkpoint(workdir, 'test', 'latest')['metrics']
  videos = loading.load_data(config)['test']
  rng = np.random.default_rng(0)
  random_rows = [benchmark_eval.evaluate_keyshot(rng.random(len(v.features)), v.evaluation)
                 for v in videos]
  clip_rows = [benchmark_eval.evaluate_keyshot(
      baselines.clip_similarity(v.features, v.text[v.text_mask]), v.evaluation) for v in videos]
  for key in ('kendall', 'spearman'):
    assert trained[key] > _mean(random_rows, key) + 0.1, (key, trained, _mean(random_rows, key))
    assert trained[key] > _mean(clip_rows, key) + 0.1, (key, trained, _mean(clip_rows, key))


def test_query_model_needs_the_right_query(data_dir, tmp_path):
  """Query-focused part: the same model fed another video's query scores clearly worse."""
  config = load_config_file('synthetic_query')
  config.data.data_dir = data_dir
  config.progress = False
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  _, params, _ = train.load_trained(workdir, 'latest')
  videos = loading.load_data(config)['test']
  apply_fn = jax.jit(models.CLIPIt(config.model).apply)
  right = benchmark_eval.evaluate_videos(apply_fn, params, videos, config.model.window)
  wrong_videos = []
  for i, video in enumerate(videos):  # Another query, of a different object.
    other = next(v for v in videos[i + 1:] + videos[:i]
                 if v.evaluation['query'] != video.evaluation['query'])
    wrong_videos.append(dataclasses.replace(video, text=other.text, text_mask=other.text_mask))
  wrong = benchmark_eval.evaluate_videos(apply_fn, params, wrong_videos, config.model.window)
  for key in ('kendall', 'spearman'):
    assert right['metrics'][key] > wrong['metrics'][key] + 0.1, (key, right, wrong)


# --- bad input -----------------------------------------------------------------------------------

def _one_line_error(result):
  assert result.returncode != 0
  lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
  assert 'Traceback' not in result.stderr, result.stderr
  return lines


def test_unknown_config_field_is_one_clear_error(tmp_path):
  out = _run('train.py', '--config=configs/synthetic.py', f'--workdir={tmp_path}',
             '--config.num_epoch=3')
  lines = _one_line_error(out)
  assert any('num_epoch' in l for l in lines), out.stderr


def test_eval_of_a_workdir_without_checkpoint(tmp_path):
  out = _run('eval.py', f'--ckpt={tmp_path}')
  assert _one_line_error(out) == [f'eval.py: error: {tmp_path}: no config.json; is this a '
                                  'train.py --workdir?']
  checkpoints.save_config(str(tmp_path), load_config_file('synthetic'))
  out = _run('eval.py', f'--ckpt={tmp_path}')
  lines = _one_line_error(out)
  assert len(lines) == 1 and 'no checkpoint found' in lines[0]


def test_checkpoint_of_another_model_size(data_dir, tmp_path):
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(quick_config(data_dir, num_epochs=1), workdir)
  bigger = quick_config(data_dir)
  bigger.model.width = 96
  with pytest.raises(checkpoints.CheckpointError, match='another model .*width'):
    train.train_and_evaluate(bigger, workdir)
  # A config file edited by hand no longer fits the saved parameters.
  checkpoints.save_config(workdir, bigger)
  out = _run('eval.py', f'--ckpt={workdir}')
  assert out.returncode != 0
  # Orbax's I/O thread may log its own traceback (before or after ours) while the
  # restore fails; our one error line names the problem.
  ours = [l for l in out.stderr.splitlines() if l.startswith('eval.py: error:')]
  assert len(ours) == 1 and 'does not fit the configured model' in ours[0], out.stderr


def test_mismatched_feature_width_names_the_fix(data_dir, tmp_path):
  config = quick_config(data_dir)
  config.model.frame_dim = 1024
  with pytest.raises(loading.DatasetError, match='config.model.frame_dim is 1024; set it to 512'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))


def test_every_config_file_loads():
  names = sorted(p.stem for p in (ROOT / 'configs').glob('*.py') if p.stem != 'benchmark')
  assert len(names) == 16
  for name in names:
    config = load_config_file(name)
    assert config.model.frame_dim in (512, 1024)
    assert config.data.dataset in ('summe', 'tvsum', 'synthetic', 'qfvs')
  assert load_config_file('summe_transfer', 'clip').model.frame_dim == 512
  assert load_config_file('tvsum_standard_unsupervised').loss == 'unsupervised'

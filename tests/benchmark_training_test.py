"""Training on the benchmark-shaped stand-ins through the real builders: targets, losses, scripts."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from clipit_jax import benchmark_eval
from clipit_jax import models
from clipit_jax import train
from clipit_jax.datasets import loading
from testutil import ROOT, TINY_MODEL, tiny_config, write_standins


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """Stand-ins of all four benchmarks, 6 short videos each, in a data_dir's manual directory."""
  return write_standins(tmp_path_factory.mktemp('standins'))


def test_train_py_and_eval_py_run_the_benchmark_config(data_dir, tmp_path):
  workdir = str(tmp_path / 'run')
  out = subprocess.run(
      [sys.executable, str(ROOT / 'train.py'), '--config=configs/tvsum_standard.py',
       f'--workdir={workdir}', f'--config.data.data_dir={data_dir}', '--config.num_epochs=1',
       '--config.progress=False', *TINY_MODEL], cwd=ROOT, capture_output=True, text=True,
      timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    assert [json.loads(line)['epoch'] for line in f] == [1]
  out = subprocess.run([sys.executable, str(ROOT / 'eval.py'), f'--ckpt={workdir}'], cwd=ROOT,
                       capture_output=True, text=True, timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert 0 <= result['f1'] <= 100 and -1 <= result['kendall'] <= 1


@pytest.mark.parametrize('target', ['keyframes', 'importance'])
def test_both_targets_train(data_dir, tmp_path, target):
  config = tiny_config('tvsum_standard', data_dir, target=target, test_every_epoch=True)
  state = train.train_and_evaluate(config, str(tmp_path / target))
  with open(tmp_path / target / 'metrics.jsonl') as f:
    lines = [json.loads(line) for line in f]
  assert [m['epoch'] for m in lines] == [1, 2, 3]
  assert all({'test_f1', 'test_kendall', 'test_spearman'} <= set(m) for m in lines)
  assert lines[-1]['train_classification'] < lines[0]['train_classification']
  videos = loading.load_data(config)['train']
  if target == 'importance':  # The min-max normalised gtscore of each video.
    assert all(v.importance.min() == 0 and v.importance.max() == 1 for v in videos)
  assert int(state.step) == 3 * -(-sum(-(-len(v.features) // 64) for v in videos) // 4)


def test_unsupervised_scores_are_not_constant(data_dir, tmp_path):
  config = tiny_config('tvsum_standard_unsupervised', data_dir, num_epochs=6)
  state = train.train_and_evaluate(config, str(tmp_path / 'run'))
  videos = loading.load_data(config)['test']
  apply_fn = jax.jit(models.CLIPIt(config.model).apply)
  scores = benchmark_eval.score_videos(apply_fn, state.params, videos, config.model.window)
  for s in scores:
    assert np.std(s) > 0.02, np.std(s)
    assert 0.05 < np.mean(s) < 0.95, np.mean(s)

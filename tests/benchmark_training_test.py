"""Training on the benchmark-shaped stand-ins through the real builders: both targets, the losses."""

import json

import jax
import numpy as np
import pytest

from clipit_jax import evaluators
from clipit_jax import models
from clipit_jax import train
from clipit_jax.datasets import loading
from testutil import tiny_config


@pytest.mark.parametrize('target', ['keyframes', 'importance'])
def test_both_targets_train(standin_data_dir, tmp_path, target):
  config = tiny_config(
    'tvsum_standard', standin_data_dir, target=target, test_every_epoch=True, num_epochs=2
  )
  state = train.train_and_evaluate(config, str(tmp_path / target))
  with open(tmp_path / target / 'metrics.jsonl') as f:
    lines = [json.loads(line) for line in f]
  assert [m['epoch'] for m in lines] == [1, 2]
  assert all({'test_f1', 'test_kendall', 'test_spearman'} <= set(m) for m in lines)
  assert lines[-1]['train_classification'] < lines[0]['train_classification']
  videos = loading.load_data(config)['train']
  if target == 'importance':  # The min-max normalised gtscore of each video.
    assert all(v.importance.min() == 0 and v.importance.max() == 1 for v in videos)
  assert int(state.step) == 2 * -(-sum(-(-len(v.features) // 64) for v in videos) // 4)


def test_unsupervised_length_term_pulls_scores_towards_the_summary_rate(standin_data_dir, tmp_path):
  """Ld + Lr alone drive every score up; the length term holds the mean towards 0.15."""
  means = {}
  for rate in (None, 0.15):
    config = tiny_config(
      'tvsum_standard_unsupervised', standin_data_dir, num_epochs=6, summary_rate=rate
    )
    state = train.train_and_evaluate(config, str(tmp_path / f'run_{rate}'))
    videos = loading.load_data(config)['test']
    apply_fn = jax.jit(models.CLIPIt(config.model).apply)
    scores = evaluators.score_videos(apply_fn, state.params, videos, config.model.window)
    assert all(np.std(s) > 1e-3 for s in scores), [np.std(s) for s in scores]
    means[rate] = np.mean(np.concatenate(scores))
  assert means[None] > 0.6, means
  assert means[0.15] < means[None] - 0.2, means

"""The ablation command: variant configs, resumable runs, reference rows and the tables."""

import json
import os

import numpy as np
import pytest

from clipit_jax import ablations
from clipit_jax import experiments
from clipit_jax import train
from testutil import tiny_config


def test_variant_configs():
  base = tiny_config('tvsum_standard', '/unused')
  for name, variant in ablations.VARIANTS.items():
    config = ablations.variant_config(base, name, seed=7)
    assert config.seed == 7 and config.model.cross_modal == variant.cross_modal
    if 'classification' in variant.terms:
      assert config.loss == 'supervised'
      for term, paper in (('classification', 0.5), ('diversity', 0.3), ('reconstruction', 0.2)):
        assert config.loss_weights[term] == (paper if term in variant.terms else 0.0), name
    else:
      assert config.loss == 'unsupervised'
  assert base.seed == 0 and base.loss_weights.diversity == 0.3  # The base is not changed.


def test_ablations_write_tables_and_skip_finished_runs(standin_data_dir, tmp_path, monkeypatch):
  base = tiny_config('tvsum_standard', standin_data_dir, num_epochs=1)
  workdir = str(tmp_path / 'ablations')
  markdown = ablations.run_ablations(base, workdir, ['lc', 'mlp'], [0, 1], 'configs/x.py')
  with open(os.path.join(workdir, 'table.json')) as f:
    table = json.load(f)
  assert set(table['variants']) == {'lc', 'mlp'} and table['seeds'] == [0, 1]
  for variant in ('lc', 'mlp'):
    runs = [
      experiments.finished_result(
        ablations.variant_config(base, variant, s), os.path.join(workdir, variant, f'seed_{s}')
      )
      for s in (0, 1)
    ]
    mean, std = table['variants'][variant]['kendall']
    kendalls = [r['metrics']['kendall'] for r in runs]
    assert mean == pytest.approx(np.mean(kendalls)) and std == pytest.approx(np.std(kendalls))
  references = table['references']
  assert {
    'random scores',
    'linear probe on keyframes (gtsummary)',
    'linear probe on importance (gtscore)',
    "the annotators' mean score (ground truth)",
  } == set(references)
  # The ground truth ranks itself perfectly against the mean of its annotators only in
  # aggregate; against each annotator it is imperfect but far above random.
  assert references["the annotators' mean score (ground truth)"]['kendall'][0] > 0.2
  assert abs(references['random scores']['kendall'][0]) < 0.1
  assert '| 2 | Lc |' in markdown and '| 3 | CLIP-It with an MLP' in markdown
  # Run again: every run is finished, so nothing trains.
  monkeypatch.setattr(train, 'train_and_evaluate', lambda *a: pytest.fail('retrained'))
  assert ablations.run_ablations(base, workdir, ['lc', 'mlp'], [0, 1], 'configs/x.py') == markdown

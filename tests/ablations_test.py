"""The ablation command: variant configs, resumable runs, reference rows and the tables."""

import json
import os

import ml_collections
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
  """Two variants trained for real (one seed each: the mean and std over seeds are checked on
  hand-made runs below), the reference rows on the same videos, and a re-run that trains nothing.
  'full' is the model the other stand-in tests train: its step comes from the compile cache."""
  base = tiny_config('tvsum_standard', standin_data_dir, num_epochs=1)
  workdir = str(tmp_path / 'ablations')
  markdown = ablations.run_ablations(base, workdir, ['full', 'mlp'], [3], 'configs/x.py')
  with open(os.path.join(workdir, 'table.json')) as f:
    table = json.load(f)
  assert set(table['variants']) == {'full', 'mlp'} and table['seeds'] == [3]
  for variant in ('full', 'mlp'):
    config = ablations.variant_config(base, variant, 3)
    run = experiments.finished_result(config, os.path.join(workdir, variant, 'seed_3'))
    assert run['config']['seed'] == 3
    assert run['config']['model']['cross_modal'] == ablations.VARIANTS[variant].cross_modal
    assert table['variants'][variant]['kendall'] == pytest.approx([run['metrics']['kendall'], 0])
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
  assert '| 2 | Lc + Ld + Lr (CLIP-It) |' in markdown and '| 3 | CLIP-It with an MLP' in markdown
  assert table['config_values']['learning_rate'] == base.learning_rate
  # Run again: every run is finished, so nothing trains.
  monkeypatch.setattr(train, 'train_and_evaluate', lambda *a: pytest.fail('retrained'))
  assert ablations.run_ablations(base, workdir, ['full', 'mlp'], [3], 'configs/x.py') == markdown
  # Another learning rate: refused before anything trains, not the old runs relabelled.
  other = ml_collections.ConfigDict(base.to_dict())
  other.learning_rate = base.learning_rate * 2
  with pytest.raises(
    ValueError, match=r'full/seed_3 holds a run of another config \(learning_rate'
  ):
    ablations.run_ablations(other, workdir, ['full', 'mlp'], [3], 'configs/x.py')
  with pytest.raises(ValueError, match='no seeds; give one or more'):
    ablations.run_ablations(base, workdir, ['full'], [], 'configs/x.py')


def test_tables_give_mean_and_population_std_over_seeds(tmp_path):
  def run(f1, kendall, spearman, epoch):
    return dict(metrics=dict(f1=f1, kendall=kendall, spearman=spearman), epoch=epoch, seconds=60)

  results = dict(
    split=0,
    seeds=[0, 1],
    runs={'full': [run(40.0, 0.1, 0.2, 3), run(50.0, 0.3, 0.4, 5)]},
  )
  references = {'random scores': [dict(f1=20.0, kendall=0.0, spearman=0.0)] * 2}
  markdown = ablations.write_tables(str(tmp_path), 'configs/x.py', results, references)
  with open(tmp_path / 'table.json') as f:
    table = json.load(f)
  # By hand: mean (0.1 + 0.3) / 2 = 0.2, population std sqrt((0.1^2 + 0.1^2) / 2) = 0.1.
  assert table['variants']['full']['kendall'] == pytest.approx([0.2, 0.1])
  assert table['variants']['full']['f1'] == pytest.approx([45.0, 5.0])
  assert table['variants']['full']['epochs'] == [3, 5]
  assert table['references']['random scores']['f1'] == pytest.approx([20.0, 0.0])
  assert (
    '| 2 | Lc + Ld + Lr (CLIP-It) | 45.0 ± 5.0 | 0.200 ± 0.100 | 0.300 ± 0.100 | 3, 5 | 1.0 |'
    in markdown
  )
  assert (tmp_path / 'table.md').read_text() == markdown

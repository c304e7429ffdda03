"""The dataset registry: light to import, one spec per dataset, loading through it."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from clipit_jax import evaluators
from clipit_jax import input_pipeline
from clipit_jax.datasets import errors
from clipit_jax.datasets import loading
from clipit_jax.datasets import registry
from clipit_jax.media import encoders
from configs import synthetic as synthetic_config


def test_the_registry_imports_neither_tfds_nor_jax():
  code = (
    'import sys\n'
    'from clipit_jax.datasets import registry\n'
    "print(registry.clip_of_features('clip'), registry.declared_names())\n"
    "print(sorted(m for m in ('tensorflow_datasets', 'jax', 'tensorflow') if m in sys.modules))\n"
  )
  out = subprocess.run(
    [sys.executable, '-c', code], capture_output=True, text=True, check=True
  ).stdout.splitlines()
  assert out == [f"{encoders.DEFAULT_CLIP} ['qfvs', 'summe', 'synthetic', 'tvsum']", '[]']


def test_every_builder_config_matches_its_registered_features():
  specs = [registry.get(name) for name in registry.names(loadable=False)]
  assert [s.name for s in specs] == ['ovp', 'qfvs', 'summe', 'synthetic', 'tvsum', 'youtube']
  assert registry.declared_names(loadable=False) == registry.names(loadable=False)
  for spec in specs:
    configs = tfds.builder_cls(spec.builder).BUILDER_CONFIGS
    assert tuple(c.name for c in configs) == spec.features
    for config in configs:
      features = registry.FEATURES[config.name]
      assert config.clip_model == features.clip_model, (spec.name, config.name)
      assert getattr(config, 'feature_dim', 512) == features.dim, (spec.name, config.name)
  assert registry.FEATURES['tiny'].clip_model == encoders.TINY
  assert registry.clip_of_features('googlenet') is None and registry.clip_of_features(None) is None
  assert [registry.get(n).f1_reduction for n in ('summe', 'tvsum', 'synthetic')] == [
    'max',
    'avg',
    'avg',
  ]


def test_unknown_names_are_one_line_naming_the_known_ones():
  with pytest.raises(
    ValueError, match=r"unknown dataset 'sume'; expected one of \['qfvs', 'summe'"
  ):
    registry.get('sume')
  with pytest.raises(ValueError, match=r"unknown features 'vgg'; expected one of \['clip'"):
    registry.feature_spec('vgg')
  with pytest.raises(ValueError, match='registered twice'):
    registry.register(dataclasses.replace(registry.get('summe'), f1_reduction='avg'))
  with pytest.raises(ValueError, match='no features'):
    config = synthetic_config.get_config()
    config.data.features = 'googlenet'
    loading.load_data(config)
  config = synthetic_config.get_config()
  config.data.setting = 'augment'
  with pytest.raises(
    ValueError, match=r"synthetic has no setting 'augment'; expected one of \['standard'\]"
  ):
    loading.load_data(config)
  assert registry.get('tvsum').settings == ('standard', 'augment', 'transfer')
  config = synthetic_config.get_config()
  config.data.dataset = 'ovp'
  with pytest.raises(ValueError, match='ovp only augments the training data of others'):
    loading.load_data(config)


def _toy_video(key: str, width: int) -> input_pipeline.Video:
  truth = evaluators.QfvsTruth(
    np.zeros(4, int), np.ones((1, 1), bool), np.ones(1), np.ones((3, 1)), 'q'
  )
  return input_pipeline.Video(
    ref=('toy', key),
    features=np.zeros((4, width), np.float32),
    labels=np.zeros(4, np.float32),
    importance=np.zeros(4, np.float32),
    text=np.zeros((1, 512), np.float32),
    text_mask=np.ones(1, bool),
    truth=truth,
  )


def test_a_registered_dataset_loads_through_load_data_and_num_splits(monkeypatch):
  monkeypatch.setattr(registry, '_SPECS', dict(registry._SPECS))  # 'toy' for this test only.
  seen = []

  def load(data, num_captions):
    seen.append((data.split, num_captions))
    return dict(train=[_toy_video('a', 512)], validation=[], test=[_toy_video('b', 512)])

  registry.register(
    registry.DatasetSpec(
      name='toy',
      title='Toy',
      features=('tiny',),
      load=load,
      num_splits=lambda data: 3,
    )
  )
  config = synthetic_config.get_config()
  config.data.dataset, config.data.split = 'toy', 2
  data = loading.load_data(config)
  assert [v.ref for v in data['train'] + data['test']] == [('toy', 'a'), ('toy', 'b')]
  assert seen == [(2, config.model.num_captions)] and loading.num_splits(config.data) == 3
  assert 'toy' in registry.names() and 'toy' in registry.declared_names()
  config.model.frame_dim = 1024
  with pytest.raises(errors.DatasetError, match='config.model.frame_dim is 1024; set it to 512'):
    loading.load_data(config)

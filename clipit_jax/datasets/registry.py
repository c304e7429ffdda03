"""The datasets a run can name (`config.data.dataset`), one `DatasetSpec` each.

A dataset is one module of this package: its TFDS builder, the function that turns the
built records into train/validation/test videos, and one line that registers its spec,

    SPEC = registry.register(registry.DatasetSpec(name='synthetic', ...))

(docs/adding_a_dataset.md). `get(name)` imports `clipit_jax.datasets.<name>` when no
module has registered `name` yet, so a new dataset needs no line anywhere else; a module
may register several datasets (summe_tvsum.py registers SumMe, TVSum, YouTube and OVP).

This module imports neither TensorFlow Datasets nor JAX: the feature configs (`FEATURES`:
which CLIP encoded the frames, and their width) are read by inference and by configs
without loading any dataset.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import os
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
  import ml_collections

  from clipit_jax import input_pipeline

  Splits = dict[str, list[input_pipeline.Video]]

# The CLIP image encoders behind the feature configs (as named in clipit_jax.media.encoders).
TINY_CLIP = 'tiny'
VIT_B32 = 'openai/clip-vit-base-patch32'


@dataclasses.dataclass(frozen=True)
class Features:
  """A builder config's frame features: the CLIP image encoder that made them (None: not
  CLIP features, so a trained model cannot summarize raw videos) and their width."""

  clip_model: str | None
  dim: int


# Builder config name -> its features. Shared by the datasets: 'clip' is CLIP ViT-B/32 on
# SumMe/TVSum/YouTube/OVP and QFVS alike.
FEATURES: dict[str, Features] = {
  'googlenet': Features(clip_model=None, dim=1024),  # The eccv16 files' GoogLeNet pool5.
  'clip': Features(clip_model=VIT_B32, dim=512),
  'clip_tiny': Features(clip_model=TINY_CLIP, dim=512),
  'tiny': Features(clip_model=TINY_CLIP, dim=512),
  'small': Features(clip_model=TINY_CLIP, dim=512),  # The synthetic benchmark's 12 videos.
  'vit_b32': Features(clip_model=VIT_B32, dim=512),
}


def register_features(name: str, features: Features) -> Features:
  """Adds a feature config (a dataset module whose builder config is new calls this)."""
  if FEATURES.get(name, features) != features:
    raise ValueError(f'feature config {name!r} is already {FEATURES[name]}, not {features}')
  FEATURES[name] = features
  return features


def feature_spec(name: str) -> Features:
  """The features of builder config `name`; a ValueError naming the known ones otherwise."""
  if name not in FEATURES:
    raise ValueError(f'unknown features {name!r}; expected one of {sorted(FEATURES)}')
  return FEATURES[name]


def clip_of_features(name: str | None) -> str | None:
  """The CLIP image encoder behind feature config `name`; None when they are not CLIP's."""
  features = FEATURES.get(name) if name else None
  return features.clip_model if features else None


def standard_num_splits(data: ml_collections.ConfigDict) -> int:
  """5 standard splits, 1 for the transfer setting (which tests on the whole target)."""
  from clipit_jax.datasets import settings  # pylint: disable=g-import-not-at-top

  return 1 if data.setting == 'transfer' else settings.NUM_STANDARD_SPLITS


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What the rest of the code needs to know about one dataset.

  name: the `config.data.dataset` value. title: its name in tables ('SumMe'). features:
  its builder configs, each a key of `FEATURES`. load: `(config.data, num_captions) ->
  {'train', 'validation', 'test'}` lists of `input_pipeline.Video`, ground truth included;
  None for a dataset that is only read to augment others (YouTube, OVP). num_splits: how
  many splits `config.data.split` ranges over when no split file is given. settings: the
  `config.data.setting` values it has ('augment' and 'transfer': SumMe and TVSum, see
  settings.py). f1_reduction: how keyshot F1 combines the user summaries, 'max'
  (best-matching user, SumMe) or 'avg'. builder: the TFDS builder's name, `clipit_<name>`
  unless given.
  """

  name: str
  title: str
  features: tuple[str, ...]
  load: Callable[[ml_collections.ConfigDict, int], Splits] | None
  num_splits: Callable[[ml_collections.ConfigDict], int] = standard_num_splits
  settings: tuple[str, ...] = ('standard',)
  f1_reduction: str = 'avg'
  builder: str = ''

  def __post_init__(self):
    if not self.builder:
      object.__setattr__(self, 'builder', f'clipit_{self.name}')
    for name in self.features:
      feature_spec(name)
    if self.f1_reduction not in ('max', 'avg'):
      raise ValueError(f"{self.name}: f1_reduction must be 'max' or 'avg'")


_SPECS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
  """Adds `spec` (once per name; registering the same spec again is harmless)."""
  if _SPECS.get(spec.name, spec) != spec:
    raise ValueError(f'dataset {spec.name!r} is registered twice, differently')
  _SPECS[spec.name] = spec
  return spec


def _import_all() -> None:
  """Imports every module of this package, so that each registers its datasets."""
  package = importlib.import_module('clipit_jax.datasets')
  for module in pkgutil.iter_modules(package.__path__):
    importlib.import_module(f'clipit_jax.datasets.{module.name}')


def names(*, loadable: bool = True) -> list[str]:
  """Every registered dataset's name, sorted; with `loadable`, only those a run can train on."""
  _import_all()
  return sorted(n for n, s in _SPECS.items() if s.load is not None or not loadable)


def declared_names(*, loadable: bool = True) -> list[str]:
  """`names()` without importing a dataset module: read from the modules' source.

  For checks that run before the heavy imports (config_checks). A module declares a
  dataset with a `DatasetSpec(name='<literal>', ...)` call; `load=None` marks one that
  only augments others.
  """
  found = {n for n, s in _SPECS.items() if s.load is not None or not loadable}
  directory = os.path.dirname(os.path.abspath(__file__))
  for filename in sorted(os.listdir(directory)):
    if not filename.endswith('.py'):
      continue
    with open(os.path.join(directory, filename), encoding='utf-8') as f:
      tree = ast.parse(f.read(), filename)
    for node in ast.walk(tree):
      func = getattr(node, 'func', None)
      if getattr(func, 'attr', getattr(func, 'id', None)) != 'DatasetSpec':
        continue
      args = {k.arg: k.value for k in node.keywords}
      name, load = args.get('name'), args.get('load')
      augments_only = isinstance(load, ast.Constant) and load.value is None
      if isinstance(name, ast.Constant) and not (loadable and augments_only):
        found.add(name.value)
  return sorted(found)


def get(name: str) -> DatasetSpec:
  """The spec of dataset `name`, importing `clipit_jax.datasets.<name>` if needed."""
  if name not in _SPECS and isinstance(name, str) and name.isidentifier():
    try:
      importlib.import_module(f'clipit_jax.datasets.{name}')
    except ModuleNotFoundError as e:
      if e.name != f'clipit_jax.datasets.{name}':
        raise
  if name not in _SPECS:
    _import_all()
  if name not in _SPECS:
    raise ValueError(f'unknown dataset {name!r}; expected one of {names()}')
  return _SPECS[name]

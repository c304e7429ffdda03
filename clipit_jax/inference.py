"""A trained run loaded to score videos: its config (merged over the defaults) and parameters.

eval.py, the summarizer, the batch command and the demo load runs through here:

  config, params, epoch = load_trained('runs/synthetic', 'best')
  model = load_model('runs/synthetic')            # TrainedModel: .score(features, text)
  result = evaluate_checkpoint('runs/synthetic', 'test')

Only the parameters are read, never the optimizer state. This module imports neither
the trainer nor the dataset loaders (`evaluate_checkpoint` reads the data set when called).
"""

import dataclasses
import functools
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from clipit_jax import checkpoints
from clipit_jax import evaluators
from clipit_jax import files
from clipit_jax import models
from clipit_jax.datasets import registry

FRAME_DIM = 512  # CLIP features; checkpoints of other widths cannot summarize videos.
SPLITS = ('train', 'validation', 'test')


def load_trained(workdir: str, which: str = 'best') -> tuple[ml_collections.ConfigDict, Any, int]:
  """The saved config, the parameters of the `which` checkpoint ('best' or 'latest'), its epoch.

  The parameters are read onto this host's first device.
  """
  config = checkpoints.load_config(workdir)
  manager = checkpoints.make_manager(workdir, config.best_metric, read_only=True)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  shapes = jax.eval_shape(
    functools.partial(models.init_params, config.model), jax.random.PRNGKey(0)
  )
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), shapes)
  try:
    params, epoch = checkpoints.restore(manager, target, which, params_only=True)
  finally:
    manager.close()  # Its threads would otherwise outlive a failed restore at exit.
  return config, params, epoch


@dataclasses.dataclass(eq=False)
class TrainedModel:
  """A CLIP-It checkpoint ready to score frames.

  Attributes:
    workdir: the train.py run directory.
    which: 'best' or 'latest'.
    epoch: the checkpoint's epoch.
    config: the run's config.
    params: the model parameters.
    clip_model: the CLIP its training features came from (None: unknown).
  """

  workdir: str
  which: str
  epoch: int
  config: Any
  params: Any
  clip_model: str | None

  @property
  def text_fusion(self) -> str:
    return self.config.model.text_fusion

  @functools.cached_property
  def apply_fn(self):
    return jax.jit(models.CLIPIt(self.config.model).apply)

  def score(self, features: np.ndarray, text: np.ndarray) -> np.ndarray:
    """[n, 512] frame features, [L, 512] text -> [n] scores in (0, 1)."""
    scores = evaluators.score_video(
      self.apply_fn,
      self.params,
      np.asarray(features, np.float32),
      np.asarray(text, np.float32),
      np.ones(len(text), bool),
      self.config.model.window,
    )
    return np.asarray(scores, np.float64)


def load_model(workdir: files.PathLike, which: str = 'best') -> TrainedModel:
  """Loads a train.py run for summarizing raw videos.

  Raises:
    CheckpointError: not a run directory, a config.json that does not check, no
      checkpoint, or a model that does not take CLIP features (e.g. trained on GoogLeNet
      features).
  """
  workdir = os.fspath(workdir)
  config = checkpoints.load_config(workdir)  # Checks that it is a run's directory first.
  features = config.data.features
  for field in ('frame_dim', 'text_dim'):
    if config.model[field] != FRAME_DIM:
      kind = 'frame features' if field == 'frame_dim' else 'text embeddings'
      raise checkpoints.CheckpointError(
        f'{workdir}: the model takes {config.model[field]}-d {kind} (model.{field}, '
        f'data.features={features!r}), not {FRAME_DIM}-d CLIP ones; only runs trained on '
        'CLIP features can summarize videos'
      )
  config, params, epoch = load_trained(workdir, which)
  return TrainedModel(
    workdir=workdir,
    which=which,
    epoch=int(epoch),
    config=config,
    params=params,
    clip_model=registry.clip_of_features(features),
  )


def evaluate_checkpoint(workdir: str, split: str = 'test', which: str = 'best') -> dict[str, Any]:
  """Evaluates a run's checkpoint on one of its data splits with the saved config.

  Returns {'metrics': mean over videos, 'rows': per video, 'epoch', 'checkpoint',
  'split', 'videos', 'split_fingerprint'} and, for a run on a split file, 'splits_file':
  {'name', 'path', 'sha256', 'entry'}.
  """
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; expected 'train', 'validation' or 'test'")
  # The dataset loaders pull in TensorFlow Datasets: only here, where the data is read.
  # pylint: disable=g-import-not-at-top
  from clipit_jax.datasets import loading
  from clipit_jax.datasets import settings
  from clipit_jax.datasets import split_files

  config, params, epoch = load_trained(workdir, which)
  videos = loading.load_data(config)[split]
  result = evaluators.evaluate_videos(
    jax.jit(models.CLIPIt(config.model).apply), params, videos, config.model.window
  )
  refs = [v.ref for v in videos]
  result.update(
    epoch=epoch,
    checkpoint=which,
    split=split,
    videos=[list(r) for r in refs],
    split_fingerprint=settings.split_fingerprint(refs),
  )
  if config.data.splits_file:
    result['splits_file'] = split_files.read(config.data.splits_file).record(config.data.split)
  return result

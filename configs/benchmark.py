"""Shared by the SumMe/TVSum configs: one benchmark setting on top of the paper's values.

Features: 'googlenet' (the eccv16 files' own 1024-d features; what most users have) or
'clip' (CLIP ViT-B/32 on the raw videos, as in the paper). Choose with a suffix:
  python train.py --config configs/summe_transfer.py:clip --workdir runs/summe_transfer_clip
"""

from clipit_jax.datasets import benchmarks
from configs import default


def get_config(dataset: str, setting: str, features: str = 'googlenet', loss: str = 'supervised'):
  config = default.get_config()
  config.data.dataset = dataset
  config.data.setting = setting
  config.data.features = features
  config.model.frame_dim = benchmarks.feature_dim(features)
  config.loss = loss
  return config

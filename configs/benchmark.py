"""Shared by the SumMe/TVSum configs: one benchmark setting on top of the paper's values.

Features: 'googlenet' (the eccv16 files' own 1024-d features; what most users have) or
'clip' (CLIP ViT-B/32 on the raw videos, as in the paper). Choose with a suffix:
  python train.py --config configs/summe_transfer.py:clip --workdir runs/summe_transfer_clip
"""

from configs import default

FEATURE_DIMS = {'googlenet': 1024, 'clip': 512, 'clip_tiny': 512}


def get_config(dataset: str, setting: str, features: str = 'googlenet', loss: str = 'supervised'):
  if features not in FEATURE_DIMS:
    raise ValueError(f'unknown features {features!r}; expected one of {sorted(FEATURE_DIMS)}')
  config = default.get_config()
  config.data.dataset = dataset
  config.data.setting = setting
  config.data.features = features
  config.model.frame_dim = FEATURE_DIMS[features]
  config.loss = loss
  return config

"""TVSum, Standard setting: 5 random 80/20 splits of TVSum (--config.data.split=0..4, or train.py --all_splits).

Unsupervised loss Ld + Lr (no labels are read). Append :clip to the config path for CLIP features of the raw videos.
  python train.py --config configs/tvsum_standard_unsupervised.py --workdir runs/tvsum_standard_unsupervised
"""

from configs import summe_tvsum


def get_config(features='googlenet'):
  return summe_tvsum.get_config('tvsum', 'standard', features, loss='unsupervised')

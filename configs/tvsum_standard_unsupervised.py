"""TVSum, Standard setting: 5 random 80/20 splits of TVSum (--config.data.split=0..4, or train.py --all_splits).

Unsupervised loss Ld + Lr (no labels are read). Append :clip for CLIP features of the raw videos, :paper for the paper's exact values (:clip,paper both).
  python train.py --config configs/tvsum_standard_unsupervised.py --workdir runs/tvsum_standard_unsupervised
"""

from configs import summe_tvsum


def get_config(variant='googlenet'):
  return summe_tvsum.get_config('tvsum', 'standard', variant, loss='unsupervised')

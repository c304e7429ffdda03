"""TVSum, Standard setting: 5 random 80/20 splits of TVSum (--config.data.split=0..4, or train.py --all_splits).

Supervised loss 0.5 Lc + 0.3 Ld + 0.2 Lr. Append :clip for CLIP features of the raw videos, :paper for the paper's exact values (:clip,paper both).
  python train.py --config configs/tvsum_standard.py --workdir runs/tvsum_standard
"""

from configs import summe_tvsum


def get_config(variant='googlenet'):
  return summe_tvsum.get_config('tvsum', 'standard', variant, loss='supervised')

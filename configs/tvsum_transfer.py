"""TVSum, Transfer setting: train on the other three datasets, test on the whole of TVSum.

Supervised loss 0.5 Lc + 0.3 Ld + 0.2 Lr. Append :clip for CLIP features of the raw videos, :paper for the paper's exact values (:clip,paper both).
  python train.py --config configs/tvsum_transfer.py --workdir runs/tvsum_transfer
"""

from configs import summe_tvsum


def get_config(variant='googlenet'):
  return summe_tvsum.get_config('tvsum', 'transfer', variant, loss='supervised')

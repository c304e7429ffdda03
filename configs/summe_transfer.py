"""SumMe, Transfer setting: train on the other three datasets, test on the whole of SumMe.

Supervised loss 0.5 Lc + 0.3 Ld + 0.2 Lr. Append :clip for CLIP features of the raw videos, :paper for the paper's exact values (:clip,paper both).
  python train.py --config configs/summe_transfer.py --workdir runs/summe_transfer
"""

from configs import summe_tvsum


def get_config(variant='googlenet'):
  return summe_tvsum.get_config('summe', 'transfer', variant, loss='supervised')

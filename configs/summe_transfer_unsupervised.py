"""SumMe, Transfer setting: train on the other three datasets, test on the whole of SumMe.

Unsupervised loss Ld + Lr (no labels are read). Append :clip for CLIP features of the raw videos, :paper for the paper's exact values (:clip,paper both).
  python train.py --config configs/summe_transfer_unsupervised.py --workdir runs/summe_transfer_unsupervised
"""

from configs import summe_tvsum


def get_config(variant='googlenet'):
  return summe_tvsum.get_config('summe', 'transfer', variant, loss='unsupervised')

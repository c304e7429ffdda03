"""SumMe, Augment setting: the training part of a standard split plus all of the other three datasets.

Supervised loss 0.5 Lc + 0.3 Ld + 0.2 Lr. Append :clip for CLIP features of the raw videos, :paper for the paper's exact values (:clip,paper both).
  python train.py --config configs/summe_augment.py --workdir runs/summe_augment
"""

from configs import summe_tvsum


def get_config(variant='googlenet'):
  return summe_tvsum.get_config('summe', 'augment', variant, loss='supervised')

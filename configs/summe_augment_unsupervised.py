"""SumMe, Augment setting: the training part of a standard split plus all of the other three datasets.

Unsupervised loss Ld + Lr (no labels are read). Append :clip for CLIP features of the raw videos, :paper for the paper's exact values (:clip,paper both).
  python train.py --config configs/summe_augment_unsupervised.py --workdir runs/summe_augment_unsupervised
"""

from configs import summe_tvsum


def get_config(variant='googlenet'):
  return summe_tvsum.get_config('summe', 'augment', variant, loss='unsupervised')

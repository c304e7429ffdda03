"""SumMe, Transfer setting: train on the other three datasets, test on the whole of SumMe.

Unsupervised loss Ld + Lr (no labels are read). Append :clip to the config path for CLIP features of the raw videos.
  python train.py --config configs/summe_transfer_unsupervised.py --workdir runs/summe_transfer_unsupervised
"""

from configs import summe_tvsum


def get_config(features='googlenet'):
  return summe_tvsum.get_config('summe', 'transfer', features, loss='unsupervised')

"""Trains CLIP-It: `python train.py --config configs/X.py --workdir runs/X`.

Training (`clipit_jax.train.train_and_evaluate`) lands with the training issue; until
then this script says so and exits non-zero rather than pretend to train.
"""

import sys

USAGE = ('usage: python train.py --config configs/<setting>.py --workdir runs/<setting>\n'
         'train.py: training is not implemented yet (the model, losses and train_step are in '
         'clipit_jax/; train_and_evaluate lands with the training issue)')

if __name__ == '__main__':
  print(USAGE, file=sys.stderr)
  sys.exit(2)

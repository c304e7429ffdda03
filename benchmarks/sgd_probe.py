"""How many updates a per-frame linear score needs by gradient descent, against its closed form.

The validated probe (`baselines.validated_probe`) is least squares on gtscore: the best a
linear map of one frame does, found in one solve. A network meets the same noisy 1024-d
features through Adam on minibatches. This trains only a linear score of each frame
(centred per video and LayerNorm-ed, as `model.center_frames` and `model.input_norm` give the
network) with the network's importance loss (squared error of the sigmoid against the
min-max normalised gtscore), one training video an update, and prints the test Kendall tau
after a number of updates beside the closed-form probe fitted on the same videos.

    python benchmarks/sgd_probe.py --manual_dir /tmp/standins --dataset summe --lr 3e-3
"""

import argparse
import os
import sys

import numpy as np


def normalise(features: np.ndarray) -> np.ndarray:
  """`[T, D]` centred on the video's mean frame, then each frame to zero mean, unit variance."""
  x = features - features.mean(axis=0)
  return (x - x.mean(axis=1, keepdims=True)) / (x.std(axis=1, keepdims=True) + 1e-6)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--manual_dir', required=True)
  parser.add_argument('--dataset', default='summe')
  parser.add_argument('--split', type=int, default=0)
  parser.add_argument('--lr', type=float, default=1e-3)
  parser.add_argument('--checkpoints', default='100,300,1000,2000')
  args = parser.parse_args()
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp
  import optax
  import recipe_sweep

  from clipit_jax import baselines, evaluators

  videos = recipe_sweep.load_videos(args.dataset, args.manual_dir, 7)
  data = recipe_sweep.split_videos(videos, args.dataset, args.split, 0.1)
  train, test = data['train'], data['test']
  closed = baselines.LinearProbe.fit([v.features for v in train], [v.importance for v in train])
  tau = evaluators.evaluate_scores(test, [closed(v.features) for v in test])['metrics']['kendall']
  print(f'{args.dataset} split {args.split}: closed-form probe (training videos) tau {tau:.3f}')
  inputs = [normalise(v.features) for v in train]
  test_inputs = [normalise(v.features) for v in test]
  tx = optax.adam(args.lr)
  params = (jnp.zeros(inputs[0].shape[1]), jnp.zeros(()))
  state = tx.init(params)

  @jax.jit
  def step(params, state, x, y):
    def loss(p):
      return jnp.mean(jnp.square(jax.nn.sigmoid(x @ p[0] + p[1]) - y))

    updates, state = tx.update(jax.grad(loss)(params), state, params)
    return optax.apply_updates(params, updates), state

  checkpoints = [int(c) for c in args.checkpoints.split(',')]
  rng = np.random.default_rng(0)
  for i in range(1, max(checkpoints) + 1):
    k = rng.integers(len(inputs))
    params, state = step(params, state, inputs[k], train[k].importance)
    if i in checkpoints:
      scores = [np.asarray(x @ params[0]) for x in test_inputs]
      tau = evaluators.evaluate_scores(test, scores)['metrics']['kendall']
      print(f'  Adam lr {args.lr:g}, {i} updates ({i / len(train):.0f} epochs): tau {tau:.3f}')


if __name__ == '__main__':
  main()

"""Why a recipe does or does not beat the linear probe on the SumMe/TVSum stand-ins.

Three diagnostics on one Standard split (the stand-ins and splits of `recipe_sweep.py`):

    python benchmarks/standin_diagnostics.py probe-smoothing --manual_dir /tmp/standins
    python benchmarks/standin_diagnostics.py fit-curve --manual_dir /tmp/standins \\
        --dataset summe --recipe context --epochs 24
    python benchmarks/standin_diagnostics.py rarity-fit --manual_dir /tmp/standins \\
        --dataset summe --recipe context --epochs 30 [--rotate]

probe-smoothing: test Kendall tau of the validated probe (`baselines.validated_probe`) after a
moving average of `--smoothing` frames over its scores (1: the per-frame probe itself).
fit-curve: a recipe's Kendall tau on its training, validation and test videos every
`--eval_every` epochs, raw and smoothed: does it under- or over-fit, and what is smoothing
worth to it? rarity-fit: the recipe trained (Lc alone) with each window's
`recipe_sweep.windowed_rarity` as its importance target, and the Kendall tau of its scores
against that rarity on training and test videos: can the network compute a within-window
relation, or does it memorise which content is rare in each training video? `--rotate` turns
each training batch's features by a fresh random rotation, so that memorising content cannot
fit the target. One JSON line per evaluation on stdout.
"""

import argparse
import dataclasses
import json
import time

import numpy as np
import recipe_sweep
import scipy.ndimage
import scipy.stats


def smoothed(scores: np.ndarray, frames: int) -> np.ndarray:
  """Moving average of `frames` steps over `[n]` scores (edges repeat the end values)."""
  return scipy.ndimage.uniform_filter1d(np.asarray(scores, np.float64), frames, mode='nearest')


def kendall(videos, scores) -> float:
  """Mean test Kendall tau of `scores` on `videos` (`evaluators.evaluate_scores`)."""
  from clipit_jax import evaluators  # pylint: disable=g-import-not-at-top

  return evaluators.evaluate_scores(videos, scores)['metrics']['kendall']


def probe_smoothing(args) -> None:
  from clipit_jax import baselines  # pylint: disable=g-import-not-at-top

  for dataset in args.datasets.split(','):
    videos = recipe_sweep.load_videos(dataset, args.manual_dir, 7)
    for split in args.splits:
      data = recipe_sweep.split_videos(videos, dataset, split, args.validation_fraction)
      probe = baselines.validated_probe(data['train'], data['validation'], 'importance')
      test = data['test']
      taus = {
        k: kendall(test, [smoothed(probe(v.features), k) for v in test]) for k in args.smoothing
      }
      print(json.dumps(dict(dataset=dataset, split=split, probe_test_tau=taus)), flush=True)


def fit_curve(args) -> None:
  config = recipe_sweep.make_config(args.dataset, args.recipe, args.split, args.seed, args.epochs)
  videos = recipe_sweep.load_videos(args.dataset, args.manual_dir, config.model.num_captions)
  data = recipe_sweep.split_videos(videos, args.dataset, args.split, args.validation_fraction)
  start = time.time()
  for epoch, apply, params, _ in recipe_sweep.training_epochs(config, data['train']):
    if epoch % args.eval_every and epoch != config.num_epochs:
      continue
    taus = {}
    for part, vs in data.items():
      scores = recipe_sweep.score_videos(apply, params, vs, config.model.window)
      taus[part] = {k: kendall(vs, [smoothed(s, k) for s in scores]) for k in args.smoothing}
    line = dict(recipe=args.recipe, dataset=args.dataset, split=args.split, seed=args.seed)
    print(json.dumps(dict(line, epoch=epoch, tau=taus, seconds=time.time() - start)), flush=True)


def rarity_fit(args) -> None:
  from clipit_jax import protocol  # pylint: disable=g-import-not-at-top

  config = recipe_sweep.make_config(args.dataset, args.recipe, args.split, args.seed, args.epochs)
  config.loss_weights.update(classification=1.0, diversity=0.0, reconstruction=0.0)
  window = config.model.window
  videos = recipe_sweep.load_videos(args.dataset, args.manual_dir, config.model.num_captions)
  data = recipe_sweep.split_videos(videos, args.dataset, args.split, args.validation_fraction)
  data = {
    part: [
      dataclasses.replace(
        v,
        importance=protocol.min_max(recipe_sweep.windowed_rarity(v.features, window)).astype(
          np.float32
        ),
      )
      for v in vs
    ]
    for part, vs in data.items()
  }
  rng = np.random.default_rng(args.seed)

  def rotate(batch, _):
    dim = batch['frames'].shape[-1]
    rotation, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    return dict(batch, frames=(batch['frames'] @ rotation).astype(np.float32))

  start = time.time()
  epochs = recipe_sweep.training_epochs(config, data['train'], rotate if args.rotate else None)
  for epoch, apply, params, _ in epochs:
    if epoch % args.eval_every and epoch != config.num_epochs:
      continue
    taus = {}
    for part in ('train', 'test'):
      scores = recipe_sweep.score_videos(apply, params, data[part], window)
      taus[part] = float(
        np.mean([scipy.stats.kendalltau(s, v.importance)[0] for s, v in zip(scores, data[part])])
      )
    line = dict(recipe=args.recipe, dataset=args.dataset, rotate=args.rotate, epoch=epoch)
    print(json.dumps(dict(line, rarity_tau=taus, seconds=time.time() - start)), flush=True)


def parse_args() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('command', choices=('probe-smoothing', 'fit-curve', 'rarity-fit'))
  parser.add_argument('--manual_dir', required=True, help='the stand-ins (recipe_sweep.py)')
  parser.add_argument('--datasets', default='summe,tvsum', help='probe-smoothing only')
  parser.add_argument('--splits', default='0,1', type=lambda s: [int(x) for x in s.split(',')])
  parser.add_argument('--dataset', default='summe', choices=('summe', 'tvsum'))
  parser.add_argument('--split', default=0, type=int)
  parser.add_argument('--seed', default=0, type=int)
  parser.add_argument('--recipe', default='context', choices=sorted(recipe_sweep.RECIPES))
  parser.add_argument('--epochs', default=None, type=int, help="default: the recipe's")
  parser.add_argument('--eval_every', default=6, type=int)
  parser.add_argument(
    '--smoothing', default='1,3,5,9,15,25', type=lambda s: [int(x) for x in s.split(',')]
  )
  parser.add_argument('--validation_fraction', default=0.1, type=float)
  parser.add_argument('--rotate', action='store_true', help='rarity-fit: rotate every batch')
  return parser.parse_args()


def main() -> None:
  args = parse_args()
  commands = {'probe-smoothing': probe_smoothing, 'fit-curve': fit_curve, 'rarity-fit': rarity_fit}
  commands[args.command](args)


if __name__ == '__main__':
  main()

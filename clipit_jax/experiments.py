"""Many trainings in one command: one workdir per run, finished runs skipped, the rest resumed.

`run` trains a config in its workdir (resuming after an interruption), evaluates its best
checkpoint on the test videos and keeps the result in `workdir/result.json`; run again,
it returns that result without training. A workdir holding a run of another config
fingerprint (`run_dir.fingerprint`: data, losses, optimisation, model) is never reused or
resumed: `check_reusable` refuses it, before any training. `mean_std` aggregates runs over
seeds or splits.

The headline is the checkpoint chosen on validation videos held out of the training
set. With `config.test_every_epoch`, the result also keeps the literature's optimistic
figure, the epoch with the best test F1 (`best_test_epoch`); it never chooses a checkpoint.
"""

import json
import os
import time
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from clipit_jax import files
from clipit_jax import inference
from clipit_jax import run_dir
from clipit_jax import train
from clipit_jax.datasets import split_files

RESULT_FILE = 'result.json'


def finished_result(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any] | None:
  """The saved result of `config` in `workdir`, or None when the run is not finished.

  Raises ValueError when the run's split file has changed since (its videos may differ).
  """
  path = os.path.join(workdir, RESULT_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    result = json.load(f)
  if result.get('config') != json.loads(config.to_json_best_effort()):
    return None
  if result.get('splits_file'):
    current = split_files.read(config.data.splits_file).sha256
    if current != result['splits_file']['sha256']:
      raise ValueError(
        f'{config.data.splits_file} has changed since {workdir} was trained on '
        'it; use a new workdir'
      )
  return result


def check_reusable(runs: Sequence[tuple[ml_collections.ConfigDict, str]], advice: str) -> None:
  """Refuses (ValueError, one line) when a (config, workdir) pair's workdir holds a run of
  another config fingerprint: reusing or resuming it would label its results with `config`.

  `advice` is the way on, e.g. 'pass another --workdir'.
  """
  for config, workdir in runs:
    changed = run_dir.differences(workdir, config)
    if changed:
      raise ValueError(f'{workdir} holds a run of another config ({"; ".join(changed)}); {advice}')


def best_test_epoch(workdir: str, metric: str = 'f1') -> dict[str, Any] | None:
  """{'epoch', 'metrics'} of the epoch with the best `test_<metric>` in metrics.jsonl (the
  literature's optimistic model selection), or None when the test videos were not
  evaluated every epoch (`config.test_every_epoch`)."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    epochs = [json.loads(line) for line in f if line.strip()]
  epochs = [e for e in epochs if f'test_{metric}' in e]
  if not epochs:
    return None
  best = max(epochs, key=lambda e: e[f'test_{metric}'])  # The first of equal ones.
  return dict(
    epoch=best['epoch'],
    metrics={k[len('test_') :]: v for k, v in best.items() if k.startswith('test_')},
  )


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains `config` in `workdir` and evaluates its best checkpoint on the test videos.

  Returns {'metrics', 'epoch' (of the best checkpoint), 'seconds' (training, this
  process), 'config', 'videos', 'split_fingerprint', 'best_test_epoch' (see
  `best_test_epoch`), 'splits_file' (for a split file: its name, path, sha256 and
  entry)}; a finished run is not repeated.
  """
  done = finished_result(config, workdir)
  if done is not None:
    return done
  check_reusable([(config, workdir)], 'use another workdir')
  start = time.time()
  train.train_and_evaluate(config, workdir)
  seconds = time.time() - start
  evaluated = inference.evaluate_checkpoint(workdir, 'test', 'best')
  result = dict(
    metrics=evaluated['metrics'],
    epoch=evaluated['epoch'],
    seconds=seconds,
    videos=evaluated['videos'],
    split_fingerprint=evaluated['split_fingerprint'],
    best_test_epoch=best_test_epoch(workdir),
    splits_file=evaluated.get('splits_file'),
    config=json.loads(config.to_json_best_effort()),
  )
  files.write_text(os.path.join(workdir, RESULT_FILE), json.dumps(result, indent=2))
  return result


def mean_std(metrics: Sequence[dict[str, float]]) -> dict[str, tuple[float, float]]:
  """{name: (mean, std)} over runs (population std, as the field reports over splits)."""
  return {
    k: (float(np.mean([m[k] for m in metrics])), float(np.std([m[k] for m in metrics])))
    for k in metrics[0]
  }


def format_mean_std(value: tuple[float, float], digits: int) -> str:
  return f'{value[0]:.{digits}f} ± {value[1]:.{digits}f}'

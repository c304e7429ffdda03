"""Many trainings in one command: one workdir per run, finished runs skipped, the rest resumed.

`run` trains a config in its workdir (resuming after an interruption), evaluates its best
checkpoint on the test videos and keeps the result in `workdir/result.json`; run again,
it returns that result without training. `mean_std` aggregates runs over seeds or splits.

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

from clipit_jax import checkpoints
from clipit_jax import files
from clipit_jax import inference
from clipit_jax import train
from clipit_jax.datasets import split_files

RESULT_FILE = 'result.json'


# The `config.data` fields that choose the videos: a workdir trained on others cannot resume.
VIDEO_FIELDS = (
  'dataset',
  'setting',
  'split',
  'splits_file',
  'features',
  'part',
  'validation_fraction',
)


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


def check_same_videos(config: ml_collections.ConfigDict, workdir: str) -> None:
  """A workdir that began training on other videos (another split, setting or file) must not
  be resumed on these: raises ValueError naming the difference."""
  if not os.path.exists(os.path.join(workdir, checkpoints.CONFIG_FILE)):
    return
  saved = checkpoints.load_config(workdir).data
  changed = [
    f'data.{k} {saved.get(k)!r} -> {config.data.get(k)!r}'
    for k in VIDEO_FIELDS
    if saved.get(k) != config.data.get(k)
  ]
  if changed:
    raise ValueError(
      f'{workdir} holds a run on other videos ({", ".join(changed)}); use a new workdir'
    )


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
  check_same_videos(config, workdir)
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

"""Many trainings in one command: one workdir per run, finished runs skipped, the rest resumed.

`run` trains a config in its workdir (resuming after an interruption), evaluates its best
checkpoint on the test videos and keeps the result in `workdir/result.json`; run again,
it returns that result without training. `mean_std` aggregates runs over seeds or splits.
"""

import json
import os
import time
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from clipit_jax import files
from clipit_jax import train

RESULT_FILE = 'result.json'


def finished_result(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any] | None:
  """The saved result of `config` in `workdir`, or None when the run is not finished."""
  path = os.path.join(workdir, RESULT_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    result = json.load(f)
  return result if result.get('config') == json.loads(config.to_json_best_effort()) else None


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains `config` in `workdir` and evaluates its best checkpoint on the test videos.

  Returns {'metrics', 'epoch' (of the best checkpoint), 'seconds' (training, this
  process), 'config', 'videos', 'split_fingerprint'}; a finished run is not repeated.
  """
  done = finished_result(config, workdir)
  if done is not None:
    return done
  start = time.time()
  train.train_and_evaluate(config, workdir)
  seconds = time.time() - start
  evaluated = train.evaluate_checkpoint(workdir, 'test', 'best')
  result = dict(metrics=evaluated['metrics'], epoch=evaluated['epoch'], seconds=seconds,
                videos=evaluated['videos'], split_fingerprint=evaluated['split_fingerprint'],
                config=json.loads(config.to_json_best_effort()))
  files.write_text(os.path.join(workdir, RESULT_FILE), json.dumps(result, indent=2))
  return result


def mean_std(metrics: Sequence[dict[str, float]]) -> dict[str, tuple[float, float]]:
  """{name: (mean, std)} over runs (population std, as the field reports over splits)."""
  return {k: (float(np.mean([m[k] for m in metrics])), float(np.std([m[k] for m in metrics])))
          for k in metrics[0]}


def format_mean_std(value: tuple[float, float], digits: int) -> str:
  return f'{value[0]:.{digits}f} ± {value[1]:.{digits}f}'

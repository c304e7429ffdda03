"""2 processes x 2 CPU devices (jax.distributed on localhost) resume and train like one device
(stand-ins)."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np

from clipit_jax import inference
from clipit_jax import train
from testutil import ROOT, TINY_MODEL, tiny_config

QUICK_RUN = dict(num_epochs=2, batch_size=4, learning_rate=1e-3, progress=False)
NO_DROPOUT = dict(dropout_rate=0.0, attention_dropout_rate=0.0)


def no_dropout_config(data_dir):
  """The tiny TVSum config without dropout: one device and four then see the same masks."""
  config = tiny_config('tvsum_standard', data_dir, **QUICK_RUN)
  config.model.update(NO_DROPOUT)
  return config


def _metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


# train.py, counting the compiles of the train step.
_TRAIN_PY_COUNTING_COMPILES = """
import atexit, runpy, sys, jax
names = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, _, fun_name="", **__: names.append(fun_name)
    if event.endswith("backend_compile_duration") else None)
atexit.register(lambda: print("train_step compiles:", sum("train_step" in n for n in names)))
sys.argv[0] = "train.py"
runpy.run_path("train.py", run_name="__main__")
"""


def _train_two_processes(data_dir, workdir, *flags):
  """train.py as 2 processes x 2 CPU devices on localhost (gloo collectives); its stdouts."""
  overrides = [f'--config.data.data_dir={data_dir}']
  overrides += [f'--config.{k}={v}' for k, v in QUICK_RUN.items()]
  overrides += TINY_MODEL + [f'--config.model.{k}={v}' for k, v in NO_DROPOUT.items()]
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  env.update(JAX_PLATFORMS='cpu', JAX_NUM_CPU_DEVICES='2', CLIPIT_NO_XLA_CACHE='1')
  port = _free_port()
  processes = [
    subprocess.Popen(
      [
        sys.executable,
        '-c',
        _TRAIN_PY_COUNTING_COMPILES,
        '--config=configs/tvsum_standard.py',
        f'--workdir={workdir}',
        '--distributed',
        f'--coordinator_address=localhost:{port}',
        '--num_processes=2',
        f'--process_id={i}',
        *overrides,
        *flags,
      ],
      cwd=ROOT,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  outputs = [p.communicate(timeout=600) for p in processes]
  for p, (out, err) in zip(processes, outputs):
    assert p.returncode == 0, err[-3000:]
    assert 'train_step compiles: 1' in out, out  # One shape, one compile.
  return [out for out, _ in outputs]


def test_two_processes_resume_and_train_like_one_device(standin_data_dir, tmp_path):
  """2 processes x 2 devices resume a run that one device began, and train as one device
  does uninterrupted (4 devices in one process: data_parallel_test)."""
  config = no_dropout_config(standin_data_dir)
  train.train_and_evaluate(config, str(tmp_path / 'one'))
  two_by_two = str(tmp_path / 'two_by_two')
  config.stop_after_epoch = 1
  train.train_and_evaluate(config, two_by_two)
  assert all('Resuming' in out for out in _train_two_processes(standin_data_dir, two_by_two))
  one = _metrics(str(tmp_path / 'one'))
  assert [m['epoch'] for m in _metrics(two_by_two)] == [m['epoch'] for m in one] == [1, 2]
  # Epoch 1 ran on one device in both workdirs; epoch 2 is the two processes' own.
  for a, b in zip(one[1:], _metrics(two_by_two)[1:]):
    for key in (
      'train_total',
      'train_classification',
      'train_diversity',
      'train_reconstruction',
      'val_kendall',
    ):
      np.testing.assert_allclose(b[key], a[key], rtol=1e-4, atol=1e-5, err_msg=key)
  _, expected, _ = inference.load_trained(str(tmp_path / 'one'), 'latest')
  _, params, epoch = inference.load_trained(two_by_two, 'latest')
  assert epoch == 2
  # Adam turns round-off in a ~0 gradient into a step of up to the learning rate, so a few
  # elements may differ by that much; a wrong collective or shard would move most of them.
  x, y = (np.concatenate([np.ravel(l) for l in jax.tree.leaves(t)]) for t in (expected, params))
  assert np.mean(np.abs(x - y) > 1e-5) < 1e-3, np.mean(np.abs(x - y) > 1e-5)
  assert np.max(np.abs(x - y)) < 1e-2, np.max(np.abs(x - y))

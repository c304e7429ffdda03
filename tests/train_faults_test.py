"""Faults around training and its workdir: damaged checkpoints, a full disk, two runs at
once, a kill right after a checkpoint commits, a torn metrics log, Ctrl-C.

One tiny benchmark (an eccv16-style h5 file, 10 short videos) and one tiny model; the
XLA programs go to a module-wide disk cache, so the run that a subprocess resumes does
not compile again.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from clipit_jax import checkpoints
from clipit_jax import files
from clipit_jax import inference
from clipit_jax import run_dir
from clipit_jax import train
from clipit_jax import train_step
from clipit_jax.datasets import h5_files
from clipit_jax.datasets import loading
from testutil import ROOT, TINY_MODEL, fill_disk, small_disk, tiny_config, write_h5

# Its tests share module-scoped fixtures: one worker runs them all (pytest -n --dist loadgroup).
pytestmark = pytest.mark.xdist_group('train_faults')


@pytest.fixture(scope='module')
def xla_cache(tmp_path_factory):
  """Compiled programs on disk for this module (and its subprocesses), then as before."""
  directory = str(tmp_path_factory.mktemp('xla'))
  before = (
    jax.config.jax_compilation_cache_dir,
    jax.config.jax_persistent_cache_min_compile_time_secs,
  )
  jax.config.update('jax_compilation_cache_dir', directory)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  yield directory
  jax.config.update('jax_compilation_cache_dir', before[0])
  jax.config.update('jax_persistent_cache_min_compile_time_secs', before[1])


@pytest.fixture(scope='module')
def benchmark(tmp_path_factory):
  """The data_dir of a prepared 10-video SumMe-style benchmark."""
  root = tmp_path_factory.mktemp('benchmark')
  manual = root / 'downloads' / 'manual'
  manual.mkdir(parents=True)
  write_h5(manual / h5_files.h5_filename('summe'), 10, frames=(60, 120))
  loading.load_builder('summe', 'googlenet', str(root))
  return str(root)


def _config(benchmark, **overrides):
  return tiny_config('summe_standard', benchmark, **{'num_epochs': 2, **overrides})


def _metrics_epochs(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line)['epoch'] for line in f]


def _latest_step(workdir):
  manager = checkpoints.make_manager(workdir, 'f1', read_only=True)
  try:
    return manager.latest_step()
  finally:
    manager.close()


# --- damaged checkpoints (no training: states saved directly) ------------------------------------


def _abstract_state(config):
  return jax.eval_shape(lambda: train_step.create_train_state(config, jax.random.PRNGKey(0)))


def _state(config, seed):
  """A train state of `config` filled with random numbers (no initialisation to compile)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: rng.normal(size=s.shape).astype(s.dtype), _abstract_state(config))


@pytest.fixture(scope='module')
def two_checkpoints(benchmark, tmp_path_factory):
  """A workdir whose best checkpoint is epoch 1 and latest epoch 2 (states of seeds 1, 2)."""
  workdir = str(tmp_path_factory.mktemp('two_checkpoints'))
  config = _config(benchmark)
  checkpoints.save_config(workdir, config)
  manager = checkpoints.make_manager(workdir, config.best_metric)
  checkpoints.save(manager, 1, _state(config, 1), {'f1': 0.9})
  checkpoints.save(manager, 2, _state(config, 2), {'f1': 0.1})
  manager.close()
  return workdir


def _damage(workdir, step):
  """Truncates every data file of one checkpoint, as a full disk or a bad copy would."""
  data = os.path.join(workdir, 'checkpoints', str(step), 'state', 'ocdbt.process_0', 'd')
  for name in os.listdir(data):
    with open(os.path.join(data, name), 'r+b') as f:
      f.truncate(10)


def _params_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_a_damaged_checkpoint_names_itself_and_the_one_that_restores(two_checkpoints, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(two_checkpoints, workdir)
  _damage(workdir, 2)
  out = subprocess.run(
    [sys.executable, str(ROOT / 'eval.py'), f'--ckpt={workdir}', '--checkpoint=latest'],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  assert out.returncode == 1
  lines = out.stderr.splitlines()
  assert len(lines) == 1, out.stderr
  assert lines[0].startswith(
    f'eval.py: error: {workdir}/checkpoints/2: cannot be read, its files are damaged ('
  )
  assert lines[0].endswith(
    '); it is the latest checkpoint, the best one (epoch 1) restores: use --checkpoint best'
  )
  config = checkpoints.load_config(workdir)
  _, params, epoch = inference.load_trained(workdir, 'best')  # The advice holds.
  assert epoch == 1
  _params_equal(params, _state(config, 1).params)


def test_resuming_skips_a_damaged_checkpoint_and_saves_that_epoch_again(
  two_checkpoints, tmp_path, capfd
):
  workdir = str(tmp_path / 'run')
  shutil.copytree(two_checkpoints, workdir)
  _damage(workdir, 2)
  config = checkpoints.load_config(workdir)
  manager = checkpoints.make_manager(workdir, config.best_metric)
  state, epoch = checkpoints.restore_newest(manager, workdir, _abstract_state(config))
  assert epoch == 1
  _params_equal(state.params, _state(config, 1).params)
  moved = os.path.join(workdir, checkpoints.UNREADABLE_DIR, '2')
  assert capfd.readouterr().err.startswith(f'warning: {workdir}/checkpoints/2: cannot be read')
  assert os.path.isdir(moved) and manager.all_steps() == [1]
  checkpoints.save(manager, 2, _state(config, 3), {'f1': 0.5})
  _params_equal(
    checkpoints.restore(manager, _abstract_state(config))[0].params, _state(config, 3).params
  )
  _damage(workdir, 1)
  _damage(workdir, 2)
  with pytest.raises(checkpoints.CheckpointError, match='no checkpoint restores'):
    checkpoints.restore_newest(manager, workdir, _abstract_state(config))
  assert manager.all_steps() == [1, 2]  # Nothing moved when nothing restores.
  manager.close()


def test_a_checkpoint_of_another_model_says_which_array_differs(two_checkpoints):
  config = checkpoints.load_config(two_checkpoints)
  config.model.width = 48
  manager = checkpoints.make_manager(two_checkpoints, config.best_metric, read_only=True)
  with pytest.raises(checkpoints.CheckpointError) as e:
    checkpoints.restore(manager, _abstract_state(config), 'best')
  manager.close()
  assert 'does not fit the configured model (params/' in str(e.value)
  assert 'has shape [32] there but [48] in the config' in str(e.value)
  assert 'strict' not in str(e.value)


def test_a_full_disk_during_a_save_is_one_line_and_keeps_the_last_checkpoint(
  benchmark, tmp_path, capfd
):
  config = _config(benchmark)
  with small_disk(tmp_path / 'disk', 6000) as disk:
    manager = checkpoints.make_manager(str(disk / 'run'), config.best_metric)
    checkpoints.save(manager, 1, _state(config, 1), {'f1': 0.5})
    fill_disk(disk, leave_kb=50)
    with pytest.raises(checkpoints.CheckpointError) as e:
      checkpoints.save(manager, 2, _state(config, 2), {'f1': 0.6})
    assert str(e.value) == (
      f'{disk}/run/checkpoints: could not save the checkpoint of epoch 2 '
      '(no space left on device); the earlier checkpoints are intact: fix '
      'the cause and run the same command to resume'
    )
    (disk / 'filler').unlink()
    state, epoch = checkpoints.restore_newest(manager, str(disk / 'run'), _abstract_state(config))
    assert epoch == 1
    _params_equal(state.params, _state(config, 1).params)
    manager.close()
  time.sleep(0.5)  # Orbax's abandoned writes report from their threads: nothing shows.
  assert 'Traceback' not in capfd.readouterr().err


# --- two runs on one workdir ---------------------------------------------------------------------

_HOLD = """
import sys, time
from clipit_jax import files
with files.exclusive_lock(sys.argv[1]):
  print('held', flush=True)
  time.sleep(120)
"""


def test_a_second_run_on_a_workdir_is_refused_naming_the_first(benchmark, tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  holder = subprocess.Popen(
    [sys.executable, '-c', _HOLD, str(workdir / run_dir.LOCK_FILE)],
    cwd=ROOT,
    stdout=subprocess.PIPE,
    text=True,
  )
  try:
    assert holder.stdout.readline() == 'held\n'
    with pytest.raises(files.LockedError) as e:
      train.train_and_evaluate(_config(benchmark), str(workdir))
    assert str(e.value).startswith(
      f'{workdir}/{run_dir.LOCK_FILE} is locked by pid {holder.pid} on {socket.gethostname()} since '
    )
    assert str(e.value).endswith(
      f'another train.py is running in {workdir}: wait for it to end, or use another --workdir'
    )
    assert sorted(os.listdir(workdir)) == [run_dir.LOCK_FILE]  # The refused run wrote nothing.
  finally:
    holder.kill()  # SIGKILL: the kernel releases the lock with the process.
    holder.wait()
  with files.exclusive_lock(workdir / run_dir.LOCK_FILE):
    pass


# --- kills and Ctrl-C during training ------------------------------------------------------------


class _Killed(BaseException):
  """Stands for a SIGKILL: nothing after it runs."""


@pytest.fixture(scope='module')
def killed_after_commit(benchmark, xla_cache, tmp_path_factory):
  """A run killed right after the checkpoint of epoch 1 committed."""
  workdir = str(tmp_path_factory.mktemp('killed') / 'run')
  save = checkpoints.save

  def save_then_die(*args, **kwargs):
    save(*args, **kwargs)
    raise _Killed

  checkpoints.save = save_then_die
  try:
    with pytest.raises(_Killed):
      train.train_and_evaluate(_config(benchmark), workdir)
  finally:
    checkpoints.save = save
  return workdir


def test_a_kill_right_after_a_commit_loses_no_metrics_line(killed_after_commit):
  assert _latest_step(killed_after_commit) == 1
  assert _metrics_epochs(killed_after_commit) == [1]


def test_ctrl_c_waits_until_the_epoch_is_written():
  # Python's own handler, also when the suite runs as a background job (SIGINT ignored).
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)
  written = []
  try:
    with pytest.raises(KeyboardInterrupt):
      with run_dir.interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        written.append('metrics line')
        written.append('checkpoint')
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
  finally:
    signal.signal(signal.SIGINT, previous)
  assert written == ['metrics line', 'checkpoint']


# train.py with Python's Ctrl-C handler even when this suite runs with SIGINT ignored (a
# background job), which a started Python would otherwise keep ignoring.
_TRAIN_PY_WITH_CTRL_C = (
  'import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); '
  'sys.argv[0] = "train.py"; runpy.run_path("train.py", run_name="__main__")'
)


def test_ctrl_c_resumes_a_torn_log_and_stops_between_epochs(
  killed_after_commit, benchmark, xla_cache, tmp_path
):
  workdir = str(tmp_path / 'run')
  shutil.copytree(killed_after_commit, workdir)
  with open(os.path.join(workdir, 'metrics.jsonl'), 'a') as f:
    f.write('{"epoch": 2, "train_total": 0.8')  # A kill cut the last line short.
  env = dict(
    os.environ, JAX_COMPILATION_CACHE_DIR=xla_cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0'
  )
  flags = [
    f'--config.data.data_dir={benchmark}',
    '--config.num_epochs=1000',
    '--config.batch_size=4',
    '--config.learning_rate=1e-3',
    '--config.progress=False',
  ]
  run = subprocess.Popen(
    [
      sys.executable,
      '-c',
      _TRAIN_PY_WITH_CTRL_C,
      '--config=configs/summe_standard.py',
      f'--workdir={workdir}',
      *TINY_MODEL,
      *flags,
    ],
    cwd=ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  try:
    for line in run.stdout:  # Interrupt once an epoch after the resumed one is done.
      if line.startswith('epoch   2/'):
        break
    run.send_signal(signal.SIGINT)
    stdout, stderr = run.communicate(timeout=120)
  finally:
    run.kill()
  assert run.returncode == 130, stderr
  assert stderr.splitlines() == [
    f'warning: {workdir}/metrics.jsonl: dropped 1 unreadable line(s) (cut short by a kill?)',
    'train.py: interrupted; run the same command to resume',
  ], stderr
  last = _latest_step(workdir)  # Every committed epoch has its line, once, and no other.
  assert last >= 2 and _metrics_epochs(workdir) == list(range(1, last + 1))

"""Tests of what the entry points share (clipit_jax/cli.py) and their usage errors."""

import logging
import os
import subprocess
import sys

import jax
import pytest

from clipit_jax import cli
from clipit_jax import config_checks
from testutil import ROOT, load_config_file


@pytest.fixture
def restore_cache_dir():
  before = jax.config.jax_compilation_cache_dir
  yield
  jax.config.update('jax_compilation_cache_dir', before)


def test_compilation_cache_goes_under_the_clipit_cache(monkeypatch, tmp_path, restore_cache_dir):
  monkeypatch.setenv('CLIPIT_CACHE', str(tmp_path))
  monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR', raising=False)
  monkeypatch.delenv('CLIPIT_NO_XLA_CACHE', raising=False)
  assert cli.enable_compilation_cache() == str(tmp_path / 'xla')
  assert jax.config.jax_compilation_cache_dir == str(tmp_path / 'xla')


def test_compilation_cache_honours_jax_variable_and_opt_out(
  monkeypatch, tmp_path, restore_cache_dir
):
  monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', str(tmp_path / 'mine'))
  monkeypatch.delenv('CLIPIT_NO_XLA_CACHE', raising=False)
  assert cli.enable_compilation_cache() == str(tmp_path / 'mine')
  jax.config.update('jax_compilation_cache_dir', None)
  monkeypatch.setenv('CLIPIT_NO_XLA_CACHE', '1')
  assert cli.enable_compilation_cache() is None
  assert jax.config.jax_compilation_cache_dir is None


# --- usage errors, before anything heavy is imported ---------------------------------------------


def _script(*args):
  return subprocess.run(
    [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
  )


def test_scripts_import_nothing_heavy_before_checking_their_flags():
  out = _script(
    '-c',
    'import sys, runpy; sys.argv = ["train.py", "--helpshort"]\n'
    'try:\n  runpy.run_path("train.py", run_name="__main__")\n'
    'except SystemExit:\n  pass\n'
    'heavy = [m for m in ("jax", "orbax.checkpoint", "tensorflow_datasets", "av",\n'
    '                     "transformers", "clipit_jax.train") if m in sys.modules]\n'
    'print("heavy:", heavy)',
  )
  assert out.stdout.strip().splitlines()[-1] == 'heavy: []', out.stdout + out.stderr


@pytest.mark.parametrize(
  'override, status, words',
  [
    ('--config.foo=1', 2, "--config.foo=1: the config has no field 'foo'"),
    ('--config.data.foo=1', 2, "--config.data.foo=1: the config has no field 'data.foo'"),
    ('--config.batch_size=0', 1, 'config.batch_size must be an integer >= 1, got 0'),
    ('--config.num_epochs=-1', 1, 'config.num_epochs must be an integer >= 1, got -1'),
  ],
)
def test_bad_config_overrides_are_one_line(tmp_path, override, status, words):
  out = _script('train.py', '--config=configs/synthetic.py', f'--workdir={tmp_path}', override)
  assert out.returncode == status
  lines = out.stderr.splitlines()
  assert len(lines) == 1 and lines[0].startswith(f'train.py: error: {words}'), out.stderr
  assert not os.listdir(tmp_path)  # Refused before anything was written.


def test_every_config_passes_its_checks_and_bad_values_are_named():
  for path in sorted((ROOT / 'configs').glob('*.py')):
    if path.stem != 'summe_tvsum':  # A function of (dataset, setting).
      config_checks.check_config(load_config_file(path.stem))
  config = load_config_file('synthetic')
  for field, value in (
    ('microbatch_size', -1),
    ('learning_rate', float('nan')),
    ('data.validation_fraction', 1.0),
    ('stop_after_epoch', 0),
    ('warmup_steps', -1),
    ('model.window', 0),
  ):
    bad = config.copy_and_resolve_references()
    *parents, name = field.split('.')
    target = bad
    for part in parents:
      target = target[part]
    target[name] = value
    with pytest.raises(ValueError, match=rf'^config\.{field} must be .* \(--config\.{field}\)$'):
      config_checks.check_config(bad)


def test_benchmark_configs_take_the_feature_width_from_their_builder():
  assert load_config_file('tvsum_standard').model.frame_dim == 1024  # GoogLeNet pool5.
  assert load_config_file('summe_transfer', 'clip').model.frame_dim == 512  # CLIP ViT-B/32.
  with pytest.raises(ValueError, match=r"unknown config variant 'vgg': expected features \("):
    load_config_file('summe_transfer', 'vgg')


def test_paper_variant_keeps_the_papers_values():
  shipped, paper = load_config_file('tvsum_standard'), load_config_file('tvsum_standard', 'paper')
  assert (shipped.target, shipped.batch_size) == ('importance', 8)
  assert (paper.target, paper.batch_size) == ('keyframes', 100)
  default = load_config_file('default').to_dict()
  assert paper.to_dict() == dict(
    default,
    data=dict(default['data'], dataset='tvsum', setting='standard', features='googlenet'),
    model=dict(default['model'], frame_dim=1024),
  )
  both = load_config_file('summe_transfer', 'clip,paper')
  assert (both.model.frame_dim, both.batch_size, both.data.features) == (512, 100, 'clip')
  qfvs, small = load_config_file('qfvs'), load_config_file('qfvs', 'small')
  assert (qfvs.model.width, qfvs.batch_size, small.model.width) == (512, 100, 128)
  with pytest.raises(ValueError, match=r"configs/qfvs.py takes ':paper' or ':small'"):
    load_config_file('qfvs', 'big')


def test_ctrl_c_is_one_line_and_status_130(capsys):
  with pytest.raises(SystemExit) as e:
    with cli.one_line_errors('train.py', on_interrupt='run the same command to resume'):
      raise KeyboardInterrupt
  assert e.value.code == 130
  assert capsys.readouterr().err == 'train.py: interrupted; run the same command to resume\n'
  with pytest.raises(SystemExit) as e:  # A user's error: one line, status 1; a bug: a traceback.
    with cli.one_line_errors('eval.py'):
      raise OSError(28, 'No space left on device', '/full/eval.json')
  assert e.value.code == 1
  assert capsys.readouterr().err == (
    "eval.py: error: [Errno 28] No space left on device: '/full/eval.json'\n"
  )
  with pytest.raises(ZeroDivisionError):
    with cli.one_line_errors('eval.py'):
      raise ZeroDivisionError


def test_out_of_memory_is_one_line_that_names_the_remedy(capsys):
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  with pytest.raises(SystemExit) as e:
    with cli.one_line_errors('train.py'):
      jnp.ones((2**44,), jnp.float32).block_until_ready()  # 64 TiB: XLA's RESOURCE_EXHAUSTED.
  assert e.value.code == 1
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and err.startswith(
    'train.py: error: out of memory (RESOURCE_EXHAUSTED'
  )
  assert '--config.microbatch_size' in err


def test_integer_list_flags_name_the_flag():
  assert cli.int_list('seeds', ['0', ' 2', '-1']) == [0, 2, -1]
  assert cli.int_list('splits', None) is None  # Not given: every split.
  with pytest.raises(ValueError, match=r'^--seeds is empty; give one or more integers'):
    cli.int_list('seeds', [])
  with pytest.raises(ValueError, match=r"^--splits=1,abc: 'abc' is not an integer; write e.g."):
    cli.int_list('splits', ['1', 'abc'])


def test_a_file_where_a_directory_is_needed_is_one_line(tmp_path, capsys):
  blocker = tmp_path / 'runs'
  blocker.write_text('')
  for path in (blocker, blocker / 'split_0'):  # [Errno 17] File exists, [Errno 20] Not a dir.
    with pytest.raises(SystemExit) as e, cli.one_line_errors('prog'):
      os.makedirs(path, exist_ok=True)
    assert e.value.code == 1
    assert capsys.readouterr().err == (
      f'prog: error: {blocker}: a file, where a directory is needed; move the file away or '
      'pass another directory (--workdir, --out, ...)\n'
    )


def test_ckpt_that_is_a_file_says_so(tmp_path):
  from clipit_jax import checkpoints

  (tmp_path / 'config.json').write_text('{}')
  for path, expected in (
    (tmp_path / 'nowhere', 'checkpoint directory not found; pass the --workdir'),
    (
      tmp_path / 'config.json',
      f'a file, not a directory; .* \\(the directory it is in: {tmp_path}\\)',
    ),
  ):
    with pytest.raises(checkpoints.CheckpointError, match=f'^{path}: {expected}'):
      checkpoints.load_config(str(path))


def test_distributed_start_says_what_it_waits_for_and_gives_up(tmp_path):
  code = (
    'from clipit_jax import cli; '
    "cli.start_distributed('train.py', '127.0.0.1:9', 2, 1, timeout_s=1)"
  )
  out = subprocess.run(
    [sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=120
  )
  assert out.returncode == 1
  assert out.stderr.splitlines() == [
    'train.py: waiting up to 1 s for all 2 processes to join at 127.0.0.1:9 (this is process 1)',
    'train.py: error: gave up after 1 s waiting for all 2 processes to join at 127.0.0.1:9; '
    'start each process with the same --coordinator_address and --num_processes and its own '
    '--process_id (or raise --distributed_timeout)',
  ]


def test_reading_checkpoints_logs_no_orbax_notices(tmp_path, caplog):
  # Orbax says 'read_only=True, setting save_interval_steps=0' and 'Given directory is read
  # only' when a --ckpt run (or the Python API) opens a run: absl WARNING lines on success.
  from clipit_jax import checkpoints

  (tmp_path / checkpoints.CHECKPOINT_DIR).mkdir()
  with caplog.at_level(logging.INFO):
    checkpoints.make_manager(str(tmp_path), 'f1', read_only=True).close()
  assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []

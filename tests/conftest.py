"""Test-wide settings: run JAX on the CPU, and locate the shared real data."""

import os
import pathlib
import tempfile

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Models built by the tests (the tiny CLIP and captioner) go to a temporary cache, not ~/.cache.
os.environ.setdefault('CLIPIT_CACHE', tempfile.mkdtemp(prefix='clipit-test-cache-'))

import jax  # noqa: E402
import pytest  # noqa: E402

# Compiled programs are kept for the session in that temporary cache (and read by the scripts
# the tests start): the many runs of one tiny model compile once.
jax.config.update('jax_compilation_cache_dir', os.path.join(os.environ['CLIPIT_CACHE'], 'xla'))
# Every compile is kept, not only those over a second (the tiny models compile in less).
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
# Most tests compile many small programs and run each briefly, so XLA's quick compile serves
# them (in this process and in the scripts they start): about half the compile time, slower
# code. Tests whose time goes to running a model turn the optimisations back on
# (`full_xla_optimizations`). JAX_DISABLE_MOST_OPTIMIZATIONS=0 in the environment turns the
# quick compile off for the whole suite.
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')
QUICK_COMPILE = os.environ['JAX_DISABLE_MOST_OPTIMIZATIONS'].lower() in ('1', 'true', 'yes', 'on')
jax.config.update('jax_disable_most_optimizations', QUICK_COMPILE)

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / 'shared'


@pytest.fixture
def shared_dir():
  """`../shared` beside the project root; tests that need it skip when absent."""
  if not SHARED.is_dir():
    pytest.skip(f'shared data not found at {SHARED}')
  return SHARED


@pytest.fixture(scope='session')
def standin_data_dir(tmp_path_factory):
  """A data_dir whose manual directory holds stand-ins of all four benchmarks (6 short videos
  each, simulated annotators); the builders prepare them on first use."""
  import testutil  # pylint: disable=g-import-not-at-top

  return testutil.write_standins(tmp_path_factory.mktemp('standins'))


@pytest.fixture(scope='module')
def full_xla_optimizations():
  """XLA's full optimisations for a module whose time goes to running models, not compiling."""
  jax.config.update('jax_disable_most_optimizations', False)
  yield
  jax.config.update('jax_disable_most_optimizations', QUICK_COMPILE)

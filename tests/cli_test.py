"""Tests of what the entry points share (clipit_jax/cli.py)."""

import jax
import pytest

from clipit_jax import cli


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


def test_compilation_cache_honours_jax_variable_and_opt_out(monkeypatch, tmp_path,
                                                            restore_cache_dir):
  monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', str(tmp_path / 'mine'))
  monkeypatch.delenv('CLIPIT_NO_XLA_CACHE', raising=False)
  assert cli.enable_compilation_cache() == str(tmp_path / 'mine')
  jax.config.update('jax_compilation_cache_dir', None)
  monkeypatch.setenv('CLIPIT_NO_XLA_CACHE', '1')
  assert cli.enable_compilation_cache() is None
  assert jax.config.jax_compilation_cache_dir is None

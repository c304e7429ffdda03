"""Test-wide settings: run JAX on the CPU, and locate the shared real data."""

import os
import pathlib
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Models built by the tests (the tiny CLIP and captioner) go to a temporary cache, not ~/.cache.
os.environ.setdefault("CLIPIT_CACHE", tempfile.mkdtemp(prefix="clipit-test-cache-"))

import pytest  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def shared_dir():
  """`../shared` beside the project root; tests that need it skip when absent."""
  if not SHARED.is_dir():
    pytest.skip(f"shared data not found at {SHARED}")
  return SHARED

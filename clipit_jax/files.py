"""Atomic file output: write beside the target, then rename onto it.

A failure (or a kill) part-way never leaves a partial file under the final name, and
an existing file stays intact until the new one is complete.
"""

import contextlib
import os
import pathlib
import tempfile
from collections.abc import Iterator

PathLike = str | os.PathLike[str]


def _default_mode() -> int:
  """Permissions of a new file under the current umask (mkstemp would give 0600)."""
  umask = os.umask(0o022)
  os.umask(umask)
  return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str = '.tmp') -> Iterator[pathlib.Path]:
  """Yields a temporary path beside `path`; renames it onto `path` when the block succeeds."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix=suffix, dir=path.parent)
  os.close(fd)
  tmp = pathlib.Path(tmp)
  try:
    yield tmp
    tmp.chmod(_default_mode())
    os.replace(tmp, path)
  finally:
    if tmp.exists():
      tmp.unlink()


def write_text(path: PathLike, text: str) -> None:
  """Writes `text` to `path` atomically."""
  with atomic_path(path) as tmp:
    tmp.write_text(text)

"""Atomic file output: write beside the target, then rename onto it; and lock files.

A failure (or a kill) part-way never leaves a partial file under the final name, and
an existing file stays intact until the new one is complete.
"""

import contextlib
import datetime
import fcntl
import os
import pathlib
import socket
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


class LockedError(ValueError):
  """Another process holds the lock; the message names it."""


@contextlib.contextmanager
def exclusive_lock(path: PathLike, advice: str = '') -> Iterator[None]:
  """Holds an exclusive lock on the file `path` (created) for the block.

  `fcntl.flock`: the kernel releases the lock when its holder ends, however it ends
  (kill -9 too), so a lock is never left stale. The file names its holder (pid, host,
  start time) for the refusal. Raises LockedError, ending with `advice`, when another
  process holds it.
  """
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 256, 0).decode(errors='replace').strip() or 'another process'
      raise LockedError(
        f'{path} is locked by {holder}' + (f'; {advice}' if advice else '')
      ) from None
    since = datetime.datetime.now().isoformat(sep=' ', timespec='seconds')
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'pid {os.getpid()} on {socket.gethostname()} since {since}\n'.encode(), 0)
    yield
  finally:
    os.close(fd)  # Releases the lock.


def cache_root() -> pathlib.Path:
  """`$CLIPIT_CACHE`, else `~/.cache/clipit_jax`: tiny models and features."""
  root = os.environ.get('CLIPIT_CACHE')
  if root:
    return pathlib.Path(root).expanduser()
  return pathlib.Path('~/.cache/clipit_jax').expanduser()

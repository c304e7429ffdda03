"""A summary's files as one unit: staged, published together under a lock, never over the input.

  out = check_out_dir(out)                       # a directory that takes files, else ValueError
  check_not_inside([video_path], out)            # --out may not hold the input video
  paths = publish(out, write_files, OUTPUT_ORDER)  # staged, then renamed in under out's lock

Decisions:

* The lock is `out/.clipit-summarize.lock` (`files.exclusive_lock`: released by the kernel
  however its holder ends). A second writer of the same directory stops with one line that
  names the holder; a process may take the lock it holds again (a batch holds a video's
  directory while it checks, summarizes and writes it).
* The files are written into `out/.summary-XXXX/`, then renamed into `out`: the completion
  marker (summary.json) is removed first and put back last, so a kill part-way leaves an
  incomplete set that a batch makes again, never a mixed set that looks complete. Staging
  directories left by a kill are removed by the next writer (it holds the lock, so they
  are not another writer's).
* A full disk while staging leaves what was in `out` unchanged (renames need no space).
"""

import contextlib
import errno
import os
import pathlib
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence

from clipit_jax import files
from clipit_jax.media import encoders

LOCK_FILE = '.clipit-summarize.lock'
STAGING_PREFIX = '.summary-'
_LOCK_ADVICE = 'another clipit-summarize is writing there; wait for it to end or pass another --out'

_held = threading.local()  # The output directories this thread holds locked.
_sha256_memo: dict[tuple, str] = {}


def check_out_dir(out: files.PathLike) -> pathlib.Path:
  """`out` if it is, or can be created as, a directory that takes files; else ValueError.

  Checked before the work, so that a file or read-only `--out` is not found after it.
  Creates nothing: the nearest existing directory is tried with a temporary file.
  """
  out = pathlib.Path(out)
  existing = out
  while not existing.exists() and existing != existing.parent:
    existing = existing.parent
  if not existing.is_dir():
    raise ValueError(f'--out {out}: {existing} is a file; pass a directory (created if missing)')
  try:
    fd, probe = tempfile.mkstemp(prefix='.write-test-', dir=existing)
    os.close(fd)
    os.unlink(probe)
  except OSError as e:
    raise ValueError(
      f'--out {out}: cannot write in {existing} ({e.strerror or e}); pass a writable directory'
    ) from None
  return out


def is_inside(path: files.PathLike, directory: files.PathLike) -> bool:
  """Whether `path` (resolved) is `directory` (resolved) or below it."""
  path, directory = pathlib.Path(path).resolve(), pathlib.Path(directory).resolve()
  return path == directory or directory in path.parents


def check_not_inside(videos: Sequence[files.PathLike], out: files.PathLike) -> None:
  """Raises ValueError when `out` holds one of `videos`: its outputs could replace the input."""
  for path in videos:
    if is_inside(path, out):
      stem = pathlib.Path(path).stem or 'video'
      raise ValueError(
        f'--out {out} holds the input video {path}; its summary files would replace or mix '
        f'with it: pass another --out (e.g. {pathlib.Path(out) / (stem + "_summary")})'
      )


@contextlib.contextmanager
def locked(out: files.PathLike) -> Iterator[pathlib.Path]:
  """Holds `out`'s lock (creating `out`) for the block; ValueError when another holds it.

  Re-entrant within a thread: a block inside another on the same directory holds it already.
  """
  out = pathlib.Path(out)
  held = _held.__dict__.setdefault('dirs', set())
  key = os.path.realpath(out)
  if key in held:
    yield out
    return
  out.mkdir(parents=True, exist_ok=True)
  with files.exclusive_lock(out / LOCK_FILE, advice=_LOCK_ADVICE):
    held.add(key)
    try:
      yield out
    finally:
      held.discard(key)


def clean_stale(out: pathlib.Path) -> None:
  """Removes staging directories a killed writer left in `out` (call with `out` locked)."""
  for stale in out.glob(STAGING_PREFIX + '*'):
    if stale.is_dir():
      shutil.rmtree(stale, ignore_errors=True)


def _no_space(e: BaseException) -> bool:
  return getattr(e, 'errno', None) == errno.ENOSPC or 'no space left' in str(e).lower()


def publish(
  out: files.PathLike, write_files: Callable[[pathlib.Path], None], names: Sequence[str]
) -> dict[str, pathlib.Path]:
  """Writes a set of files into `out` as one unit, under `out`'s lock.

  Args:
    out: the output directory (created).
    write_files: writes every file of `names` into the directory it is given.
    names: the files, in the order they are renamed in; the last one marks the set complete.

  Returns:
    {name: path in out}.

  Raises:
    OSError: a full disk (one line; what was in `out` is unchanged).
    ValueError: another process holds `out`.
  """
  with locked(out) as out:
    clean_stale(out)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
    try:
      write_files(staging)
      (out / names[-1]).unlink(missing_ok=True)  # Incomplete until every file is in.
      for name in names:
        os.replace(staging / name, out / name)
    except (OSError, ValueError) as e:  # ValueError: VideoError, from the video's writer.
      if _no_space(e):
        raise OSError(
          f'{out}: no space left on device for the summary; free space there '
          'or pass another --out (what was there is unchanged)'
        ) from None
      raise
    finally:
      shutil.rmtree(staging, ignore_errors=True)
  return {name: out / name for name in names}


def content_sha256(path: files.PathLike) -> str:
  """The sha256 of a file's bytes (the feature cache's key), hashed once per file state.

  A file replaced by another, whatever its modification time (`cp -p`), changes its inode or
  its change time, so it is hashed again.
  """
  st = os.stat(path)
  state = (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
  if state not in _sha256_memo:
    _sha256_memo[state] = encoders.file_sha256(path)
  return _sha256_memo[state]

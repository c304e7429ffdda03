"""What the command-line entry points share: one-line errors, and a disk cache of compiles."""

import ast
import contextlib
import os
import sys

import jax
from absl import flags

from clipit_jax import checkpoints
from clipit_jax import encoders
from clipit_jax.datasets import h5_files


@contextlib.contextmanager
def one_line_errors(program: str):
  """Turns the errors a user can cause (bad input, data, checkpoints) into one line + exit 1."""
  try:
    yield
  except (ValueError, OSError, checkpoints.CheckpointError, h5_files.DatasetError,
          encoders.ModelLoadError) as e:
    message = str(e).strip().splitlines()
    print(f'{program}: error: {message[0] if message else type(e).__name__}', file=sys.stderr)
    for line in message[1:]:  # Instructions (e.g. what to download) follow the error line.
      print(f'  {line}', file=sys.stderr)
    sys.exit(1)


def _one_line(e: BaseException) -> str:
  message = str(e)
  if len(message) > 1 and message[0] == message[-1] and message[0] in '"\'':
    try:  # ml_collections raises AttributeError(repr of its message).
      message = ast.literal_eval(message)
    except (ValueError, SyntaxError):
      pass
  if 'Traceback (most recent call last)' in message:  # Keep the flag and the final error only.
    lines = [l.strip() for l in message.splitlines() if l.strip()]
    message = f'{message.split(":", 1)[0]}: {lines[-1]}'
  return ' '.join(message.split())


def flags_parser(program: str):
  """An `app.run(flags_parser=...)` that reports a bad flag, config file or override in one line."""

  def parse(argv):
    try:
      args = flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
      print(f'{program}: error: {_one_line(e)}', file=sys.stderr)
      sys.exit(2)
    if 'config' in flags.FLAGS and flags.FLAGS['config'].present:
      try:  # config_flags defers a file that fails to load; say it now, in one line.
        flags.FLAGS['config'].value.keys()
      except Exception as e:  # pylint: disable=broad-except
        last = [l.strip() for l in str(e).splitlines() if l.strip()][-1]
        print(f'{program}: error: cannot load --config: {last}', file=sys.stderr)
        sys.exit(2)
    return args

  return parse


def enable_compilation_cache() -> str | None:
  """Keeps compiled XLA programs on disk, so the next run of a command skips its compiles.

  The directory is `$JAX_COMPILATION_CACHE_DIR` when set (JAX reads it itself), else
  `<cache root>/xla` (`$CLIPIT_CACHE` or `~/.cache/clipit_jax`); `CLIPIT_NO_XLA_CACHE=1`
  turns it off. Only programs that took over a second to compile are kept (JAX's
  default). Returns the directory, or None when off.
  """
  if os.environ.get('CLIPIT_NO_XLA_CACHE', '').strip() not in ('', '0'):
    return None
  directory = os.environ.get('JAX_COMPILATION_CACHE_DIR') or str(encoders.cache_root() / 'xla')
  jax.config.update('jax_compilation_cache_dir', directory)
  return directory

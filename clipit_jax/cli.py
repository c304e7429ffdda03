"""What the command-line entry points share: one-line errors, and a disk cache of compiles.

Light on purpose (no JAX, Orbax or TFDS at import): the scripts parse and check their
flags with it before they import anything heavy, so a usage error is reported at once.
"""

import argparse
import ast
import contextlib
import os
import sys
import threading

from absl import flags

from clipit_jax import files

INTERRUPTED_STATUS = 130  # 128 + SIGINT, as shells report a Ctrl-C.


class OneLineArgumentParser(argparse.ArgumentParser):
  """Usage errors as one line (and exit status 2): the product's commands' parser."""

  def error(self, message):
    self.exit(2, f'{self.prog}: error: {message} (see --help)\n')


class UserError(Exception):
  """An error the user can fix (a model that will not load, ...): reported as one line."""


def is_user_error(e: BaseException) -> bool:
  """Errors a user can cause (bad input, data, checkpoints, a full disk), not bugs."""
  # CheckpointError, DatasetError, VideoError, ModelLoadError, ...
  return isinstance(e, (ValueError, OSError, UserError))


def _is_out_of_memory(e: BaseException) -> bool:
  """Python's MemoryError, or XLA's (a JaxRuntimeError whose message starts RESOURCE_EXHAUSTED)."""
  return isinstance(e, MemoryError) or (
    isinstance(e, RuntimeError) and str(e).lstrip().startswith('RESOURCE_EXHAUSTED')
  )


def first_line(e: BaseException, limit: int = 200) -> str:
  """An exception's first message line (its type's name when empty), cut to `limit` characters."""
  line = (str(e).strip().splitlines() or [type(e).__name__])[0]
  return line if len(line) <= limit else line[: limit - 3] + '...'


def _file_in_the_way(e: BaseException) -> str | None:
  """For an OSError where a file stands where a directory is needed ('[Errno 17] File
  exists', '[Errno 20] Not a directory'), a line naming that file and the fix; else None."""
  if not isinstance(e, (FileExistsError, NotADirectoryError)) or not e.filename:
    return None
  path = os.path.abspath(e.filename)
  while not os.path.lexists(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  if os.path.isdir(path):
    return None
  return (
    f'{path}: a file, where a directory is needed; move the file away or pass another '
    'directory (--workdir, --out, ...)'
  )


@contextlib.contextmanager
def one_line_errors(program: str, on_interrupt: str = ''):
  """Turns the errors a user can cause into one line + exit 1, and Ctrl-C into one line + 130.

  `on_interrupt` is what to do after a Ctrl-C (e.g. 'run the same command to resume').
  """
  try:
    yield
  except KeyboardInterrupt:
    print(
      f'{program}: interrupted' + (f'; {on_interrupt}' if on_interrupt else ''),
      file=sys.stderr,
      flush=True,
    )
    sys.exit(INTERRUPTED_STATUS)
  except Exception as e:  # pylint: disable=broad-except
    if _is_out_of_memory(e):
      print(
        f'{program}: error: out of memory ({first_line(e)}); lower --config.microbatch_size '
        '(windows per pass; the update is the same) or --config.batch_size',
        file=sys.stderr,
      )
      sys.exit(1)
    if not is_user_error(e):
      raise
    message = (_file_in_the_way(e) or str(e)).strip().splitlines()
    print(f'{program}: error: {message[0] if message else type(e).__name__}', file=sys.stderr)
    for line in message[1:]:  # Instructions (e.g. what to download) follow the error line.
      print(f'  {line}', file=sys.stderr)
    sys.exit(1)


def _unknown_config_field(e: BaseException, argv: list[str]) -> str | None:
  """'--config.foo=1: ...' for an override of a field the config lacks, else None.

  ml_collections reports one as AttributeError(KeyError("'foo'")), naming the field only.
  """
  cause = e.args[0] if isinstance(e, AttributeError) and e.args else None
  if not isinstance(cause, KeyError):
    return None
  field = str(cause.args[0] if cause.args else cause).strip('\'"')
  for arg in argv:
    name = arg.split('=', 1)[0].lstrip('-')
    if name.startswith('config.') and field in name.split('.')[1:]:
      return (
        f'{arg}: the config has no field {name[len("config.") :]!r}; see the '
        '--config file (and clipit_jax/config_defaults.py) for its fields'
      )
  return f'the config has no field {field!r}'


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


def _config_path(argv: list[str]) -> str:
  """The value of --config in `argv` ('?' when absent)."""
  for i, arg in enumerate(argv):
    if arg.startswith(('--config=', '-config=')):
      return arg.split('=', 1)[1]
    if arg in ('--config', '-config') and i + 1 < len(argv):
      return argv[i + 1]
  return '?'


def _raised_in(e: BaseException, path: str) -> bool:
  """Whether `e` was raised by code of the file `path` (a config file's `get_config`)."""
  path = os.path.abspath(path)
  tb = e.__traceback__
  while tb is not None:
    if os.path.abspath(tb.tb_frame.f_code.co_filename) == path:
      return True
    tb = tb.tb_next
  return False


def flags_parser(program: str):
  """An `app.run(flags_parser=...)` that reports a bad flag, config file or override in one line."""

  def parse(argv):
    try:
      args = flags.FLAGS(argv)
    except SyntaxError as e:  # In the --config file, which config_flags runs while parsing.
      print(
        f'{program}: error: --config {e.filename}: line {e.lineno}: {e.msg}; fix the file',
        file=sys.stderr,
      )
      sys.exit(2)
    except Exception as e:  # pylint: disable=broad-except
      path = _config_path(argv)
      if _raised_in(e, path):
        message = f'--config {path}: get_config() raised {type(e).__name__}: {first_line(e)}'
      elif isinstance(e, (flags.Error, AttributeError, KeyError, TypeError, ValueError)):
        message = _unknown_config_field(e, argv) or _one_line(e)
      else:
        raise
      print(f'{program}: error: {message}', file=sys.stderr)
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


def int_list(flag: str, values: list[str] | None, example: str = '0,1,2') -> list[int] | None:
  """The integers of the comma-separated list flag `--flag` (None stays None: not given).

  Raises ValueError naming the flag when the list is empty or holds a non-integer.
  """
  if values is None:
    return None
  if not values:
    raise ValueError(f'--{flag} is empty; give one or more integers, e.g. --{flag}={example}')
  try:
    return [int(v) for v in values]
  except ValueError:
    bad = next(v for v in values if not v.strip().lstrip('+-').isdigit())
    raise ValueError(
      f'--{flag}={",".join(values)}: {bad!r} is not an integer; write e.g. --{flag}={example}'
    ) from None


def config_name(config_flag) -> str:
  """'configs/x.py --config.learning_rate=0.001 ...': a parsed config flag's file and every
  override given on the command line (as the experiment tables record them).

  Args:
    config_flag: the flag, e.g. `flags.FLAGS['config']`.
  """
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  overrides = sorted(config_flags.get_override_values(config_flag).items())
  return ' '.join(
    [config_flags.get_config_filename(config_flag)]
    + [f'--{config_flag.name}.{k}={v}' for k, v in overrides]
  )


def start_distributed(
  program: str,
  coordinator: str | None,
  num_processes: int | None,
  process_id: int | None,
  timeout_s: float = 300,
) -> None:
  """`jax.distributed.initialize`, saying what it waits for, and giving up after `timeout_s`.

  A process whose peers do not all join would wait silently, then be aborted by JAX with a
  C++ stack trace; here it prints one line and exits 1 instead. None arguments are left to
  the environment (TPU, SLURM, MPI), as JAX does.
  """
  import jax  # pylint: disable=g-import-not-at-top

  where = coordinator or 'the coordinator the environment names'
  count = f'all {num_processes} processes' if num_processes else 'every process'
  me = '' if process_id is None else f' (this is process {process_id})'
  print(
    f'{program}: waiting up to {timeout_s:g} s for {count} to join at {where}{me}',
    file=sys.stderr,
    flush=True,
  )

  def give_up():
    print(
      f'{program}: error: gave up after {timeout_s:g} s waiting for {count} to join at '
      f'{where}; start each process with the same --coordinator_address and --num_processes '
      'and its own --process_id (or raise --distributed_timeout)',
      file=sys.stderr,
      flush=True,
    )
    os._exit(1)  # pylint: disable=protected-access (the wait is in C++; nothing to clean up)

  timer = threading.Timer(timeout_s, give_up)
  timer.daemon = True
  timer.start()
  try:  # JAX's own limit comes later: the line above is what the user sees.
    jax.distributed.initialize(
      coordinator, num_processes, process_id, initialization_timeout=int(timeout_s) + 60
    )
  finally:
    timer.cancel()


def enable_compilation_cache() -> str | None:
  """Keeps compiled XLA programs on disk, so the next run of a command skips its compiles.

  The directory is `$JAX_COMPILATION_CACHE_DIR` when set (JAX reads it itself), else
  `<cache root>/xla` (`$CLIPIT_CACHE` or `~/.cache/clipit_jax`); `CLIPIT_NO_XLA_CACHE=1`
  turns it off. Only programs that took over a second to compile are kept (JAX's
  default). Returns the directory, or None when off.
  """
  import jax  # pylint: disable=g-import-not-at-top

  if os.environ.get('CLIPIT_NO_XLA_CACHE', '').strip() not in ('', '0'):
    return None
  directory = os.environ.get('JAX_COMPILATION_CACHE_DIR') or str(files.cache_root() / 'xla')
  jax.config.update('jax_compilation_cache_dir', directory)
  return directory

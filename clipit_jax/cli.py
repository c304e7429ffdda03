"""What the command-line entry points share: one-line errors instead of tracebacks."""

import contextlib
import sys

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

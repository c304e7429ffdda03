"""`clipit-encode-beam`'s entry point: checks for Apache Beam before importing the pipeline."""

import importlib
import sys


def main() -> int:
  """`clipit-encode-beam`; without the `beam` extra, one line that says how to install it."""
  try:
    import apache_beam  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    print(
      'clipit-encode-beam: error: Apache Beam is not installed; pip install -e ".[beam]"',
      file=sys.stderr,
    )
    return 1
  return importlib.import_module('clipit_jax.summarize.beam_pipeline').main()

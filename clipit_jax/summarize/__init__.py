"""The product: summarize your own videos (the summarizer, its CLI, batch runs, the demo).

  summarizer.py  `Summarizer` (training-free or a checkpoint), `Summary`, the clipit-summarize CLI
  batch.py       many videos in one run: finding them, output names, `VideoResult`, the index
  beam_pipeline.py  clipit-encode-beam: a corpus CLIP-encoded on Apache Beam into the feature cache

The research core (models, losses, training, data, evaluation) is the rest of `clipit_jax`;
video I/O, the encoders and caption files are in `clipit_jax.media`, below both.
`Summarizer`, `Summary`, `load_model` and `main` are importable from this package directly.
"""

import sys

_SUMMARIZER_NAMES = ('Summarizer', 'Summary', 'TrainedModel', 'load_model', 'main')


def __getattr__(name: str):
  """`clipit_jax.summarize.Summarizer` etc., imported on first use (the submodules stay light)."""
  if name in _SUMMARIZER_NAMES:
    from clipit_jax.summarize import summarizer  # pylint: disable=g-import-not-at-top

    return getattr(summarizer, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def encode_beam_main() -> int:
  """`clipit-encode-beam`; without the `beam` extra, one line that says how to install it."""
  try:
    import apache_beam  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    print(
      'clipit-encode-beam: error: Apache Beam is not installed; pip install -e ".[beam]"',
      file=sys.stderr,
    )
    return 1
  from clipit_jax.summarize import beam_pipeline  # pylint: disable=g-import-not-at-top

  return beam_pipeline.main()

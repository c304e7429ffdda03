"""The product: summarize your own videos (video I/O, CLIP encoders, captions, the summarizer, its CLI).

  video.py       decoding at a fixed rate, lazily; writing the summary video with its audio
  encoders.py    CLIP image and text encoders (hub, local or the offline tiny CLIP), feature cache
  captions.py    caption files (SRT, VTT, plain), the image captioner, uniform caption sampling
  summarizer.py  `Summarizer` (training-free or a checkpoint), `Summary`, the clipit-summarize CLI
  batch.py       many videos in one run: finding them, output names, `VideoResult`, the index

The research core (models, losses, training, data, evaluation) is the rest of `clipit_jax`;
the dataset builders that encode raw videos use `encoders`, `video` and `captions` from here.
`Summarizer`, `Summary`, `load_model` and `main` are importable from this package directly.
"""

_SUMMARIZER_NAMES = ('Summarizer', 'Summary', 'TrainedModel', 'load_model', 'main')


def __getattr__(name: str):
  """`clipit_jax.summarize.Summarizer` etc., imported on first use (the submodules stay light)."""
  if name in _SUMMARIZER_NAMES:
    from clipit_jax.summarize import summarizer  # pylint: disable=g-import-not-at-top

    return getattr(summarizer, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')

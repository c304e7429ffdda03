"""The product: summarize your own videos (the summarizer, its CLI, batch runs, the demo).

  summarizer.py  `Summarizer` (training-free or a checkpoint): a video in, a `Summary` out
  shots.py       shot times, the knapsack selection, frames and texts over time
  summary.py     `Summary` and its files: summary.mp4, summary.json, scores.png
  outputs.py     those files as one unit: staged, locked, published together
  command.py     the clipit-summarize command line
  batch.py       many videos in one run: finding them, output names, `VideoResult`, the index
  beam_pipeline.py  clipit-encode-beam: a corpus CLIP-encoded on Apache Beam into the feature cache
  encode_beam.py    its console script: one line when the beam extra is missing
  demo.py        clipit-demo: the summarizer in a browser page

The research core (models, losses, training, data, evaluation) is the rest of `clipit_jax`;
video I/O, the encoders and caption files are in `clipit_jax.media`, below both.
`Summarizer`, `Summary`, `load_model` and `main` are importable from this package directly.
"""

import importlib

# Public name -> the submodule that defines it.
_NAMES = {
  'Summarizer': 'summarizer',
  'TrainedModel': 'summarizer',
  'load_model': 'summarizer',
  'Summary': 'summary',
  'main': 'command',
}


def __getattr__(name: str):
  """`clipit_jax.summarize.Summarizer` etc., imported on first use (the submodules stay light)."""
  if name in _NAMES:
    module = importlib.import_module(f'{__name__}.{_NAMES[name]}')
    return getattr(module, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')

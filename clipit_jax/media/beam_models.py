"""Beam transforms whose workers load their models once: the corpus encoder's and the builders'.

`map_with_models(items, fn, load)` runs `fn(item, *load())` over `items` on any Beam runner,
with `load` called once per worker (`DoFn.setup`). `clipit-encode-beam`
(`beam_pipeline.py`) encodes videos with it, and the benchmark builders' CLIP configs
(`datasets/summe_tvsum.py`) make their examples with it when TFDS is given Beam options.
Needs the `beam` extra; light otherwise (no JAX or model at import).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam

from clipit_jax import cli


class WithModels(beam.DoFn):
  """`fn(element, *models)` for every element, with `models = load()` once per worker.

  `fn` returns an iterable of outputs (`TaggedOutput`s included); `load` runs in
  `setup`, so a worker keeps its models for every bundle it processes. Both must
  pickle (module-level functions, or `functools.partial`s of them).
  """

  def __init__(self, fn: Callable[..., Iterable[Any]], load: Callable[[], tuple]):
    super().__init__()
    self._fn, self._load = fn, load
    self._models = None

  def setup(self):
    quiet_workers()
    self._models = self._load()

  def process(self, element) -> Iterator[Any]:
    yield from self._fn(element, *self._models)


def quiet_workers() -> None:
  """A worker's set-up: the XLA compile cache on."""
  cli.enable_compilation_cache()


def map_with_models(
  items: Sequence[Any],
  fn: Callable[..., Iterable[Any]],
  load: Callable[[], tuple],
  *,
  tagged: Sequence[str] = (),
) -> beam.PTransform:
  """A PTransform from the root: `items`, spread over the workers, through `WithModels`.

  With `tagged`, the result is a `DoOutputsTuple`: its `main` and those tags.
  """
  apply = beam.ParDo(WithModels(fn, load))
  if tagged:
    apply = apply.with_outputs(*tagged, main='main')
  return beam.Create(list(items)) | 'Spread' >> beam.Reshuffle() | 'Apply' >> apply

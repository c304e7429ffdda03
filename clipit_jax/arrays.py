"""Array helpers shared by every layer: fixed-shape batches for jitted calls, uniform sampling."""

from collections.abc import Callable, Iterator, Sequence

import numpy as np


def fixed_shape_batches(
  arrays: Sequence[np.ndarray],
  batch_size: int,
  *,
  bucket: Callable[[int], int] | None = None,
  pad: str = 'edge',
) -> Iterator[tuple[list[np.ndarray], int]]:
  """Consecutive batches of `arrays` (one leading size n), padded so a jitted call sees
  fixed shapes: yields (the padded parts, how many rows are real).

  Each batch is padded to `batch_size`, or to `bucket(real rows)`; padding repeats the
  last row ('edge') or is zeros ('zeros'). Callers drop the outputs of padded rows.
  """
  if pad not in ('edge', 'zeros'):
    raise ValueError(f"unknown pad {pad!r}; expected 'edge' or 'zeros'")
  for start in range(0, len(arrays[0]), batch_size):
    parts = [a[start : start + batch_size] for a in arrays]
    real = len(parts[0])
    size = bucket(real) if bucket else batch_size
    if size > real:
      parts = [
        np.pad(
          p,
          [(0, size - real)] + [(0, 0)] * (p.ndim - 1),
          mode='edge' if pad == 'edge' else 'constant',
        )
        for p in parts
      ]
    yield parts, real


def uniform_indices(n: int, k: int) -> np.ndarray:
  """`k` indices spread evenly over `range(n)`, first and last included (rounded) -> `[k]` int."""
  return np.round(np.linspace(0, n - 1, k)).astype(int)

"""From dataset records to device batches.

A video becomes non-overlapping windows of `window` frames (the last one padded and
masked); windows are shuffled per epoch with a seed, grouped in global batches, the
global batch is split evenly over hosts (`jax.process_index()`) and then over local
devices: a batch leaves here as arrays `[local_devices, per_device, ...]`. The last
partial batch is padded with empty samples, which the train step ignores.
"""

import dataclasses
from collections.abc import Iterator
from typing import ClassVar, Protocol

import numpy as np

from clipit_jax import arrays

Batch = dict[str, np.ndarray]


class GroundTruth(Protocol):
  """What a video's frame scores are compared with (evaluators.KeyshotTruth, QfvsTruth).

  protocol: the evaluation protocol's name ('keyshot', 'qfvs'); videos of one protocol
  are averaged together. metrics: the names `evaluate` returns, in order.
  """

  protocol: ClassVar[str]
  metrics: ClassVar[tuple[str, ...]]

  def evaluate(self, scores: np.ndarray) -> dict[str, float]:
    """The metrics of the frame scores `[n_steps]` against this ground truth."""
    ...


@dataclasses.dataclass
class Video:
  """One video (or one video-query pair) in memory.

  features `[n_steps, frame_dim]` at the sub-sampled frames; the two supervision
  targets at those frames: labels `[n_steps]` 0/1 keyframes (the paper's Lc) and
  importance `[n_steps]` in [0, 1] (the annotators' mean score, min-max normalised per
  video); text `[L, text_dim]` + text_mask `[L]` (captions or the query).
  `truth` is what its protocol compares the scores with (a `GroundTruth`:
  evaluators.KeyshotTruth or evaluators.QfvsTruth; None for videos only trained on).
  """

  ref: tuple[str, str]
  features: np.ndarray
  labels: np.ndarray
  importance: np.ndarray
  text: np.ndarray
  text_mask: np.ndarray
  truth: GroundTruth | None = None


def split_into_windows(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
  """Splits `[T, ...]` into zero-padded windows `[ceil(T/window), window, ...]` and a mask.

  The mask `[n_windows, window]` is True on real frames. A video of zero frames
  gives zero windows.
  """
  x = np.asarray(x)
  length = x.shape[0]
  n_windows = -(-length // window)
  padded = np.zeros((n_windows * window,) + x.shape[1:], x.dtype)
  padded[:length] = x
  mask = np.arange(n_windows * window) < length
  return padded.reshape((n_windows, window) + x.shape[1:]), mask.reshape(n_windows, window)


def stitch_windows(windows: np.ndarray, length: int) -> np.ndarray:
  """Inverse of `split_into_windows`: `[n_windows, window, ...]` -> `[length, ...]`."""
  windows = np.asarray(windows)
  return windows.reshape((-1,) + windows.shape[2:])[:length]


def select_captions(embeddings: np.ndarray, num_captions: int) -> tuple[np.ndarray, np.ndarray]:
  """M caption embeddings sampled uniformly over time, padded and masked when fewer.

  Args:
    embeddings: `[n, text_dim]` caption embeddings in time order (n may be 0).
    num_captions: M.
  Returns:
    `[M, text_dim]` and the mask `[M]`.
  """
  n, dim = embeddings.shape
  out = np.zeros((num_captions, dim), np.float32)
  mask = np.zeros((num_captions,), bool)
  if n <= num_captions:
    out[:n], mask[:n] = embeddings, True
  else:
    index = arrays.uniform_indices(n, num_captions)
    out[:], mask[:] = embeddings[index], True
  return out, mask


def video_windows(videos: list[Video], window: int) -> Batch:
  """Every video cut into windows of `window` frames.

  Returns per sample (window) `frame_mask`, `labels`, `importance` `[N, window]`, `text`,
  `text_mask`, `video_index` `[N]` and `window_id` `[N]`, an index into `frame_table`
  `[n_windows, window, D]`. Videos that share one features array (the queries of a
  QFVS video) share their windows in the table, so features are held once.
  """
  if not videos:
    raise ValueError('no videos to make windows of')
  tables, first_window = [], {}
  fields: dict[str, list[np.ndarray]] = {
    k: []
    for k in ('window_id', 'frame_mask', 'labels', 'importance', 'text', 'text_mask', 'video_index')
  }
  n_table = 0
  for i, video in enumerate(videos):
    n = video.features.shape[0]
    n_windows = -(-n // window)
    if id(video.features) not in first_window:
      tables.append(split_into_windows(video.features.astype(np.float32), window)[0])
      first_window[id(video.features)] = n_table
      n_table += n_windows
    labels, frame_mask = split_into_windows(video.labels.astype(np.float32), window)
    fields['labels'].append(labels)
    fields['frame_mask'].append(frame_mask)
    fields['importance'].append(split_into_windows(video.importance.astype(np.float32), window)[0])
    fields['window_id'].append(first_window[id(video.features)] + np.arange(n_windows))
    fields['text'].append(np.broadcast_to(video.text, (n_windows,) + video.text.shape))
    fields['text_mask'].append(
      np.broadcast_to(video.text_mask, (n_windows,) + video.text_mask.shape)
    )
    fields['video_index'].append(np.full((n_windows,), i, np.int32))
  windows = {k: np.concatenate(v) for k, v in fields.items()}
  windows['frame_table'] = np.concatenate(tables)
  return windows


def padded_batch_size(batch_size: int, num_shards: int) -> int:
  """The global batch rounded up so that it splits evenly into `num_shards`."""
  return -(-batch_size // num_shards) * num_shards


def epoch_batches(
  windows: Batch,
  batch_size: int,
  *,
  seed: int,
  epoch: int,
  shuffle: bool = True,
  process_index: int = 0,
  process_count: int = 1,
  local_devices: int = 1,
) -> Iterator[Batch]:
  """One epoch of this host's share of global batches, shaped `[local_devices, per_device, ...]`.

  The order depends only on (seed, epoch), so every host agrees on it and a resumed
  run sees the same batches. The last global batch is padded with empty samples
  (frame_mask all False).
  """
  n = windows['window_id'].shape[0]
  order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
  global_size = padded_batch_size(batch_size, process_count * local_devices)
  host_size = global_size // process_count
  per_sample = ('frame_mask', 'labels', 'importance', 'text', 'text_mask')
  for start in range(0, n, global_size):
    index = order[start : start + global_size]
    batch = {k: windows[k][index] for k in per_sample}
    batch['frames'] = windows['frame_table'][windows['window_id'][index]]
    pad = global_size - len(index)
    if pad:
      batch = {
        k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) for k, v in batch.items()
      }
    host = {
      k: v[process_index * host_size : (process_index + 1) * host_size] for k, v in batch.items()
    }
    yield {
      k: v.reshape((local_devices, host_size // local_devices) + v.shape[1:])
      for k, v in host.items()
    }


def num_batches(num_windows: int, batch_size: int, num_shards: int) -> int:
  """Batches per epoch for `epoch_batches`."""
  return -(-num_windows // padded_batch_size(batch_size, num_shards))


def real_samples_per_batch(num_windows: int, batch_size: int, num_shards: int) -> list[int]:
  """The real (not padding) samples of each global batch of `epoch_batches`."""
  size = padded_batch_size(batch_size, num_shards)
  return [min(size, num_windows - start) for start in range(0, num_windows, size)]

"""Reading built datasets into `input_pipeline.Video`s for a data config.

`load_data(config)` finds `config.data.dataset` in the registry (registry.py) and calls the
dataset's own `load`; this module holds what those loaders share: preparing a TFDS builder
(`load_builder`), reading its records and turning benchmark-style records into videos.

`config.data` fields read here: dataset (a registered name: 'summe', 'tvsum', 'synthetic',
'qfvs', ...), split, splits_file (a split file of the field, see split_files.py; None: our
seeded splits), features (the builder config, e.g. 'googlenet' or 'clip'), data_dir,
manual_dir; each dataset's loader reads the rest (setting, part, validation_fraction).
"""

import dataclasses
import errno
import os
import shutil
import sys

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from clipit_jax import evaluators
from clipit_jax import input_pipeline
from clipit_jax import protocol
from clipit_jax.datasets import errors
from clipit_jax.datasets import registry
from clipit_jax.datasets import split_files


def decode_text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def file_stamps(manual_dir: str, paths: list[str]) -> dict[str, list[int]]:
  """{path relative to `manual_dir`: [size, mtime_ns]} of the files a dataset is built from.

  A builder records them in its dataset's metadata (`source_files`), so that `load_builder`
  rebuilds a prepared dataset whose sources changed since.
  """
  stamps = {}
  for path in paths:
    stat = os.stat(path)
    stamps[os.path.relpath(path, manual_dir)] = [stat.st_size, stat.st_mtime_ns]
  return stamps


def _changed_sources(builder: tfds.core.DatasetBuilder, manual_dir: str) -> list[str]:
  """Source files (relative to `manual_dir`) that differ from when `builder` was prepared.

  Files since removed do not count: a prepared dataset stands without its sources.
  """
  recorded = builder.info.metadata.get('source_files') if builder.info.metadata else None
  present = [name for name in recorded or {} if os.path.isfile(os.path.join(manual_dir, name))]
  now = file_stamps(manual_dir, [os.path.join(manual_dir, n) for n in present])
  return [name for name in present if list(recorded[name]) != now[name]]


def _prepare(builder: tfds.core.DatasetBuilder, manual_dir: str) -> None:
  """Builds the dataset from `manual_dir`; a full disk is one line."""
  try:
    builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir),
      file_format='array_record',
    )
  except errors.DatasetError:
    raise
  except Exception as e:  # pylint: disable=broad-except (TFDS and array_record wrap OSErrors)
    full = os.strerror(errno.ENOSPC) in str(e) or getattr(e, 'errno', None) == errno.ENOSPC
    if not (full or isinstance(e, OSError)):
      raise
    reason = 'no space left on device' if full else ' '.join(str(e).split())[:200]
    fix = 'free space there' if full else 'check that you can write there'
    raise errors.DatasetError(
      f'cannot build {builder.name}/{builder.builder_config.name} in '
      f'{builder.data_dir_root} ({reason}); {fix}, or set config.data.data_dir '
      'to another directory, and run again'
    ) from None


def load_builder(
  name: str,
  features: str,
  data_dir: str | None,
  manual_dir: str | None = None,
  *,
  needs_manual_dir: bool = True,
) -> tfds.core.DatasetBuilder:
  """The builder of dataset `name` (registry) and config `features`, prepared (from the
  manual directory) if needed.

  A prepared dataset whose source files changed since it was built (size or
  modification time) is rebuilt from them, saying so.
  """
  spec = registry.get(name)  # Imports the dataset's module, which defines its builder.
  data_dir = os.path.expanduser(data_dir) if data_dir else None
  builder = tfds.builder(f'{spec.builder}/{features}', data_dir=data_dir)
  manual_dir = (
    os.path.expanduser(manual_dir)
    if manual_dir
    else os.path.join(os.fspath(builder.data_dir_root), 'downloads', 'manual')
  )
  if builder.is_prepared():
    changed = _changed_sources(builder, manual_dir)
    if not changed:
      return builder
    print(
      f'{spec.builder}/{features}: {", ".join(changed)} changed in {manual_dir} since the '
      f'dataset was built; rebuilding {builder.data_dir}',
      file=sys.stderr,
      flush=True,
    )
    shutil.rmtree(builder.data_dir)
    builder = tfds.builder(f'{spec.builder}/{features}', data_dir=data_dir)
  elif needs_manual_dir and (not os.path.isdir(manual_dir) or not os.listdir(manual_dir)):
    raise errors.DatasetError(
      f'{spec.builder} is not built and its manual directory {manual_dir} is '
      f'missing or empty.\n{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}'
    )
  _prepare(builder, manual_dir)
  return builder


def read_records(builder: tfds.core.DatasetBuilder) -> dict[str, dict]:
  """All records of the 'videos' split, keyed by video key (record order is shuffled on disk)."""
  source = builder.as_data_source()['videos']
  records = {}
  for i in range(len(source)):
    record = source[i]
    records[decode_text(record['video_key'])] = record
  return records


def benchmark_video(dataset: str, record: dict, num_captions: int) -> input_pipeline.Video:
  """A generic-summary video from a benchmark (or synthetic) record."""
  text, text_mask = input_pipeline.select_captions(
    np.asarray(record['caption_embeddings'], np.float32), num_captions
  )
  truth = evaluators.KeyshotTruth(
    **{
      k: np.asarray(record[k])
      for k in ('gtscore', 'picks', 'change_points', 'user_summary', 'user_scores')
    },
    n_frames=int(record['n_frames']),
    video_name=decode_text(record['video_name']),
    f1_reduction=registry.get(dataset).f1_reduction,
  )
  return input_pipeline.Video(
    ref=(dataset, decode_text(record['video_key'])),
    features=np.asarray(record['features'], np.float32),
    labels=np.asarray(record['gtsummary'], np.float32),
    importance=protocol.min_max(record['gtscore']).astype(np.float32),
    text=text,
    text_mask=text_mask,
    truth=truth,
  )


def query_video(dataset: str, record: dict) -> input_pipeline.Video:
  """A query-focused video: the query embedding is the single text token."""
  video = benchmark_video(dataset, record, num_captions=1)
  video.text = np.asarray(record['query_embedding'], np.float32).reshape(1, -1)
  video.text_mask = np.ones((1,), bool)
  video.truth = dataclasses.replace(video.truth, query=decode_text(record['query']))
  return video


def num_splits(data: ml_collections.ConfigDict) -> int:
  """How many splits `data` has: the split file's entries, else the dataset's own count
  (5 standard splits, 1 for transfer, 4 QFVS rounds)."""
  if data.splits_file:
    return len(split_files.read(data.splits_file).entries)
  return registry.get(data.dataset).num_splits(data)


def load_data(config: ml_collections.ConfigDict) -> dict[str, list[input_pipeline.Video]]:
  """Train, validation and test videos for `config.data`, checked against `config.model`."""
  data = config.data
  spec = registry.get(data.dataset)
  if spec.load is None:
    raise ValueError(
      f'{data.dataset} only augments the training data of others; expected one of '
      f'{registry.names()}'
    )
  for field, value, choices in (
    ('features', data.features, spec.features),
    ('setting', data.setting, spec.settings),
  ):
    if value not in choices:
      raise ValueError(f'{data.dataset} has no {field} {value!r}; expected one of {list(choices)}')
  splits = spec.load(data, config.model.num_captions)
  if not splits['train']:
    raise errors.DatasetError(f'{data.dataset}/{data.setting}: no training videos')
  first = splits['train'][0]
  for field, width, expected in (
    ('frame_dim', first.features.shape[1], config.model.frame_dim),
    ('text_dim', first.text.shape[1], config.model.text_dim),
  ):
    if width != expected:
      raise errors.DatasetError(
        f'{data.dataset}/{data.features}: the data is {width}-d but '
        f'config.model.{field} is {expected}; set it to {width}'
      )
  return splits

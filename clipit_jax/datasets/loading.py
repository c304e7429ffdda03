"""Reading built datasets into `input_pipeline.Video`s for a data config.

`config.data` fields read here: dataset ('summe', 'tvsum', 'synthetic', 'qfvs'),
setting, split, splits_file (a split file of the field, see split_files.py; None: our
seeded splits), features (the builder config: 'googlenet' or 'clip'), data_dir,
manual_dir, validation_fraction.
"""

import dataclasses
import errno
import os
import shutil
import sys

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from clipit_jax import protocol
from clipit_jax import evaluators
from clipit_jax import input_pipeline
from clipit_jax.datasets import summe_tvsum
from clipit_jax.datasets import errors
from clipit_jax.datasets import qfvs
from clipit_jax.datasets import settings
from clipit_jax.datasets import split_files
from clipit_jax.datasets import synthetic  # noqa: F401 (registers the builder)


# The CLIP image encoder behind each builder config's features (None: not CLIP features).
CLIP_OF_FEATURES = {
  'tiny': 'tiny',
  'small': 'tiny',
  'vit_b32': 'openai/clip-vit-base-patch32',
  'clip': 'openai/clip-vit-base-patch32',
  'clip_tiny': 'tiny',
  'googlenet': None,
}


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def _changed_sources(builder: tfds.core.DatasetBuilder, manual_dir: str) -> list[str]:
  """Source files (relative to `manual_dir`) that differ from when `builder` was prepared.

  Files since removed do not count: a prepared dataset stands without its sources.
  """
  recorded = builder.info.metadata.get('source_files') if builder.info.metadata else None
  present = [name for name in recorded or {} if os.path.isfile(os.path.join(manual_dir, name))]
  now = summe_tvsum.file_stamps(manual_dir, [os.path.join(manual_dir, n) for n in present])
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
  """The builder `clipit_<name>/<features>`, prepared (from the manual directory) if needed.

  A prepared dataset whose source files changed since it was built (size or
  modification time) is rebuilt from them, saying so.
  """
  data_dir = os.path.expanduser(data_dir) if data_dir else None
  builder = tfds.builder(f'clipit_{name}/{features}', data_dir=data_dir)
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
      f'clipit_{name}/{features}: {", ".join(changed)} changed in {manual_dir} since the '
      f'dataset was built; rebuilding {builder.data_dir}',
      file=sys.stderr,
      flush=True,
    )
    shutil.rmtree(builder.data_dir)
    builder = tfds.builder(f'clipit_{name}/{features}', data_dir=data_dir)
  elif needs_manual_dir and (not os.path.isdir(manual_dir) or not os.listdir(manual_dir)):
    raise errors.DatasetError(
      f'clipit_{name} is not built and its manual directory {manual_dir} is '
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
    records[_text(record['video_key'])] = record
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
    video_name=_text(record['video_name']),
    f1_reduction=settings.F1_REDUCTION.get(dataset, 'avg'),
  )
  return input_pipeline.Video(
    ref=(dataset, _text(record['video_key'])),
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
  video.truth = dataclasses.replace(video.truth, query=_text(record['query']))
  return video


def load_synthetic(
  data: ml_collections.ConfigDict, num_captions: int
) -> dict[str, list[input_pipeline.Video]]:
  """The synthetic benchmark's generic ('videos') or query-focused ('queries') part.

  Videos are split 80/20 by the standard split `data.split`; every query of a video
  goes where its video goes.
  """
  if data.part not in ('generic', 'query'):
    raise ValueError(f"unknown synthetic part {data.part!r}; expected 'generic' or 'query'")
  builder = load_builder(
    'synthetic', data.features, data.data_dir, data.get('manual_dir'), needs_manual_dir=False
  )
  source = builder.as_data_source()['videos' if data.part == 'generic' else 'queries']
  records = [source[i] for i in range(len(source))]
  by_video: dict[str, list[dict]] = {}
  for record in records:
    by_video.setdefault(_text(record['video_key']), []).append(record)
  chosen = settings.resolve_setting(
    'synthetic', 'standard', data.split, {'synthetic': list(by_video)}
  )
  train, validation = settings.hold_out_validation(chosen['train'], data.validation_fraction)

  def videos(refs):
    out = []
    for _, key in refs:
      for record in sorted(by_video[key], key=lambda r: _text(r['query'])):
        out.append(
          benchmark_video('synthetic', record, num_captions)
          if data.part == 'generic'
          else query_video('synthetic', record)
        )
    return out

  return dict(train=videos(train), validation=videos(validation), test=videos(chosen['test']))


def qfvs_videos(record: dict) -> list[input_pipeline.Video]:
  """One query-focused video per query of a QFVS record; all share the record's features."""
  features = np.asarray(record['features'], np.float32)
  shot_of_frame = np.asarray(record['shot_of_frame'])
  shot_concepts = np.asarray(record['shot_concepts'])
  videos = []
  for i, query in enumerate(_text(record['queries']).split('\n')):
    oracle = np.asarray(record['oracle'][i])
    user_shots = np.asarray(record['user_shots'][i])
    videos.append(
      input_pipeline.Video(
        ref=('qfvs', f'{_text(record["video_key"])}/{query}'),
        features=features,
        labels=oracle[shot_of_frame].astype(np.float32),
        importance=user_shots.mean(axis=0)[shot_of_frame].astype(np.float32),
        text=np.asarray(record['query_embeddings'][i : i + 1], np.float32),
        text_mask=np.ones((1,), bool),
        truth=evaluators.QfvsTruth(
          shot_of_frame=shot_of_frame,
          shot_concepts=shot_concepts,
          oracle=oracle,
          user_shots=user_shots,
          query=query,
        ),
      )
    )
  return videos


def load_qfvs(data: ml_collections.ConfigDict) -> dict[str, list[input_pipeline.Video]]:
  """The videos of QFVS round `data.split` (0-3): two train, one validation, one test video."""
  if not 0 <= data.split < len(qfvs.VIDEOS):
    raise ValueError(f'QFVS has rounds 0-{len(qfvs.VIDEOS) - 1}, got split={data.split}')
  records = read_records(load_builder('qfvs', data.features, data.data_dir, data.get('manual_dir')))
  chosen = qfvs.rounds()[data.split]
  return {
    part: [v for key in keys for v in qfvs_videos(records[key])] for part, keys in chosen.items()
  }


def load_setting(
  data: ml_collections.ConfigDict, num_captions: int
) -> dict[str, list[input_pipeline.Video]]:
  """Train, validation and test videos of a benchmark setting (SumMe/TVSum).

  The split is entry `data.split` of `data.splits_file` when one is given, else our
  seeded split. Returns {'train', 'validation', 'test'} lists of videos; the validation
  videos are held out of the training ones.
  """
  splits = split_files.read(data.splits_file) if data.get('splits_file') else None
  if splits is not None:
    needed = split_files.entry_datasets(splits, data.split, data.dataset)
  else:
    needed = [data.dataset] if data.setting == 'standard' else list(settings.BENCHMARKS)
  records = {
    name: read_records(load_builder(name, data.features, data.data_dir, data.get('manual_dir')))
    for name in needed
  }
  keys = {name: list(r) for name, r in records.items()}
  if splits is not None:
    chosen = split_files.split_videos(splits, data.split, data.dataset, data.setting, keys)
  else:
    chosen = settings.resolve_setting(data.dataset, data.setting, data.split, keys)
  train, validation = settings.hold_out_validation(chosen['train'], data.validation_fraction)

  def videos(refs):
    return [benchmark_video(d, records[d][k], num_captions) for d, k in refs]

  return dict(train=videos(train), validation=videos(validation), test=videos(chosen['test']))


def num_splits(data: ml_collections.ConfigDict) -> int:
  """How many splits `data` has: the split file's entries, else 5 (1 for transfer, 4 QFVS rounds)."""
  if data.get('splits_file'):
    return len(split_files.read(data.splits_file).entries)
  if data.dataset == 'qfvs':
    return len(qfvs.VIDEOS)
  return 1 if data.get('setting') == 'transfer' else settings.NUM_STANDARD_SPLITS


def load_data(config: ml_collections.ConfigDict) -> dict[str, list[input_pipeline.Video]]:
  """Train, validation and test videos for `config.data`, checked against `config.model`."""
  data = config.data
  if data.dataset in settings.TARGETS:
    splits = load_setting(data, config.model.num_captions)
  elif data.dataset == 'synthetic':
    splits = load_synthetic(data, config.model.num_captions)
  elif data.dataset == 'qfvs':
    splits = load_qfvs(data)
  else:
    raise ValueError(
      f'unknown dataset {data.dataset!r}; expected one of '
      f'{settings.TARGETS + ("synthetic", "qfvs")}'
    )
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

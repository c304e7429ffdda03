"""The field's split files: the train/test videos every published number was measured on.

A file is a list with one entry per split, each `{"train_keys": [...], "test_keys": [...]}`:

- JSON, as written by vsumm-reinforce's `create_split.py`, VASNet and PGL-SUM;
- YAML, DSNet's `splits/*.yml`.

A key names a video in one of three forms; the h5 file's stem names its dataset:

    video_7                                                the target dataset's video_7
    eccv16_dataset_tvsum_google_pool5/video_7              (VASNet's augmented files)
    ../datasets/eccv16_dataset_tvsum_google_pool5.h5/video_7   (DSNet)

Every problem (an unknown stem or video, an empty test set, a key in both train and
test, an entry that does not fit the setting) is a one-line `errors.DatasetError` naming it.
"""

import dataclasses
import hashlib
import json
import os
import posixpath
import re

import yaml

from clipit_jax.datasets import errors
from clipit_jax.datasets import h5_files
from clipit_jax.datasets import settings

VideoRef = settings.VideoRef
_STEM = re.compile(r'eccv16_dataset_([a-z]+)_google_pool5')
_PARSERS = {
  '.json': ('JSON', json.loads),
  '.yml': ('YAML', yaml.safe_load),
  '.yaml': ('YAML', yaml.safe_load),
}
_SHOWN = 5  # Keys named in an error message.


@dataclasses.dataclass(frozen=True)
class SplitsFile:
  """A parsed split file: `entries[k]` = {'train': keys, 'test': keys}, keys as written."""

  path: str
  sha256: str
  entries: list[dict[str, list[str]]]

  @property
  def name(self) -> str:
    return os.path.basename(self.path)

  def record(self, entry: int) -> dict[str, str | int]:
    """What eval.json and result.json keep: the file's name, path, sha256 and the entry."""
    return dict(name=self.name, path=self.path, sha256=self.sha256, entry=entry)


def _named(keys) -> str:
  keys = sorted(keys)
  return ', '.join(keys[:_SHOWN]) + (
    f' and {len(keys) - _SHOWN} more' if len(keys) > _SHOWN else ''
  )


def read(path: str) -> SplitsFile:
  """Reads and checks the structure of a split file (.json, .yml or .yaml)."""
  path = os.path.expanduser(path)
  name = os.path.basename(path)
  suffix = os.path.splitext(path)[1].lower()
  if suffix not in _PARSERS:
    raise errors.DatasetError(f'{path}: a split file must be .json, .yml or .yaml')
  if not os.path.isfile(path):
    raise errors.DatasetError(f'{path}: split file not found')
  with open(path, 'rb') as f:
    raw = f.read()
  kind, parse = _PARSERS[suffix]
  try:
    data = parse(raw.decode())
  except (ValueError, yaml.YAMLError) as e:  # UnicodeDecodeError and JSONDecodeError too.
    raise errors.DatasetError(
      f'{path}: cannot be read as {kind}: {" ".join(str(e).split())}'
    ) from None
  if not isinstance(data, list):
    raise errors.DatasetError(
      f'{path}: expected a list of splits ({{"train_keys": [...], '
      f'"test_keys": [...]}}, ...), got {type(data).__name__}'
    )
  if not data:
    raise errors.DatasetError(f'{path}: holds no split')
  entries = []
  for i, entry in enumerate(data):
    lists = {}
    for part in ('train', 'test'):
      keys = entry.get(f'{part}_keys') if isinstance(entry, dict) else None
      if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise errors.DatasetError(f'{name} entry {i}: needs "{part}_keys", a list of video keys')
      lists[part] = keys
    entries.append(lists)
  return SplitsFile(path=path, sha256=hashlib.sha256(raw).hexdigest(), entries=entries)


def parse_key(key: str, target: str) -> VideoRef:
  """(dataset, video key) of a key in any of the three forms; plain keys are the target's."""
  directory, video = posixpath.split(key.strip().replace('\\', '/'))
  if not directory:
    return target, video
  stem = posixpath.basename(directory)
  stem = stem[: -len('.h5')] if stem.endswith('.h5') else stem
  match = _STEM.fullmatch(stem)
  if not match or match.group(1) not in settings.BENCHMARKS or not video:
    raise errors.DatasetError(
      f'unknown dataset file {stem!r} in the key {key!r}; expected '
      f'eccv16_dataset_<{"|".join(settings.BENCHMARKS)}>_google_pool5'
    )
  return match.group(1), video


def _entry(splits: SplitsFile, entry: int) -> dict[str, list[str]]:
  if not 0 <= entry < len(splits.entries):
    raise errors.DatasetError(
      f'{splits.name} has entries 0-{len(splits.entries) - 1}, got split={entry}'
    )
  return splits.entries[entry]


def entry_datasets(splits: SplitsFile, entry: int, target: str) -> list[str]:
  """The datasets an entry's keys name (to know which builders to load)."""
  where = f'{splits.name} entry {entry}'
  datasets = set()
  for keys in _entry(splits, entry).values():
    for key in keys:
      try:
        datasets.add(parse_key(key, target)[0])
      except errors.DatasetError as e:
        raise errors.DatasetError(f'{where}: {e}') from None
  return sorted(datasets | {target})


def split_videos(
  splits: SplitsFile, entry: int, target: str, setting: str, keys: dict[str, list[str]]
) -> dict[str, list[VideoRef]]:
  """{'train': [...], 'test': [...]} (dataset, key) pairs of an entry, sorted and checked.

  Args:
    splits: the file.
    entry: which split (`config.data.split`).
    target: the dataset evaluated on; plain `video_N` keys are its videos.
    setting: 'standard', 'augment' or 'transfer': the entry must fit it (standard trains
      on the target only, augment on it and others, transfer on others only).
    keys: the video keys of every dataset in `entry_datasets`.
  """
  where = f'{splits.name} entry {entry}'
  raw = _entry(splits, entry)
  refs = {}
  for part in ('train', 'test'):
    try:
      refs[part] = sorted({parse_key(k, target) for k in raw[part]})
    except errors.DatasetError as e:
      raise errors.DatasetError(f'{where}: {e}') from None
  if not refs['test']:
    raise errors.DatasetError(f'{where}: the test set is empty')
  if not refs['train']:
    raise errors.DatasetError(f'{where}: the training set is empty')
  both = set(refs['train']) & set(refs['test'])
  if both:
    raise errors.DatasetError(
      f'{where}: in both train and test: {_named(f"{d}/{k}" for d, k in both)}'
    )
  known = {d: set(v) for d, v in keys.items()}
  unknown = [f'{d}/{k}' for d, k in refs['train'] + refs['test'] if k not in known[d]]
  if unknown:
    raise errors.DatasetError(f'{where}: no such video: {_named(unknown)}')
  others = sorted({d for d, _ in refs['test'] if d != target})
  if others:
    raise errors.DatasetError(
      f'{where}: tests on {", ".join(others)} videos, but the target dataset is {target}'
    )
  train_datasets = {d for d, _ in refs['train']}
  fits = {
    'standard': train_datasets == {target},
    'augment': target in train_datasets and len(train_datasets) > 1,
    'transfer': target not in train_datasets,
  }
  if not fits.get(setting, False):
    raise errors.DatasetError(
      f'{where}: training on {", ".join(sorted(train_datasets))} does not '
      f'fit the {setting} setting of {target}'
    )
  if all('/' not in k.replace('\\', '/') for k in raw['train'] + raw['test']):
    listed = {k for _, k in refs['train'] + refs['test']}
    missing = set(keys[target]) - listed
    if missing:  # Plain keys name no dataset: a file of another dataset would pass unseen.
      raise errors.DatasetError(
        f'{where}: its keys cover {len(listed)} of the {len(keys[target])} '
        f'{target} videos (not {_named(missing)}); is it a file of another '
        f'dataset? Write keys as {h5_files.h5_filename(target)[:-3]}/video_N '
        'to use a subset'
      )
  return refs

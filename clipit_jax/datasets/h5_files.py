"""Reading the benchmark feature files every paper uses (Zhang et al., ECCV 2016).

`eccv16_dataset_{summe,tvsum,youtube,ovp}_google_pool5.h5` hold one group per video
(`video_1`, `video_2`, ...) with:

  features        [n_steps, 1024]  GoogLeNet pool5 at the sub-sampled frames `picks`
  gtscore         [n_steps]        importance at the sub-sampled frames
  gtsummary       [n_steps]        0/1 keyframe labels at the sub-sampled frames
  user_summary    [users, n_frames] 0/1 summaries of each annotator over all frames
  change_points   [shots, 2]       inclusive frame ranges of the KTS shots
  n_frame_per_seg [shots]
  n_frames, n_steps               scalars
  picks           [n_steps]        frame index of each sub-sampled frame
  video_name                       (SumMe and TVSum files only)
"""

import dataclasses
import os
from collections.abc import Iterator

import h5py
import numpy as np

REQUIRED_FIELDS = ('features', 'gtscore', 'gtsummary', 'user_summary', 'change_points',
                   'n_frame_per_seg', 'n_frames', 'picks')


class DatasetError(ValueError):
  """A dataset file is missing, unreadable or inconsistent; the message says what to do."""


@dataclasses.dataclass
class H5Video:
  """One video of a benchmark file, as numpy arrays (shapes in the module docstring)."""
  key: str
  name: str
  features: np.ndarray
  gtscore: np.ndarray
  gtsummary: np.ndarray
  user_summary: np.ndarray
  change_points: np.ndarray
  n_frame_per_seg: np.ndarray
  n_frames: int
  picks: np.ndarray


def h5_filename(dataset: str) -> str:
  return f'eccv16_dataset_{dataset}_google_pool5.h5'


def _decode_name(value) -> str:
  value = np.asarray(value)
  if value.dtype.kind in 'SO':
    value = value.item()
  return value.decode() if isinstance(value, bytes) else str(value)


def _video_sort_key(key: str) -> tuple[int, str]:
  suffix = key.rsplit('_', 1)[-1]
  return (int(suffix), key) if suffix.isdigit() else (1 << 30, key)


def _read_video(path: str, key: str, group: h5py.Group, feature_dim: int | None) -> H5Video:
  missing = [f for f in REQUIRED_FIELDS if f not in group]
  if missing:
    raise DatasetError(f'{path}: {key} lacks {", ".join(missing)}; is this an eccv16 '
                       '*_google_pool5.h5 file? Re-download it.')
  arrays = {f: group[f][()] for f in REQUIRED_FIELDS}
  features = np.asarray(arrays['features'], np.float32)
  n_steps = features.shape[0]
  if features.ndim != 2 or (feature_dim is not None and features.shape[1] != feature_dim):
    raise DatasetError(f'{path}: {key}/features has shape {features.shape}, expected '
                       f'[n_steps, {feature_dim}]; use the GoogLeNet pool5 file of the benchmark')
  picks = np.asarray(arrays['picks'], np.int64).reshape(-1)
  n_frames = int(np.asarray(arrays['n_frames']).reshape(()))
  for field in ('gtscore', 'gtsummary', 'picks'):
    if np.asarray(arrays[field]).reshape(-1).shape[0] != n_steps:
      raise DatasetError(f'{path}: {key}/{field} has {np.size(arrays[field])} entries but '
                         f'features has {n_steps} rows; the file is inconsistent, re-download it')
  if n_steps and (picks.min() < 0 or picks.max() >= n_frames or np.any(np.diff(picks) <= 0)):
    raise DatasetError(f'{path}: {key}/picks must increase within [0, n_frames={n_frames})')
  user_summary = np.asarray(arrays['user_summary'])
  if user_summary.ndim != 2 or abs(user_summary.shape[1] - n_frames) > 1:
    raise DatasetError(f'{path}: {key}/user_summary has shape {user_summary.shape}, expected '
                       f'[users, n_frames={n_frames}]')
  change_points = np.asarray(arrays['change_points'], np.int64).reshape(-1, 2)
  if not np.all(np.isfinite(features)):
    raise DatasetError(f'{path}: {key}/features contains NaN or inf')
  name = _decode_name(group['video_name'][()]) if 'video_name' in group else key
  return H5Video(key=key, name=name, features=features,
                 gtscore=np.asarray(arrays['gtscore'], np.float32).reshape(-1),
                 gtsummary=np.asarray(arrays['gtsummary'], np.float32).reshape(-1),
                 user_summary=(user_summary > 0).astype(np.int8),
                 change_points=change_points,
                 n_frame_per_seg=np.asarray(arrays['n_frame_per_seg'], np.int64).reshape(-1),
                 n_frames=n_frames, picks=picks)


def read_h5_videos(path: str | os.PathLike[str],
                   feature_dim: int | None = 1024) -> Iterator[H5Video]:
  """Yields every video of a benchmark file in `video_1, video_2, ...` order.

  Raises DatasetError naming the file when it is missing, truncated or inconsistent.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise DatasetError(f'{path}: not found')
  try:
    with h5py.File(path, 'r') as f:
      keys = sorted(f.keys(), key=_video_sort_key)
      if not keys:
        raise DatasetError(f'{path}: the file holds no video')
      for key in keys:
        yield _read_video(path, key, f[key], feature_dim)
  except OSError as e:
    raise DatasetError(f'{path}: cannot be read as HDF5 ({e}); the file is truncated or '
                       'corrupt, download it again') from None

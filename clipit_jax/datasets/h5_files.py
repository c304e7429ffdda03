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

from clipit_jax import protocol
from clipit_jax.datasets import errors

REQUIRED_FIELDS = (
  'features',
  'gtscore',
  'gtsummary',
  'user_summary',
  'change_points',
  'n_frame_per_seg',
  'n_frames',
  'picks',
)


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


def _check_per_step_fields(
  arrays: dict[str, np.ndarray], n_steps: int, n_frames: int, bad
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`picks` `[n_steps]`, `user_summary` `[users, n_frames]` and `change_points` `[shots, 2]`,
  checked against the video's sizes; `bad(field, problem)` makes the error."""
  for field in ('gtscore', 'gtsummary', 'picks'):
    if np.asarray(arrays[field]).reshape(-1).shape[0] != n_steps:
      raise bad(field, f'has {np.size(arrays[field])} entries but features has {n_steps} rows')
  picks = np.asarray(arrays['picks'], np.int64).reshape(-1)
  if picks.min() < 0 or picks.max() >= n_frames or np.any(np.diff(picks) <= 0):
    raise bad('picks', f'must increase within [0, n_frames={n_frames})')
  user_summary = np.asarray(arrays['user_summary'])
  if (
    user_summary.ndim != 2 or not user_summary.shape[0] or abs(user_summary.shape[1] - n_frames) > 1
  ):
    raise bad(
      'user_summary', f'has shape {user_summary.shape}, expected [users >= 1, n_frames={n_frames}]'
    )
  try:
    change_points = protocol.check_change_points(
      np.asarray(arrays['change_points']).reshape(-1, 2), n_frames
    )
  except ValueError as e:  # Shots must cover [0, n_frames) in order, each non-empty.
    raise bad('change_points', f'are not shots covering the {n_frames} frames ({e})') from None
  return picks, user_summary, change_points


def _read_video(path: str, key: str, group: h5py.Group, feature_dim: int | None) -> H5Video:
  """One video's arrays, every field checked (the message names the file, video and fix)."""
  name = _decode_name(group['video_name'][()]) if 'video_name' in group else key
  where = f'{path}: {key}' + (f' ({name})' if name != key else '')
  missing = [f for f in REQUIRED_FIELDS if f not in group]
  if missing:
    raise errors.DatasetError(
      f'{where} lacks {", ".join(missing)}; is this an eccv16 '
      '*_google_pool5.h5 file? Re-download it.'
    )
  arrays = {f: group[f][()] for f in REQUIRED_FIELDS}

  def bad(field: str, problem: str) -> errors.DatasetError:
    return errors.DatasetError(
      f'{where}/{field} {problem}; the file is damaged or was edited, download it again'
    )

  features = np.asarray(arrays['features'], np.float32)
  if features.ndim != 2 or (feature_dim is not None and features.shape[1] != feature_dim):
    raise errors.DatasetError(
      f'{where}/features has shape {features.shape}, expected '
      f'[n_steps, {feature_dim}]; use the GoogLeNet pool5 file of the benchmark'
    )
  n_steps = features.shape[0]
  n_frames = int(np.asarray(arrays['n_frames']).reshape(()))
  if n_steps == 0 or n_frames < 1:
    raise bad(
      'features', f'is empty ({n_steps} steps of {n_frames} frames): the video has no frames'
    )
  saved_steps = int(np.asarray(group['n_steps'][()]).reshape(())) if 'n_steps' in group else None
  if saved_steps not in (None, n_steps):
    raise bad('n_steps', f'says {saved_steps} but features has {n_steps} rows')
  picks, user_summary, change_points = _check_per_step_fields(arrays, n_steps, n_frames, bad)
  for field, values in (
    ('features', features),
    ('gtscore', arrays['gtscore']),
    ('gtsummary', arrays['gtsummary']),
    ('user_summary', user_summary),
  ):
    if not np.all(np.isfinite(np.asarray(values, np.float64))):
      raise bad(field, 'contains NaN or inf')
  return H5Video(
    key=key,
    name=name,
    features=features,
    gtscore=np.asarray(arrays['gtscore'], np.float32).reshape(-1),
    gtsummary=np.asarray(arrays['gtsummary'], np.float32).reshape(-1),
    user_summary=(user_summary > 0).astype(np.int8),
    change_points=change_points,
    n_frame_per_seg=np.asarray(arrays['n_frame_per_seg'], np.int64).reshape(-1),
    n_frames=n_frames,
    picks=picks,
  )


def read_h5_videos(
  path: str | os.PathLike[str], feature_dim: int | None = 1024
) -> Iterator[H5Video]:
  """Yields every video of a benchmark file in `video_1, video_2, ...` order.

  Raises errors.DatasetError naming the file when it is missing, truncated or inconsistent.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise errors.DatasetError(f'{path}: not found')
  try:
    with h5py.File(path, 'r') as f:
      keys = sorted(f.keys(), key=_video_sort_key)
      if not keys:
        raise errors.DatasetError(f'{path}: the file holds no video')
      for key in keys:
        yield _read_video(path, key, f[key], feature_dim)
  except OSError as e:
    raise errors.DatasetError(
      f'{path}: cannot be read as HDF5 ({e}); the file is truncated or corrupt, download it again'
    ) from None

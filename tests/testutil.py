"""Helpers shared by the tests: configs small enough for the CPU, stand-in data, h5 files,
toy batches."""

import contextlib
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import h5py
import ml_collections
import numpy as np
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
# A model small enough for a CPU test on the 1024-d stand-ins, as train.py overrides.
TINY_MODEL = [
  '--config.model.width=32',
  '--config.model.mlp_dim=64',
  '--config.model.head_mlp_dim=16',
  '--config.model.num_heads=2',
  '--config.model.language_heads=2',
  '--config.model.num_encoder_layers=1',
  '--config.model.num_decoder_layers=1',
  '--config.model.window=64',
]


# Flat-colour scenes (`scenes_video`): four reddish, four bluish.
REDS = [(255, 0, 0), (255, 170, 0), (255, 0, 170), (255, 130, 130)]
BLUES = [(0, 0, 255), (0, 170, 255), (170, 0, 255), (130, 130, 255)]
SCENES_FPS = 8


def scenes_video(path, colours, seconds=2.0, size=64):
  """Flat-colour scenes with a moving white square, `seconds` each, SCENES_FPS."""
  from clipit_jax.media import video  # pylint: disable=g-import-not-at-top

  n = round(seconds * SCENES_FPS)
  frames = []
  for colour in colours:
    for i in range(n):
      frame = np.empty((size, size, 3), np.uint8)
      frame[:] = colour
      x = (4 * i) % (size - 12)
      frame[20:32, x : x + 12] = 255
      frames.append(frame)
  return video.write_frames(path, np.stack(frames), SCENES_FPS)


def load_config_file(name: str, *args) -> ml_collections.ConfigDict:
  """`get_config(*args)` of `configs/<name>.py` (which may import `configs.default`)."""
  if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
  path = ROOT / 'configs' / f'{name}.py'
  spec = importlib.util.spec_from_file_location(f'configs_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(*args)


def write_standins(data_dir: pathlib.Path, num_videos: int = 6, max_seconds: float = 75) -> str:
  """Stand-ins of all four benchmarks (short videos) in `data_dir`'s manual directory."""
  from clipit_jax.datasets import standins  # pylint: disable=g-import-not-at-top

  for dataset in standins.SHAPES:
    standins.write_standin(
      dataset,
      str(data_dir / 'downloads' / 'manual'),
      num_videos=num_videos,
      max_seconds=max_seconds,
    )
  return str(data_dir)


def tiny_config(name: str, data_dir: str, **overrides) -> ml_collections.ConfigDict:
  """`configs/<name>.py` with the TINY_MODEL, a few epochs and batches of 4 windows."""
  config = load_config_file(name)
  for flag in TINY_MODEL:
    key, value = flag[len('--config.model.') :].split('=')
    config.model[key] = int(value)
  config.data.data_dir = data_dir
  config.update(
    {**dict(num_epochs=3, batch_size=4, learning_rate=1e-3, progress=False), **overrides}
  )
  return config


def stem_key(dataset: str, video: str) -> str:
  """A split-file key as in VASNet's augmented and transfer files."""
  return f'eccv16_dataset_{dataset}_google_pool5/{video}'


def path_key(dataset: str, video: str) -> str:
  """A split-file key as in DSNet's YAML files."""
  return f'../datasets/eccv16_dataset_{dataset}_google_pool5.h5/{video}'


def write_splits_file(path: pathlib.Path, entries: list[dict]) -> str:
  """A split file by its suffix: JSON (as vsumm-reinforce, VASNet, PGL-SUM) or YAML (DSNet)."""
  path.write_text(
    json.dumps(entries, indent=2)
    if path.suffix == '.json'
    else yaml.safe_dump(entries, default_flow_style=False)
  )
  return str(path)


def small_config(**model_overrides) -> ml_collections.ConfigDict:
  """The paper's config shrunk for CPU tests: width 64, 1+1 layers, windows of 16."""
  config = load_config_file('default')
  config.model.update(
    dict(
      frame_dim=24,
      text_dim=32,
      width=64,
      num_heads=4,
      language_heads=4,
      num_encoder_layers=1,
      num_decoder_layers=1,
      mlp_dim=128,
      head_mlp_dim=32,
      num_captions=3,
      window=16,
    )
  )
  config.model.update(model_overrides)
  return config


def random_batch(config: ml_collections.ConfigDict, batch: int, lengths, seed: int = 0):
  """A batch of windows: real frames first, then padding filled with junk.

  `lengths[b]` real frames in sample b (0 = a padding sample).
  """
  rng = np.random.default_rng(seed)
  m = config.model
  window = m.window
  text_len = 1 if m.text_fusion == 'query' else m.num_captions
  frame_mask = np.arange(window)[None, :] < np.asarray(lengths)[:, None]
  return dict(
    frames=rng.normal(size=(batch, window, m.frame_dim)).astype(np.float32),
    frame_mask=frame_mask,
    text=rng.normal(size=(batch, text_len, m.text_dim)).astype(np.float32),
    text_mask=np.ones((batch, text_len), bool),
    labels=((rng.random((batch, window)) < 0.2) & frame_mask).astype(np.float32),
  )


def write_h5(path, n_videos, *, names=True, feature_dim=1024, seed=0, frames=(150, 400)):
  """An eccv16-style file: picks every 15 frames, KTS-like shots, 3 users."""
  rng = np.random.default_rng(seed)
  videos = {}
  with h5py.File(path, 'w') as f:
    for i in range(1, n_videos + 1):
      n_frames = int(rng.integers(*frames))
      picks = np.arange(0, n_frames, 15)
      bounds = np.unique(np.concatenate([[0], rng.integers(1, n_frames, 4), [n_frames]]))
      change_points = np.stack([bounds[:-1], bounds[1:] - 1], 1)
      g = f.create_group(f'video_{i}')
      data = dict(
        features=rng.normal(size=(len(picks), feature_dim)).astype(np.float32),
        gtscore=rng.random(len(picks)).astype(np.float32),
        gtsummary=(rng.random(len(picks)) < 0.2).astype(np.float32),
        user_summary=(rng.random((3, n_frames)) < 0.15).astype(np.float32),
        change_points=change_points,
        n_frame_per_seg=np.diff(bounds),
        n_frames=n_frames,
        picks=picks,
        n_steps=len(picks),
      )
      for k, v in data.items():
        g[k] = v
      if names:
        g['video_name'] = f'name_{i}'.encode()
      videos[f'video_{i}'] = data
  return videos


@contextlib.contextmanager
def small_disk(path: pathlib.Path, size_kb: int, *, read_only: bool = False):
  """A tmpfs of `size_kb` mounted at `path`: a disk that fills up, or a read-only one.

  Needs root (or CAP_SYS_ADMIN) and `mount`; the test is skipped where that is not so.
  """
  path.mkdir(parents=True, exist_ok=True)
  options = f'size={size_kb}k' + (',ro' if read_only else '')
  if not shutil.which('mount') or os.geteuid() != 0:
    pytest.skip('mounting a small tmpfs needs root')
  out = subprocess.run(
    ['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(path)],
    capture_output=True,
    text=True,
    check=False,
  )
  if out.returncode:
    pytest.skip(f'cannot mount a tmpfs here: {out.stderr.strip()}')
  try:
    yield path
  finally:
    subprocess.run(['umount', '-l', str(path)], check=False)


def fill_disk(directory: pathlib.Path, leave_kb: int) -> None:
  """Fills the file system of `directory` until about `leave_kb` remain free."""
  stat = os.statvfs(directory)
  free = stat.f_bavail * stat.f_frsize - leave_kb * 1024
  if free > 0:
    (directory / 'filler').write_bytes(b'\0' * free)

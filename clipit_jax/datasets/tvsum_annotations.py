"""TVSum's raw annotations: `ydata-anno.tsv` (optionally gzipped).

One line per (video, annotator): YouTube id, category code, and comma-separated
per-frame importance scores 1-5 (50 videos x 20 annotators). Read by the TVSum builder
(per-frame user scores for Kendall/Spearman), the stand-ins and the human baseline.
"""

from __future__ import annotations

import gzip
import os
import re
from typing import NamedTuple

import numpy as np

_SCORES = re.compile(rb'[1-5](?:,[1-5])*')


class TvsumVideo(NamedTuple):
  """One TVSum video: category code and `[users, n_frames]` int8 scores."""

  category: str
  user_scores: np.ndarray


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
  """File contents, gunzipped when the file starts with the gzip magic."""
  try:
    with open(path, 'rb') as f:
      data = f.read()
    if data[:2] == b'\x1f\x8b':
      data = gzip.decompress(data)
  except FileNotFoundError:
    raise ValueError(f'TVSum annotation file {os.fspath(path)!r} does not exist') from None
  except (OSError, EOFError) as e:
    raise ValueError(f'cannot read TVSum annotation file {os.fspath(path)!r}: {e}') from None
  return data


def load_tvsum_annotations(path: str | os.PathLike[str]) -> dict[str, TvsumVideo]:
  """Reads `ydata-anno.tsv[.gz]` into {video id: TvsumVideo}, in file order.

  Args:
    path: the annotation file, plain or gzipped.

  Returns:
    For each video (in order of first appearance) its category and its
    annotators' scores `[users, n_frames]` (int8, values 1-5, file order).

  Raises:
    ValueError: missing/unreadable file, a line without 3 tab-separated
      fields, scores that are not integers 1-5, annotators of one video with
      different frame counts or categories, or an empty file.
  """
  name = os.fspath(path)
  data = _read_bytes(path)
  rows: dict[str, list[np.ndarray]] = {}
  categories: dict[str, str] = {}
  for lineno, line in enumerate(data.split(b'\n'), start=1):
    line = line.rstrip(b'\r')
    if not line.strip():
      continue
    fields = line.split(b'\t')
    if len(fields) != 3:
      raise ValueError(
        f'{name}:{lineno}: expected 3 tab-separated fields '
        f'(video id, category, scores), got {len(fields)}'
      )
    try:
      video, category = fields[0].decode().strip(), fields[1].decode().strip()
    except UnicodeDecodeError:
      raise ValueError(f'{name}:{lineno}: video id or category is not text') from None
    if not video or not category:
      raise ValueError(f'{name}:{lineno}: empty video id or category')
    scores = fields[2].strip()
    if not _SCORES.fullmatch(scores):
      raise ValueError(f'{name}:{lineno}: scores must be comma-separated integers 1-5')
    frames = np.frombuffer(scores[::2], np.uint8).astype(np.int8) - ord('0')
    if categories.setdefault(video, category) != category:
      raise ValueError(
        f'{name}:{lineno}: video {video} has category {category}, earlier {categories[video]}'
      )
    previous = rows.setdefault(video, [])
    if previous and previous[0].shape != frames.shape:
      raise ValueError(
        f'{name}:{lineno}: video {video} has '
        f'{frames.shape[0]} frame scores, earlier '
        f'{previous[0].shape[0]}'
      )
    previous.append(frames)
  if not rows:
    raise ValueError(f'{name}: no annotations found')
  return {v: TvsumVideo(categories[v], np.stack(r)) for v, r in rows.items()}

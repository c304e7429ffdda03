"""A summary of one video and its files: summary.mp4, summary.json and scores.png.

  summary = summarizer.summarize("video.mp4", query="a dog")   # a `Summary`
  paths = summary.write("out/")   # {'video': out/summary.mp4, 'json': ..., 'plot': ...}

The three files are one unit (`outputs.publish`): written together under a lock on the
directory, summary.json last.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import json
import pathlib
import textwrap
import warnings
from typing import Any

import jax
import numpy as np

from clipit_jax import files
from clipit_jax.media import video
from clipit_jax.summarize import outputs

OUTPUT_FILES = {'video': 'summary.mp4', 'json': 'summary.json', 'plot': 'scores.png'}
PROGRESS_MIN_S = 30.0  # Progress bars only for videos (and summaries) at least this long.
TITLE_FONT = 'DejaVu Sans'  # Matplotlib's own; other installed fonts draw what it lacks.


def versions() -> dict[str, str]:
  """Versions of the packages that made a summary."""
  import av  # pylint: disable=g-import-not-at-top
  import flax  # pylint: disable=g-import-not-at-top
  import safetensors  # pylint: disable=g-import-not-at-top
  import tokenizers  # pylint: disable=g-import-not-at-top

  try:
    clipit = importlib.metadata.version('clipit_jax')
  except importlib.metadata.PackageNotFoundError:
    import clipit_jax  # pylint: disable=g-import-not-at-top

    clipit = clipit_jax.__version__
  return {
    'clipit_jax': clipit,
    'jax': jax.__version__,
    'flax': flax.__version__,
    'tokenizers': tokenizers.__version__,
    'safetensors': safetensors.__version__,
    'av': av.__version__,
    'numpy': np.__version__,
  }


@functools.cache
def _charmap(font_file: str) -> frozenset[int]:
  """The code points a font file draws."""
  from matplotlib import font_manager  # pylint: disable=g-import-not-at-top

  return frozenset(font_manager.get_font(font_file).get_charmap())


def drawable(text: str) -> tuple[str, list[str]]:
  """`text` as the plot can draw it, and the font families to draw it with.

  `TITLE_FONT` first, then installed fonts that hold the characters it lacks (CJK, emoji,
  ...); a character that no installed font holds becomes '?' (summary.json keeps the text).
  """
  from matplotlib import font_manager  # pylint: disable=g-import-not-at-top

  families = [TITLE_FONT]
  covered = set(_charmap(font_manager.findfont(TITLE_FONT)))
  fonts = [f for f in font_manager.fontManager.ttflist if not f.name.startswith('Last Resort')]
  chars = []
  for c in text:
    if c != '\n' and ord(c) not in covered:
      font = next((f for f in fonts if ord(c) in _charmap(f.fname)), None)
      if font is None:
        c = '?'
      else:
        families.append(font.name)
        covered |= _charmap(font.fname)
    chars.append(c)
  return ''.join(chars), list(dict.fromkeys(families))


def _title(summary: Summary, width: int = 110, max_lines: int = 5) -> str:
  """Plot title: what was summarized and how, then the wrapped text."""
  share = summary.summary_duration / summary.duration
  head = (
    f'{pathlib.Path(summary.video).name}: {summary.summary_duration:.2f}'
    f' s of {summary.duration:.2f} s ({share:.1%}), {summary.method}'
  )
  if summary.query is not None:
    text = f'query: {summary.query!r}'
  else:
    text = 'captions: ' + ' | '.join(summary.captions)
  lines = textwrap.wrap(text, width)
  if len(lines) > max_lines:
    lines = lines[:max_lines]
    lines[-1] = lines[-1][: width - 1] + '\u2026'
  return '\n'.join([head] + lines)


def _plot_lines(ax, summary: Summary) -> None:
  """Selected shots shaded, shot boundaries, frame scores and shot means."""
  for i, (start, end) in enumerate(summary.segments):
    ax.axvspan(
      start, end, color='tab:orange', alpha=0.3, lw=0, label='selected' if i == 0 else None
    )
  for start in summary.shot_times[1:, 0]:
    ax.axvline(start, color='0.6', lw=0.6, ls=':')
  ax.plot(
    summary.timestamps,
    summary.scores,
    color='tab:blue',
    lw=1.2,
    marker='o',
    ms=2,
    label='frame score',
  )
  ax.hlines(
    summary.shot_values,
    summary.shot_times[:, 0],
    summary.shot_times[:, 1],
    color='tab:green',
    lw=2,
    alpha=0.8,
    label='shot mean score',
  )
  ax.plot([], [], color='0.6', lw=0.6, ls=':', label='shot boundary')


def plot_scores(summary: Summary, path: files.PathLike) -> pathlib.Path:
  """Writes the scores over time, selected shots shaded, as a PNG (atomic)."""
  # pylint: disable-next=g-import-not-at-top
  from matplotlib.figure import Figure  # Agg canvas, no pyplot state.

  title, families = drawable(_title(summary))
  fig = Figure(figsize=(11, 3.2 + 0.18 * (title.count('\n') + 1)), layout='constrained')
  ax = fig.subplots()
  _plot_lines(ax, summary)
  ax.set_xlim(0, summary.duration)
  ax.set_ylim(-0.02, 1.02)
  ax.set_xlabel('time (s)')
  ax.set_ylabel('score')
  ax.legend(loc='upper right', fontsize=8, framealpha=0.8)
  ax.set_title(title, fontsize=9, loc='left', fontfamily=families)
  with files.atomic_path(path, suffix='.png') as tmp, warnings.catch_warnings():
    warnings.filterwarnings('ignore', r'Glyph \d+ .*missing from font', UserWarning)
    fig.savefig(tmp, format='png', dpi=100)
  return pathlib.Path(path)


@dataclasses.dataclass
class Summary:
  """A summary of one video and what it was made from.

  Attributes:
    video: the source video.
    duration: seconds summarized (the video's, or less when truncated).
    has_audio: whether the source has an audio stream.
    timestamps: [n] seconds of the scored frames.
    scores: [n] frame scores in [0, 1].
    shot_steps: [k, 2] inclusive frame-index ranges of the KTS shots.
    shot_times: [k, 2] [start, end) seconds of the shots.
    shot_values: [k] mean frame score of each shot.
    selected: ascending indices of the selected shots.
    segments: [(start, end)] seconds written to the summary, in time order.
    budget: `proportion * duration`, seconds.
    fallback: no whole shot fit the budget; `segments` is part of one shot.
    method: `summarizer.BASELINE` or `summarizer.TRAINED`.
    query: the query (query-focused summary), else None.
    captions: the M caption texts used (generic summary), else None.
    settings: fps, proportion, models, checkpoint, caption source, the texts as encoded.
    video_sha256: the sha256 of the video's bytes (what a batch's outputs stand for).
  """

  video: str
  duration: float
  has_audio: bool
  timestamps: np.ndarray
  scores: np.ndarray
  shot_steps: np.ndarray
  shot_times: np.ndarray
  shot_values: np.ndarray
  selected: list[int]
  segments: list[tuple[float, float]]
  budget: float
  fallback: bool
  method: str
  query: str | None
  captions: list[str] | None
  settings: dict[str, Any]
  video_sha256: str | None = None

  @property
  def summary_duration(self) -> float:
    return float(sum(end - start for start, end in self.segments))

  def to_json(self) -> dict[str, Any]:
    """Everything as JSON-ready Python values (with package versions)."""
    shots = [
      dict(
        start=float(t[0]),
        end=float(t[1]),
        start_step=int(s[0]),
        end_step=int(s[1]),
        value=float(v),
        selected=i in self.selected,
      )
      for i, (t, s, v) in enumerate(zip(self.shot_times, self.shot_steps, self.shot_values))
    ]
    return dict(
      video=self.video,
      video_sha256=self.video_sha256,
      duration=self.duration,
      has_audio=self.has_audio,
      method=self.method,
      mode='query' if self.query is not None else 'generic',
      query=self.query,
      captions=self.captions,
      timestamps=[float(t) for t in self.timestamps],
      scores=[float(s) for s in self.scores],
      shots=shots,
      selected_shots=list(self.selected),
      segments=[[float(s), float(e)] for s, e in self.segments],
      summary_duration=self.summary_duration,
      budget=self.budget,
      fallback=self.fallback,
      settings=self.settings,
      versions=versions(),
    )

  def write(self, out_dir: files.PathLike, *, progress: bool = True) -> dict[str, pathlib.Path]:
    """Writes summary.mp4, summary.json and scores.png into `out_dir`, as one unit.

    Under a lock on `out_dir`, into a staging directory there, then renamed in with
    summary.json last (`outputs.publish`): a failure (a full disk) leaves an earlier
    summary there whole rather than mixed with parts of this one.

    Returns:
      {'video': ..., 'json': ..., 'plot': ...} paths.

    Raises:
      ValueError: `out_dir` holds the video, is not a writable directory, or another
        process is writing there.
    """
    out = outputs.check_out_dir(out_dir)
    outputs.check_not_inside([self.video], out)

    def write_files(staging: pathlib.Path) -> None:
      video.write_summary(
        self.video,
        self.segments,
        staging / OUTPUT_FILES['video'],
        progress=progress and self.summary_duration >= PROGRESS_MIN_S,
      )
      files.write_text(staging / OUTPUT_FILES['json'], json.dumps(self.to_json(), indent=2) + '\n')
      plot_scores(self, staging / OUTPUT_FILES['plot'])

    order = [OUTPUT_FILES['video'], OUTPUT_FILES['plot'], OUTPUT_FILES['json']]
    paths = outputs.publish(out, write_files, order)
    return {key: paths[name] for key, name in OUTPUT_FILES.items()}

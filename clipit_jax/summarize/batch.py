"""Many videos in one run: finding them, naming their outputs, and the index of the batch.

  clipit-summarize videos/ more/*.mp4 --list todo.txt --query "a dog" --out out/

writes each video's summary.mp4, summary.json and scores.png into `out/<name>/`, and every
video's outcome into out/index.json and out/index.csv. `find_videos` expands the inputs,
`output_names` names the outputs and `Summarizer.summarize_many` yields a `VideoResult` per video.

Decisions:

* Inputs keep the order given. A directory is searched recursively for files whose extension is
  in `video.VIDEO_EXTENSIONS`, skipping hidden files and directories (a leading '.') and the
  output directory. A pattern (`*`, `?`, `[...]`, `**` across directories) is expanded as the
  shell would (its directories searched as above). A file named on the command line or in a
  list is taken whatever its extension. Found files are sorted; a file reached twice is taken once.
* An output name is the file name without its extension; a clash (case-insensitive) takes
  `_2`, `_3`, ... in input order, so the same command names the same outputs.
* A directory or pattern that gives no video is an error before any work: it is a typo more
  often than not. A missing or bad file fails alone: the rest of the batch goes on.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import io
import json
import os
import pathlib
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from clipit_jax import files
from clipit_jax.media import video

PATTERN_CHARS = '*?['
INDEX_FILES = ('index.json', 'index.csv')
INDEX_FIELDS = (
  'name',
  'video',
  'status',
  'reason',
  'duration',
  'selected_shots',
  'shots',
  'summary_duration',
  'seconds',
)


# ------------------------------------------------------------------ inputs --


def is_pattern(arg: str) -> bool:
  """Whether `arg` is a glob pattern rather than a path that exists."""
  return not os.path.exists(arg) and any(c in arg for c in PATTERN_CHARS)


def is_batch(inputs: Sequence[str], list_file: str | None) -> bool:
  """Whether the command is a batch: not exactly one input that is a file (or missing)."""
  if list_file is not None or len(inputs) != 1:
    return True
  return os.path.isdir(inputs[0]) or is_pattern(inputs[0])


def _inside(path: str, directory: pathlib.Path | None) -> bool:
  return directory is not None and directory in pathlib.Path(path).resolve().parents


def search_directory(directory: str, exclude: pathlib.Path | None = None) -> list[str]:
  """Video files under `directory`, recursively and sorted; hidden ones and `exclude` left out."""
  if pathlib.Path(directory).resolve() == exclude or _inside(directory, exclude):
    return []
  found = []
  for root, dirs, names in os.walk(directory):
    dirs[:] = [
      d for d in dirs if not d.startswith('.') and pathlib.Path(root, d).resolve() != exclude
    ]
    found += [
      os.path.join(root, n)
      for n in names
      if not n.startswith('.') and n.lower().endswith(video.VIDEO_EXTENSIONS)
    ]
  return sorted(found)


def _check_not_output(directory: str, out: pathlib.Path | None) -> None:
  """Raises ValueError when an input `directory` is the output directory or inside it."""
  resolved = pathlib.Path(directory).resolve()
  if out is not None and resolved == out:
    raise ValueError(
      f'{directory}: the input directory is --out itself, whose contents are outputs, never '
      f'inputs; pass another --out (e.g. {os.path.join(directory, "summaries")})'
    )
  if _inside(directory, out):
    raise ValueError(
      f'{directory}: the input directory is inside --out {out}, whose contents are outputs, '
      'never inputs; pass an --out outside it'
    )


def expand_input(arg: str, exclude: pathlib.Path | None = None) -> list[str]:
  """The video files one input names: a directory's, a pattern's matches, or the file itself.

  Raises:
    ValueError: a directory or pattern without videos.
  """
  if os.path.isdir(arg):
    _check_not_output(arg, exclude)
    found = search_directory(arg, exclude)
    if not found:
      raise ValueError(
        f'{arg}: no video files in the directory (looked for '
        f'{" ".join(video.VIDEO_EXTENSIONS)}, recursively)'
      )
    return found
  if not is_pattern(arg):
    return [arg]
  found = []
  for match in sorted(glob.glob(arg, recursive=True)):
    found += search_directory(match, exclude) if os.path.isdir(match) else [match]
  found = [f for f in found if not _inside(f, exclude)]
  if not found:
    raise ValueError(f'{arg}: the pattern matches no video file')
  return found


def read_list(list_file: str) -> list[str]:
  """The inputs in a list file ('-': stdin), one a line; blank lines and '#' comments skipped."""
  try:
    text = sys.stdin.read() if list_file == '-' else pathlib.Path(list_file).read_text('utf-8')
  except (OSError, UnicodeDecodeError) as e:
    reason = getattr(e, 'strerror', None) or 'not a text file'
    raise ValueError(f'--list {list_file}: cannot read it ({reason})') from None
  lines = (line.strip() for line in text.removeprefix('\ufeff').splitlines())  # BOM or not.
  return [line for line in lines if line and not line.startswith('#')]


def find_videos(
  inputs: Sequence[str], list_file: str | None = None, exclude: files.PathLike | None = None
) -> list[str]:
  """The video files that `inputs` (files, directories, patterns) and `list_file` name.

  Args:
    inputs: files, directories (searched recursively) and glob patterns, in order.
    list_file: a file of more inputs, one a line (after `inputs`), or None.
    exclude: a directory never searched (the output directory).

  Raises:
    ValueError: an unreadable list, a directory or pattern without videos, or no input.
  """
  exclude = pathlib.Path(exclude).resolve() if exclude is not None else None
  args = list(inputs) + (read_list(list_file) if list_file is not None else [])
  seen, videos = set(), []
  for arg in args:
    for path in expand_input(arg, exclude):
      key = os.path.realpath(path)
      if key not in seen:
        seen.add(key)
        videos.append(path)
  if not videos:
    raise ValueError('no videos given: pass video files, directories, patterns or --list FILE')
  return videos


def output_names(paths: Sequence[files.PathLike]) -> list[str]:
  """Unique output directory names: the file names without extension, `_2`, `_3`... on clashes."""
  used, names = {n.casefold() for n in INDEX_FILES}, []
  for path in paths:
    stem = pathlib.Path(path).stem or 'video'
    name, k = stem, 2
    while name.casefold() in used:
      name, k = f'{stem}_{k}', k + 1
    used.add(name.casefold())
    names.append(name)
  return names


# ----------------------------------------------------------------- results --


@dataclasses.dataclass(frozen=True)
class VideoResult:
  """What became of one video of a batch.

  Attributes:
    path: the video, as given.
    name: its output name, unique in the batch.
    status: 'ok' (summarized), 'skipped' (its outputs were complete) or 'failed'.
    summary: the `Summary` when ok, else None.
    error: why it failed (one line), else None.
    out: the directory of its outputs when they were written or complete, else None.
    duration: seconds summarized (ok and skipped).
    shots: (selected, total) shots (ok and skipped).
    summary_duration: seconds of the summary (ok and skipped).
    seconds: the time spent on it in this run.
  """

  path: str
  name: str
  status: str
  summary: Any = None
  error: str | None = None
  out: pathlib.Path | None = None
  duration: float | None = None
  shots: tuple[int, int] | None = None
  summary_duration: float | None = None
  seconds: float = 0.0

  @property
  def failed(self) -> bool:
    return self.status == 'failed'

  def error_line(self) -> str:
    """The failure as one line that names the video."""
    return self.error if self.error.startswith(self.path) else f'{self.path}: {self.error}'

  def row(self) -> dict[str, Any]:
    """The video's entry in the index (INDEX_FIELDS; None where not known)."""
    selected, shots = self.shots or (None, None)
    return dict(
      name=self.name,
      video=self.path,
      status=self.status,
      reason=self.error,
      duration=_rounded(self.duration),
      selected_shots=selected,
      shots=shots,
      summary_duration=_rounded(self.summary_duration),
      seconds=_rounded(self.seconds),
    )


def _rounded(x: float | None) -> float | None:
  return None if x is None else round(x, 3)


def numbers_of(record: dict[str, Any]) -> dict[str, Any]:
  """`VideoResult` fields from a summary.json's contents (`Summary.to_json`)."""
  return dict(
    duration=float(record['duration']),
    shots=(len(record['selected_shots']), len(record['shots'])),
    summary_duration=float(record['summary_duration']),
  )


def write_index(out_dir: files.PathLike, results: Iterable[VideoResult]) -> list[pathlib.Path]:
  """Writes index.json and index.csv (every video's row, in order) into `out_dir`, atomically."""
  rows = [r.row() for r in results]
  paths = [pathlib.Path(out_dir) / name for name in INDEX_FILES]
  files.write_text(paths[0], json.dumps(dict(videos=rows), indent=2) + '\n')
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, INDEX_FIELDS, lineterminator='\n')
  writer.writeheader()
  writer.writerows(rows)
  files.write_text(paths[1], buffer.getvalue())
  return paths


def format_table(results: Sequence[VideoResult]) -> str:
  """A plain-text table: video, status, duration, shots selected, seconds."""
  header = ('video', 'status', 'duration (s)', 'shots selected', 'seconds')
  rows = [
    (
      r.name,
      r.status,
      '-' if r.duration is None else f'{r.duration:.1f}',
      '-' if r.shots is None else f'{r.shots[0]} of {r.shots[1]}',
      '-' if r.status == 'skipped' else f'{r.seconds:.1f}',
    )
    for r in results
  ]
  widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

  def line(cells):
    text = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
    return '  '.join(text).rstrip()

  return '\n'.join([line(header)] + [line(row) for row in rows])


def tally(results: Sequence[VideoResult]) -> str:
  """'N videos: a summarized, b skipped (already complete), c failed'."""
  count = {s: sum(r.status == s for r in results) for s in ('ok', 'skipped', 'failed')}
  return (
    f'{len(results)} videos: {count["ok"]} summarized, {count["skipped"]} skipped '
    f'(already complete), {count["failed"]} failed'
  )

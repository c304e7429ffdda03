"""clipit-demo: summarize a video in the browser (Gradio; `pip install -e ".[demo]"`).

  clipit-demo --clip-model tiny                      # offline, http://127.0.0.1:7860
  clipit-demo --ckpt runs/synthetic_query --port 8080

The page takes a video (an upload, or the bundled example that `make_example`
renders at first use), a query or a generic summary (from an .srt/.vtt file or the
captioner), a checkpoint directory or none (the training-free baseline) and the
summary's share of the video. It shows the scores plot, the summary video, the
selected shots with a thumbnail each, and offers summary.mp4 and summary.json.

Everything but the page is plain Python (`Models`, `summarize_request`), so it is
tested without a browser; `build_app` imports Gradio. Models load once per (CLIP,
checkpoint) and are reused. Bad input ends a request with one line in the status
box (`error_message`), never a traceback, and the page keeps working.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import html
import io
import logging
import os
import pathlib
import shutil
import socket
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from clipit_jax import cli
from clipit_jax import files
from clipit_jax.datasets import synthetic_scenes as scenes_lib
from clipit_jax.media import captions as captions_lib
from clipit_jax.media import encoders
from clipit_jax.media import video
from clipit_jax.summarize import shots
from clipit_jax.summarize import summarizer as summarizer_lib
from clipit_jax.summarize.summary import Summary

PROGRAM = 'clipit-demo'
DEFAULT_PORT = 7860
THUMBNAIL_SIZE = 96  # Pixels, square (the frames are centre-cropped like the encoder's).
KEEP_REQUESTS = 10  # Output directories of the latest requests kept for the page.
# The bundled example: shapes in motion (the synthetic benchmark's scenes), made in code.
EXAMPLE_NAME = 'example_v1'
EXAMPLE_SEED = 7
EXAMPLE_FPS = 8.0
EXAMPLE_SIZE = 128
INSTALL_HINT = 'pip install -e ".[demo]"'

_log = logging.getLogger(__name__)

Report = Callable[[float, str], None]  # (fraction done, what is being done)


# ----------------------------------------------------------------- example --


@dataclasses.dataclass(frozen=True)
class Example:
  """The bundled example: a video, its captions (.srt) and a query that fits it."""

  video: pathlib.Path
  captions: pathlib.Path
  query: str


def _srt_time(seconds: float) -> str:
  ms = int(round(seconds * 1000))
  return f'{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}'


def make_example(directory: files.PathLike | None = None) -> Example:
  """Renders the example video and writes its captions, once (atomic files; reused after).

  Scenes of a coloured shape moving over one background, 3-5 s each, at 128x128 and
  8 fps; the query names the video's rarest object.
  """
  directory = pathlib.Path(directory or files.cache_root() / 'demo')
  path, srt = directory / f'{EXAMPLE_NAME}.mp4', directory / f'{EXAMPLE_NAME}.srt'
  script = scenes_lib.make_script(
    np.random.default_rng(EXAMPLE_SEED),
    EXAMPLE_FPS,
    min_scenes=6,
    max_scenes=7,
    scene_seconds=(3.0, 5.0),
    image_size=EXAMPLE_SIZE,
  )
  concepts = [s.concept for s in script]
  query = min(concepts, key=lambda c: (concepts.count(c), concepts.index(c)))
  if not (path.is_file() and srt.is_file()):
    directory.mkdir(parents=True, exist_ok=True)
    starts = np.cumsum([0] + [s.frames for s in script]) / EXAMPLE_FPS
    cues = [
      f'{i + 1}\n{_srt_time(starts[i])} --> {_srt_time(starts[i + 1])}\n{s.caption()}\n'
      for i, s in enumerate(script)
    ]
    files.write_text(srt, '\n'.join(cues))
    frames = np.concatenate([scenes_lib.render_scene(s, EXAMPLE_SIZE) for s in script])
    video.write_frames(path, frames, EXAMPLE_FPS)
  return Example(video=path, captions=srt, query=f'a {query}')


# ------------------------------------------------------------------ models --


class Models:
  """Loaded models, once per (CLIP, checkpoint); the CLIP is shared between checkpoints.

  Attributes:
    clip_model: the --clip-model (None: the checkpoint's CLIP, else `encoders.DEFAULT_CLIP`).
  """

  def __init__(self, clip_model: str | None = None):
    self.clip_model = clip_model
    self._clips: dict[str, encoders.ClipEncoder] = {}
    self._summarizers: dict[tuple[str | None, str | None], summarizer_lib.Summarizer] = {}
    self._captioners: dict[str, captions_lib.Captioner] = {}
    self._lock = threading.Lock()

  def _clip(self, name: str) -> encoders.ClipEncoder:
    if name not in self._clips:
      self._clips[name] = encoders.load_clip(name)
    return self._clips[name]

  def summarizer(self, ckpt: str | None) -> summarizer_lib.Summarizer:
    """The baseline (`ckpt` None) or the checkpoint's summarizer, loaded on first use.

    Raises:
      CheckpointError, ModelLoadError: the checkpoint or the CLIP does not load.
    """
    ckpt = os.path.abspath(os.path.expanduser(ckpt)) if ckpt else None
    key = (self.clip_model, ckpt)
    with self._lock:
      if key not in self._summarizers:
        if ckpt is None:
          clip = self._clip(self.clip_model or encoders.DEFAULT_CLIP)
          made = summarizer_lib.Summarizer.training_free(clip)
        else:
          clip = self._clip(self.clip_model) if self.clip_model else None
          made = summarizer_lib.Summarizer.from_checkpoint(ckpt, clip_model=clip)
        self._summarizers[key] = made
      return self._summarizers[key]

  def captioner(self, name: str) -> captions_lib.Captioner:
    """The image captioner `name` ('tiny', a hub name or a directory), loaded on first use."""
    with self._lock:
      if name not in self._captioners:
        self._captioners[name] = captions_lib.load_captioner(name)
      return self._captioners[name]


# ----------------------------------------------------------------- request --


@dataclasses.dataclass
class Result:
  """What the page shows after a request; on an error only `status` is set.

  Attributes:
    status: one line: what was made, or 'Error: ...'.
    ok: whether a summary was made.
    plot: scores.png.
    video: summary.mp4.
    json: summary.json.
    table: the selected shots as an HTML table (thumbnail, times, score).
    summary: the `Summary`.
  """

  status: str
  ok: bool = False
  plot: pathlib.Path | None = None
  video: pathlib.Path | None = None
  json: pathlib.Path | None = None
  table: str = ''
  summary: Summary | None = None


def error_message(e: BaseException, uploads: Sequence[str | None] = (), limit: int = 300) -> str:
  """'Error: <first line>', upload paths shortened to their file names, cut to `limit`."""
  line = cli.first_line(e, limit=10_000)
  for path in uploads:
    if path:
      line = line.replace(str(path), pathlib.Path(path).name)
  if not cli.is_user_error(e):
    _log.exception('unexpected error')  # The traceback goes to the server's log only.
    line = f'unexpected {type(e).__name__}: {line} (details in the server log)'
  return 'Error: ' + (line if len(line) <= limit else line[: limit - 3] + '...')


def shot_thumbnails(summary: Summary, size: int = THUMBNAIL_SIZE) -> list[str]:
  """One JPEG data URI per selected segment: the frame nearest its middle."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  middles = np.array([(start + end) / 2 for start, end in summary.segments])
  frames, times = shots.frames_near(summary.video, middles, size)
  uris = []
  for t in middles:
    buffer = io.BytesIO()
    Image.fromarray(frames[int(np.argmin(np.abs(times - t)))]).save(buffer, 'JPEG', quality=85)
    uris.append('data:image/jpeg;base64,' + base64.b64encode(buffer.getvalue()).decode('ascii'))
  return uris


def shots_table(summary: Summary, thumbnails: Sequence[str]) -> str:
  """The selected shots as an HTML table: number, thumbnail, start, end, length, shot score."""
  head = ''.join(
    f'<th>{h}</th>' for h in ('shot', 'frame', 'start (s)', 'end (s)', 'length (s)', 'score')
  )
  rows = []
  for shot, (start, end), uri in zip(summary.selected, summary.segments, thumbnails):
    cells = [
      str(shot + 1),
      f'<img src="{uri}" alt="shot {shot + 1}" width="{THUMBNAIL_SIZE}">',
      f'{start:.2f}',
      f'{end:.2f}',
      f'{end - start:.2f}',
      f'{summary.shot_values[shot]:.3f}',
    ]
    rows.append('<tr>' + ''.join(f'<td>{c}</td>' for c in cells) + '</tr>')
  caption = html.escape(
    f'{len(summary.segments)} of {len(summary.shot_times)} shots selected'
    + (' (part of the best shot: no whole shot fits the budget)' if summary.fallback else '')
  )
  return (
    f'<table class="clipit-shots"><caption>{caption}</caption><thead><tr>{head}</tr></thead>'
    f'<tbody>{"".join(rows)}</tbody></table>'
  )


def headline(summary: Summary, uploads: Sequence[str | None] = ()) -> str:
  """One line: how much was kept, how, with which text (upload paths as file names)."""
  share = summary.summary_duration / summary.duration
  text = (
    f'the query {summary.query!r}'
    if summary.query is not None
    else f'{len(summary.captions)} captions ({summary.settings["text_source"]})'
  )
  for path in uploads:  # Uploads live in long temporary paths; their names are enough.
    if path:
      text = text.replace(str(path), pathlib.Path(path).name)
  return (
    f'{pathlib.Path(summary.video).name}: kept {len(summary.segments)} of '
    f'{len(summary.shot_times)} shots, {summary.summary_duration:.1f} s of '
    f'{summary.duration:.1f} s ({share:.0%}); {summary.method} with {text}.'
  )


def _check_request(video_path: str | None, mode: str, query: str | None) -> None:
  if not video_path:
    raise ValueError('no video: upload one, or load the bundled example')
  if mode == 'query' and not (query or '').strip():
    raise ValueError('the query is empty: type what to look for, or choose a generic summary')


def _prune(root: pathlib.Path, keep: int) -> None:
  """Removes all but the newest `keep` request directories under `root`."""
  runs = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
  for old in runs[: max(0, len(runs) - keep)]:
    shutil.rmtree(old, ignore_errors=True)


def summarize_request(
  models: Models,
  video_path: str | None,
  mode: str,
  query: str | None,
  captions: str | None,
  ckpt: str | None,
  proportion: float,
  out_root: files.PathLike,
  report: Report = lambda fraction, text: None,
) -> Result:
  """One request of the page: summarizes, writes into a new directory under `out_root`.

  Args:
    mode: 'query' (uses `query`) or 'generic' (uses the `captions` file, else the captioner).
    ckpt: a train.py --workdir, or empty for the training-free baseline.

  Returns:
    The `Result`; errors a user can cause give `ok=False` and one line in `status`.
  """
  try:
    _check_request(video_path, mode, query)
    report(0.05, 'Loading the models (once per CLIP and checkpoint)')
    base = models.summarizer((ckpt or '').strip() or None)
    kwargs = dict(proportion=summarizer_lib.check_proportion(proportion))
    if mode == 'generic' and not captions:
      kwargs['caption_model'] = models.captioner(base.caption_model)
    summarizer = dataclasses.replace(base, **kwargs)
    report(0.2, 'Encoding the frames, scoring them, finding the shots')
    if mode == 'query':
      summary = summarizer.summarize(video_path, query=query.strip())
    else:
      summary = summarizer.summarize(video_path, captions=captions or None)
    report(0.7, 'Writing summary.mp4, summary.json and scores.png')
    out_root = pathlib.Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    _prune(out_root, KEEP_REQUESTS - 1)
    paths = summary.write(tempfile.mkdtemp(prefix='request-', dir=out_root), progress=False)
    report(0.9, 'Thumbnails of the selected shots')
    table = shots_table(summary, shot_thumbnails(summary))
  except Exception as e:  # pylint: disable=broad-except
    return Result(status=error_message(e, (video_path, captions)))
  return Result(
    status=headline(summary, (captions,)),
    ok=True,
    plot=paths['plot'],
    video=paths['video'],
    json=paths['json'],
    table=table,
    summary=summary,
  )


# -------------------------------------------------------------------- page --

CSS = """
.clipit-shots { border-collapse: collapse; font-size: 0.9em; }
.clipit-shots td, .clipit-shots th { padding: 2px 8px; text-align: right; }
.clipit-shots img { display: block; }
"""
MODES = [('Query-focused: look for the query', 'query'), ('Generic: from captions', 'generic')]


def import_gradio():
  """Gradio, or a one-line error saying how to install it."""
  os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')  # Offline: no calls home.
  warnings.filterwarnings('ignore', "'HTTP_422_UNPROCESSABLE_ENTITY' is deprecated")  # Gradio's.
  try:
    import gradio  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError(f'{PROGRAM} needs Gradio: {INSTALL_HINT}') from None
  return gradio


def _inputs(gr, default_ckpt: str | None):
  """The left column: video, text, checkpoint, proportion, buttons."""
  video_in = gr.Video(label='Video', sources=['upload'], elem_id='video-in')
  example = gr.Button('Load the bundled example (shapes in motion, made in code)', size='sm')
  mode = gr.Radio(MODES, value='query', label='Summary', elem_id='mode')
  query = gr.Textbox(label='Query', placeholder='e.g. people riding bikes', elem_id='query')
  captions = gr.File(
    label='Captions (.srt, .vtt or timestamped text; none: the captioner writes them)',
    file_types=['.srt', '.vtt', '.txt'],
    visible=False,
    elem_id='captions',
  )
  ckpt = gr.Textbox(
    label='Checkpoint: a train.py --workdir (empty: the training-free CLIP-similarity baseline)',
    value=default_ckpt or '',
    elem_id='ckpt',
  )
  proportion = gr.Slider(
    0.05,
    1.0,
    value=summarizer_lib.DEFAULT_PROPORTION,
    step=0.01,
    label='Summary length (share of the video)',
    elem_id='proportion',
  )
  run = gr.Button('Summarize', variant='primary', elem_id='summarize')
  return video_in, example, mode, query, captions, ckpt, proportion, run


def _outputs(gr):
  """The right column: status, plot, summary video, shots, downloads."""
  status = gr.Textbox(label='Status', interactive=False, elem_id='status')
  plot = gr.Image(  # The plot's own title says what it shows.
    label='Frame scores', show_label=False, type='filepath', elem_id='plot'
  )
  summary_video = gr.Video(label='Summary', interactive=False, height=360, elem_id='summary-video')
  table = gr.HTML(elem_id='shots')
  downloads = gr.File(label='Downloads', file_count='multiple', elem_id='downloads')
  return status, plot, summary_video, table, downloads


def build_app(models: Models, default_ckpt: str | None = None, out_root: str | None = None):
  """The page, as a `gr.Blocks` (not launched)."""
  gr = import_gradio()
  out_root = out_root or tempfile.mkdtemp(prefix='clipit-demo-')

  def on_summarize(video_path, mode, query, captions, ckpt, proportion, progress=gr.Progress()):
    result = summarize_request(
      models,
      video_path,
      mode,
      query,
      captions,
      ckpt,
      proportion,
      out_root,
      report=lambda fraction, text: progress(fraction, desc=text),
    )
    downloads = [str(result.video), str(result.json)] if result.ok else None
    plot = str(result.plot) if result.ok else None
    summary_video = str(result.video) if result.ok else None
    return result.status, plot, summary_video, result.table, downloads

  def on_example(progress=gr.Progress()):
    progress(0.1, desc='Rendering the example video (first use only)')
    example = make_example()
    return str(example.video), example.query, str(example.captions)

  def on_mode(mode):
    return gr.update(visible=mode == 'query'), gr.update(visible=mode == 'generic')

  # Gradio's copies of uploads and results are deleted after an hour, checked hourly.
  with gr.Blocks(title='CLIP-It video summarizer', delete_cache=(3600, 3600)) as app:
    gr.Markdown(
      '## CLIP-It: summarize a video\nUpload a video (or load the example), type what to '
      'look for or ask for a generic summary, and press Summarize.'
    )
    with gr.Row():
      with gr.Column(scale=2):
        video_in, example, mode, query, captions, ckpt, proportion, run = _inputs(gr, default_ckpt)
      with gr.Column(scale=3):
        status, plot, summary_video, table, downloads = _outputs(gr)
    mode.change(on_mode, mode, [query, captions])
    video_in.upload(lambda: None, None, captions)  # Another video: the example's captions go.
    example.click(on_example, None, [video_in, query, captions])
    run.click(
      on_summarize,
      [video_in, mode, query, captions, ckpt, proportion],
      [status, plot, summary_video, table, downloads],
    )
  return app


# --------------------------------------------------------------------- CLI --


def make_parser() -> argparse.ArgumentParser:
  parser = cli.OneLineArgumentParser(
    prog=PROGRAM,
    description='A local web page that summarizes videos with CLIP-It (Gradio).',
  )
  parser.add_argument('--host', default='127.0.0.1', help='address to serve on')
  parser.add_argument('--port', type=int, default=DEFAULT_PORT, help='port to serve on')
  parser.add_argument(
    '--clip-model',
    metavar='NAME_OR_PATH',
    help="CLIP hub name, local directory, or 'tiny' (offline); default: the checkpoint's, "
    f'else {encoders.DEFAULT_CLIP}',
  )
  parser.add_argument(
    '--ckpt', metavar='DIR', help='the checkpoint the page starts with (default: the baseline)'
  )
  parser.add_argument(
    '--share', action='store_true', help='also serve on a public gradio.live link (needs network)'
  )
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  """`clipit-demo`: serves the page until Ctrl-C; bad flags or models exit 1 with one line."""
  args = make_parser().parse_args(argv)
  logging.basicConfig(level=logging.WARNING, format=f'{PROGRAM}: %(message)s')
  with cli.one_line_errors(PROGRAM):
    try:
      gr = import_gradio()
    except ImportError as e:
      raise ValueError(str(e)) from None
    check_port(args.host, args.port)  # Before the models load, which takes seconds.
    cli.enable_compilation_cache()
    models = Models(args.clip_model)
    models.summarizer(args.ckpt)  # Fails now, in one line, on a bad --ckpt or --clip-model.
    app = build_app(models, args.ckpt)
    _launch(gr, app, args)
    where = app.local_url + (f' and {app.share_url}' if app.share_url else '')
    print(f'{PROGRAM}: serving on {where} (Ctrl-C stops)', flush=True)
    app.block_thread()
  return 0


def check_port(host: str, port: int) -> None:
  """Raises OSError (one line) when `port` cannot be served on `host`."""
  try:
    with socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET) as s:
      s.bind((host, port))
  except OSError as e:
    raise OSError(
      f'--port {port}: cannot serve on {host} ({e.strerror or e}); pass another --port'
    ) from None


def _launch(gr, app, args: argparse.Namespace) -> None:
  """Starts serving `app` in a thread; a port in use is one line."""
  try:
    app.queue(default_concurrency_limit=1).launch(
      server_name=args.host,
      server_port=args.port,
      share=args.share,
      allowed_paths=[str(files.cache_root() / 'demo')],
      ssr_mode=False,
      theme=gr.themes.Default(font=['sans-serif'], font_mono=['monospace']),  # No web fonts.
      css=CSS,
      quiet=True,
      prevent_thread_lock=True,
    )
  except OSError as e:
    if 'empty port' not in str(e):
      raise
    raise OSError(f'--port {args.port}: in use on {args.host}; pass another --port') from None


if __name__ == '__main__':
  sys.exit(main())

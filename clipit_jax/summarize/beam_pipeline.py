"""Encodes a corpus of videos with CLIP on Apache Beam, into the feature cache clipit-summarize reads.

  clipit-encode-beam 'videos/*.mp4' --list more.txt --clip-model tiny --out runs/encode \\
      --runner=DirectRunner --direct_num_workers=2 --direct_running_mode=multi_processing

Each video is decoded at `--fps` and CLIP-encoded in batches of `--batch-size` frames
by a worker that loads the model once (`beam_models.WithModels`). The features go to
`--cache-dir` under the name and in the format of `encoders.cached_video_features`
(`encoders.feature_cache_file`, `write_cached_features`), so `clipit-summarize` and
`Summarizer` then read them instead of encoding. A video already in the cache is not
encoded again: run the same command to finish an interrupted corpus.

`--out` receives `encoded.jsonl` (one line a video: its cache file, frames, seconds)
and `failed.jsonl`, the dead-letter output (one line a failed video: the stage and
the reason); the other videos complete. With `--summaries`, each video's summary
(`Summarizer`, training-free or `--ckpt`) is written to `--out/<name>/` as well.

Arguments the command does not know are Beam's `PipelineOptions`, written `--name=value`
(`--runner=DataflowRunner`, ...); one that Beam does not know either is refused.
Paths are opened with Python's file I/O, so on a cluster the videos and `--cache-dir`
must be on a file system that every worker mounts.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options import pipeline_options

from clipit_jax import cli
from clipit_jax import files
from clipit_jax.media import beam_models
from clipit_jax.media import encoders
from clipit_jax.summarize import batch
from clipit_jax.summarize import outputs
from clipit_jax.summarize import summarizer as summarizer_lib

PROGRAM = 'clipit-encode-beam'
FAILED = 'failed'  # The tag of the dead-letter output.
ENCODED_FILE = 'encoded.jsonl'
FAILED_FILE = 'failed.jsonl'


# ------------------------------------------------------------------ encode --


def encode_to_cache(
  path: str, encoder: encoders.ClipEncoder, fps: float, cache_dir: files.PathLike, batch_size: int
) -> dict[str, Any]:
  """Puts the features of `path` in the cache, unless there; a record of it.

  Returns:
    {video, cache_file, frames, from_cache, seconds}.

  Raises:
    VideoError: the video is missing or cannot be decoded.
    OSError: the cache file cannot be written.
  """
  start = time.perf_counter()
  _, timestamps, cache_file, from_cache = encoders.cache_video_features(
    path, encoder, fps, cache_dir, chunk_size=batch_size, must_write=True
  )
  return dict(
    video=path,
    cache_file=str(cache_file),
    frames=len(timestamps),
    from_cache=from_cache,
    seconds=round(time.perf_counter() - start, 3),
  )


@dataclasses.dataclass(frozen=True)
class SummaryOptions:
  """What `--summaries` writes: `Summarizer` settings and the text."""

  out_dir: str
  query: str | None = None
  ckpt: str | None = None
  proportion: float = summarizer_lib.DEFAULT_PROPORTION


def failure(path: str, stage: str, error: BaseException) -> dict[str, str]:
  """A dead-letter record: the video, the stage that failed and the one-line reason."""
  return dict(
    video=path, stage=stage, error=type(error).__name__, reason=cli.first_line(error, limit=1000)
  )


def load_models(
  clip_model: str, batch_size: int, fps: float, cache_dir: str, summaries: SummaryOptions | None
) -> tuple[encoders.ClipEncoder, summarizer_lib.Summarizer | None]:
  """The CLIP, and with `summaries` the `Summarizer` that shares it: a worker's models."""
  encoder = encoders.load_clip(clip_model, image_batch_size=batch_size)
  if summaries is None:
    return encoder, None
  kwargs = dict(fps=fps, proportion=summaries.proportion, cache_dir=cache_dir, progress=False)
  if summaries.ckpt:
    summarizer = summarizer_lib.Summarizer.from_checkpoint(
      summaries.ckpt, clip_model=encoder, **kwargs
    )
  else:
    summarizer = summarizer_lib.Summarizer.training_free(encoder, **kwargs)
  return encoder, summarizer


def encode_video(
  element: tuple[str, str],
  encoder: encoders.ClipEncoder,
  summarizer: summarizer_lib.Summarizer | None,
  *,
  fps: float,
  cache_dir: str,
  batch_size: int,
  summaries: SummaryOptions | None = None,
) -> Iterator[Any]:
  """(path, name) -> the record of `encode_to_cache`, or a failure tagged `FAILED`.

  With `summarizer`, also writes the summary to `summaries.out_dir/name/`, unless the
  outputs there are complete (`Summarizer.summarize_into`).
  """
  path, name = element
  try:
    record = encode_to_cache(path, encoder, fps, cache_dir, batch_size)
  except Exception as e:  # pylint: disable=broad-except (one video's failure, not the run's)
    yield beam.pvalue.TaggedOutput(FAILED, failure(path, 'encode', e))
    return
  record['name'] = name
  if summarizer is not None:
    result = summarizer.summarize_into(path, name, summaries.query, summaries.out_dir)
    if result.status == 'failed':
      yield beam.pvalue.TaggedOutput(
        FAILED, dict(video=path, stage='summarize', error='SummaryError', reason=result.error)
      )
      return
    record['summary'], record['summary_status'] = str(result.out), result.status
  yield record


def encode_corpus(
  pipeline: beam.Pipeline,
  items: Sequence[tuple[str, str]],
  out_dir: str,
  *,
  clip_model: str,
  fps: float,
  cache_dir: str,
  batch_size: int,
  summaries: SummaryOptions | None = None,
) -> None:
  """Adds to `pipeline`: `encode_video` for every (path, name), and the two JSONL files."""
  settings = dict(fps=fps, cache_dir=cache_dir, batch_size=batch_size, summaries=summaries)
  results = pipeline | 'Encode' >> beam_models.map_with_models(
    items,
    functools.partial(encode_video, **settings),
    functools.partial(load_models, clip_model, batch_size, fps, cache_dir, summaries),
    tagged=[FAILED],
  )
  for tag, name in (('main', ENCODED_FILE), (FAILED, FAILED_FILE)):
    _ = (
      results[tag]
      | f'Format {tag}' >> beam.Map(json.dumps, sort_keys=True)
      | f'Write {tag}'
      >> beam.io.WriteToText(os.path.join(out_dir, name), shard_name_template='', num_shards=1)
    )


# --------------------------------------------------------------------- CLI --


def make_parser() -> argparse.ArgumentParser:
  parser = cli.OneLineArgumentParser(
    prog=PROGRAM,
    allow_abbrev=False,  # A prefix of ours must not swallow a Beam option.
    description='CLIP-encode a corpus of videos on Apache Beam into the feature cache that '
    'clipit-summarize reads. Other arguments are Beam pipeline options, written '
    '--name=value (--runner=DirectRunner, --direct_num_workers=2, ...).',
  )
  parser.add_argument('videos', nargs='*', metavar='VIDEO', help="video files or globs ('**')")
  parser.add_argument('--list', metavar='FILE', help='a file of video paths or globs, one a line')
  parser.add_argument(
    '--clip-model',
    default=encoders.DEFAULT_CLIP,
    metavar='NAME_OR_PATH',
    help="CLIP hub name, local directory, or 'tiny' (offline demo); "
    f'default {encoders.DEFAULT_CLIP}',
  )
  parser.add_argument(
    '--fps', type=float, default=summarizer_lib.DEFAULT_FPS, help='frames per second encoded'
  )
  parser.add_argument('--batch-size', type=int, default=64, help='frames per CLIP call')
  parser.add_argument(
    '--cache-dir',
    metavar='DIR',
    help='CLIP feature cache (default: $CLIPIT_CACHE/features or ~/.cache/clipit_jax/features)',
  )
  parser.add_argument(
    '--out', required=True, metavar='DIR', help='encoded.jsonl, failed.jsonl (and summaries)'
  )
  parser.add_argument(
    '--summaries', action='store_true', help="also write each video's summary to --out/<name>/"
  )
  parser.add_argument('--query', help='with --summaries: query-focused summaries of this text')
  parser.add_argument('--ckpt', metavar='DIR', help='with --summaries: a train.py --workdir')
  parser.add_argument(
    '--proportion',
    type=float,
    default=summarizer_lib.DEFAULT_PROPORTION,
    help='with --summaries: summary length as a share of the video',
  )
  return parser


def check_clip_model(name: str) -> None:
  """Fails fast (ModelLoadError) on a CLIP the workers could not load; builds the tiny one."""
  if name == encoders.TINY:
    encoders.tiny_clip_dir()
    return
  from clipit_jax.media import hub  # pylint: disable=g-import-not-at-top

  hub.resolve(name, what='CLIP model', flag='--clip-model', weights=False)


def _summary_options(args: argparse.Namespace) -> SummaryOptions | None:
  """The checked `--summaries` settings, or None; ValueError on a bad combination."""
  if not args.summaries:
    if args.query is not None or args.ckpt:
      raise ValueError('--query and --ckpt are for --summaries; add it or drop them')
    return None
  fusion = None
  if args.ckpt:
    from clipit_jax import checkpoints  # pylint: disable=g-import-not-at-top

    if not os.path.isdir(args.ckpt):
      raise ValueError(f'--ckpt {args.ckpt}: not a directory; pass a train.py --workdir')
    fusion = checkpoints.load_config(args.ckpt).model.text_fusion
  summarizer_lib.check_text(fusion, args.query, False)
  return SummaryOptions(
    out_dir=os.path.abspath(args.out),
    query=args.query,
    ckpt=os.path.abspath(args.ckpt) if args.ckpt else None,
    proportion=summarizer_lib.check_proportion(args.proportion),
  )


def _read_records(path: str) -> list[dict]:
  if not os.path.isfile(path):  # A remote --out (gs://...): nothing to read back here.
    return []
  with open(path, encoding='utf-8') as f:
    return [json.loads(line) for line in f if line.strip()]


def report(out_dir: str, cache_dir: str) -> int:
  """Prints what the run did from the two JSONL files; returns the number of failures."""
  encoded = _read_records(os.path.join(out_dir, ENCODED_FILE))
  failed = _read_records(os.path.join(out_dir, FAILED_FILE))
  hits = sum(r['from_cache'] for r in encoded)
  print(
    f'{len(encoded)} videos in the feature cache {cache_dir} ({len(encoded) - hits} encoded now, '
    f'{hits} were there); {len(failed)} failed: see {os.path.join(out_dir, FAILED_FILE)}'
  )
  for r in sorted(failed, key=lambda r: r['video']):
    print(f'{PROGRAM}: {r["stage"]} failed: {r["reason"]}', file=sys.stderr)
  return len(failed)


def beam_options(beam_args: Sequence[str]) -> pipeline_options.PipelineOptions:
  """Beam's options from the arguments; workers log warnings only unless told otherwise.

  Raises:
    ValueError: an argument that is neither ours nor a Beam option (a typo).
  """
  beam_args = list(beam_args)
  if not any(a.startswith('--default_sdk_harness_log_level') for a in beam_args):
    beam_args.append('--default_sdk_harness_log_level=WARNING')
  options = pipeline_options.PipelineOptions(beam_args)
  unknown = set(options.get_all_options(retain_unknown_options=True))
  unknown -= set(options.get_all_options())
  if unknown:
    raise ValueError(
      f"unknown option {', '.join('--' + u for u in sorted(unknown))}: neither {PROGRAM}'s "
      '(see --help) nor a Beam pipeline option'
    )
  return options


def run(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
  """Checks the inputs, runs the pipeline, reports; returns the number of failed videos."""
  paths = [os.path.abspath(p) for p in batch.find_videos(args.videos, args.list, args.out)]
  fps = summarizer_lib.check_fps(args.fps)
  if args.batch_size < 1:
    raise ValueError(f'--batch-size must be at least 1, got {args.batch_size}')
  outputs.check_out_dir(args.out)
  summaries = _summary_options(args)
  options = beam_options(beam_args)
  check_clip_model(args.clip_model)
  cache_dir = os.path.abspath(args.cache_dir or files.cache_root() / 'features')
  out_dir = os.path.abspath(args.out)
  os.makedirs(out_dir, exist_ok=True)
  with beam.Pipeline(options=options) as pipeline:
    encode_corpus(
      pipeline,
      list(zip(paths, batch.output_names(paths))),
      out_dir,
      clip_model=args.clip_model,
      fps=fps,
      cache_dir=cache_dir,
      batch_size=args.batch_size,
      summaries=summaries,
    )
  return report(args.out, cache_dir)


def main(argv: Sequence[str] | None = None) -> int:
  """`clipit-encode-beam`: 0 when every video was encoded, else 1 (failures on stderr)."""
  args, beam_args = make_parser().parse_known_args(argv)
  with cli.one_line_errors(PROGRAM, on_interrupt='run the same command to resume'):
    return 1 if run(args, beam_args) else 0


if __name__ == '__main__':
  sys.exit(main())

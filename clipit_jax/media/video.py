"""Video I/O with PyAV: probing, streaming frame sampling, and summary writing.

All times are seconds on the video stream's presentation timeline, with 0 at
the stream's start time: each frame's own time, so variable frame rates are kept.
The timestamps that `decode_frames` returns (float seconds) are the times that
`write_summary` cuts at, compared as the same floats. Frames are what a viewer
sees: rotation metadata (the display matrix of a phone video) is applied when
decoding and kept in the summary.
"""

from __future__ import annotations

import dataclasses
import errno
import fractions
import itertools
import logging
import math
import pathlib
from collections.abc import Iterator, Sequence

import av
import av.error
import numpy as np
import tqdm

from clipit_jax import cli
from clipit_jax import files

Fraction = fractions.Fraction

_log = logging.getLogger(__name__)

# What a directory search takes as a video (lower-case file name endings).
VIDEO_EXTENSIONS = (
  '.mp4',
  '.avi',
  '.webm',
  '.mkv',
  '.flv',
  '.mpg',
  '.mov',
  '.m4v',
  '.mpeg',
  '.wmv',
)

# Sample rates the AAC encoder accepts; others are resampled to 48 kHz.
_AAC_RATES = (
  96000,
  88200,
  64000,
  48000,
  44100,
  32000,
  24000,
  22050,
  16000,
  12000,
  11025,
  8000,
  7350,
)


class VideoError(ValueError):
  """A video is missing, unreadable or unsuitable; the message says why."""


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """What `probe` knows about a video without decoding it."""

  path: str
  duration: float  # Seconds.
  fps: float  # Average frame rate of the video stream.
  n_frames: int  # Frame count (from the container, else duration * fps).
  width: int  # As displayed (after `rotation`).
  height: int
  has_audio: bool
  rotation: int = 0  # Degrees counter-clockwise the stored frames are turned for display.


# ----------------------------------------------------------------- opening --


def _open(path: files.PathLike) -> av.container.InputContainer:
  """Opens `path` for reading, turning every failure into a `VideoError`."""
  path = pathlib.Path(path)
  if not path.exists():
    raise VideoError(f'{path}: file not found; check the path.')
  if not path.is_file():
    raise VideoError(f'{path}: not a regular file; pass a video file.')
  if path.stat().st_size == 0:
    raise VideoError(f'{path}: the file is empty (0 bytes); pass a video file.')
  try:
    container = av.open(str(path), mode='r')
  except (av.error.FFmpegError, OSError, ValueError) as e:
    raise VideoError(
      f'{path}: not a readable video (corrupt, truncated or not a video: '
      f'{cli.first_line(e)}); re-encode or re-download it.'
    ) from None
  if not container.streams.video:
    container.close()
    raise VideoError(f'{path}: no video stream in the file; pass a file that has video.')
  return container


def _origin(stream: av.stream.Stream) -> int:
  """The stream's start time in its time base (0 when unknown)."""
  return stream.start_time if stream.start_time is not None else 0


def _stream_fps(stream: av.video.stream.VideoStream) -> Fraction | None:
  rate = stream.average_rate or stream.guessed_rate or stream.base_rate
  return Fraction(rate) if rate else None


def _packet_end_time(container, stream) -> float:
  """Duration from demuxing packets (no decoding) when headers lack one.

  Uses the packets' timestamps, or their count over the frame rate when they
  have none (raw elementary streams).
  """
  origin, end, count = _origin(stream), None, 0
  for packet in container.demux(stream):
    if not packet.size:
      continue
    count += 1
    if packet.pts is not None:
      stop = packet.pts + (packet.duration or 0)
      end = stop if end is None else max(end, stop)
  if end is not None:
    return float((end - origin) * stream.time_base)
  fps = _stream_fps(stream)
  return float(count / fps) if fps else 0.0


# ------------------------------------------------------------------- probe --


def _declared_duration(container, stream) -> float | None:
  """Duration in seconds from stream or container headers, if any."""
  if stream.duration is not None and stream.duration > 0:
    return float(stream.duration * stream.time_base)
  if container.duration is not None and container.duration > 0:
    return container.duration / av.time_base
  return None


def _display_rotation(path: files.PathLike) -> int:
  """The first frame's display rotation in degrees counter-clockwise (0 when none decodes)."""
  with _open(path) as container:
    try:
      frame = next(container.decode(container.streams.video[0]), None)
    except av.error.FFmpegError:
      return 0
    return 0 if frame is None else int(frame.rotation)


def _quarter_turns(rotation: float) -> int:
  """Counter-clockwise quarter turns (0-3) nearest to `rotation` degrees."""
  return round(rotation / 90) % 4


def probe(path: files.PathLike) -> VideoInfo:
  """Reads a video's duration, rate, displayed size, rotation and audio presence.

  Only the first frame is decoded (for its rotation).

  Raises:
    VideoError: the file is missing, not a video, or has zero duration.
  """
  with _open(path) as container:
    stream = container.streams.video[0]
    fps = _stream_fps(stream)
    duration = _declared_duration(container, stream)
    if duration is None:
      try:
        duration = _packet_end_time(container, stream)
      except av.error.FFmpegError as e:
        raise VideoError(
          f'{path}: cannot read the video ({cli.first_line(e)}); the file may be corrupt.'
        ) from None
    if duration <= 0:
      raise VideoError(f'{path}: the video has zero length; pass a longer one.')
    n_frames = stream.frames or (round(duration * fps) if fps else 0)
    size = (stream.codec_context.width, stream.codec_context.height)
    has_audio = bool(container.streams.audio)
  rotation = _display_rotation(path)
  width, height = size[::-1] if _quarter_turns(rotation) % 2 else size
  return VideoInfo(
    path=str(path),
    duration=duration,
    fps=float(fps) if fps else 0.0,
    n_frames=int(n_frames),
    width=width,
    height=height,
    has_audio=has_audio,
    rotation=rotation,
  )


def require_min_duration(info: VideoInfo, seconds: float) -> None:
  """Raises `VideoError` when the video is shorter than `seconds` (one shot)."""
  if info.duration < seconds:
    raise VideoError(
      f'{info.path}: the video is {info.duration:.2f} s long, shorter than '
      f'the minimum {seconds:.2f} s needed to summarize it; pass a longer '
      'video.'
    )


# ------------------------------------------------------------------ decode --


def _crop_geometry(width: int, height: int, size: int) -> tuple[int, int]:
  """(width, height) that scales the shorter side to `size`, keeping aspect."""
  if width <= height:
    return size, max(size, round(height * size / width))
  return max(size, round(width * size / height)), size


def _to_rgb_crop(frame: av.VideoFrame, size: int) -> np.ndarray:
  """Upright (its rotation applied), shorter side bicubic-resized to `size`, centre-cropped:
  [size, size, 3]."""
  turns = _quarter_turns(frame.rotation)
  sideways = turns % 2 == 1
  shown = (frame.height, frame.width) if sideways else (frame.width, frame.height)
  w, h = _crop_geometry(*shown, size)
  coded = (h, w) if sideways else (w, h)
  rgb = frame.to_ndarray(format='rgb24', width=coded[0], height=coded[1], interpolation='BICUBIC')
  rgb = np.rot90(rgb, turns) if turns else rgb
  top, left = (h - size) // 2, (w - size) // 2
  return rgb[top : top + size, left : left + size]


def _nearest_sampler(
  items: Iterator[tuple[Fraction, object]], fps: Fraction
) -> Iterator[tuple[Fraction, object]]:
  """Picks, for each target time k / fps, the item with the nearest time.

  `items` are (time, payload) pairs in increasing time. Ties go to the earlier
  item. An item is emitted at most once, so when the source is slower than
  `fps` the result has fewer items than targets. Targets after the last item
  count only while they fall within the last item's display interval (taken
  as the gap from the item before it).

  Yields:
    (time, payload) pairs, strictly increasing in time.
  """
  k, prev, prev_gap, emitted = 0, None, Fraction(0), None
  for t, payload in items:
    if prev is not None and t <= prev[0]:
      continue  # Non-increasing timestamp: keep the first.
    while k / fps <= t:
      target = k / fps
      if prev is not None and target - prev[0] <= t - target:
        choice = prev
      else:
        choice = (t, payload)
      if emitted is None or choice[0] > emitted:
        emitted = choice[0]
        yield choice
      k += 1
    if prev is not None:
      prev_gap = t - prev[0]
    prev = (t, payload)
  if prev is not None and (emitted is None or prev[0] > emitted):
    if k / fps < prev[0] + prev_gap:
      yield prev


def _frame_times(container, stream, frames=None) -> Iterator[tuple[Fraction, av.VideoFrame]]:
  """Decoded frames with exact PTS times in seconds from the stream origin.

  Args:
    container: the open input.
    stream: its video stream.
    frames: decoded frames to time (default: decode the stream from here).
  """
  origin, tb = _origin(stream), stream.time_base
  fps = _stream_fps(stream) or Fraction(25)
  last = None
  for frame in container.decode(stream) if frames is None else frames:
    if frame.pts is not None:
      t = (frame.pts - origin) * tb
    else:  # No timestamp: assume a constant rate after the previous frame.
      t = Fraction(0) if last is None else last + 1 / fps
    last = t
    yield t, frame


def decode_frames(
  path: files.PathLike,
  fps: float = 2.0,
  size: int = 224,
  chunk_size: int = 64,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Streams frames sampled at `fps`, resized and centre-cropped for an encoder.

  For each target time k / fps (k = 0, 1, ...) the decoded frame whose PTS is
  nearest is taken (ties to the earlier frame; a frame is used at most once,
  so a source slower than `fps` gives fewer frames). Timestamps are the
  frames' exact PTS in seconds from the stream start. Each sampled frame is
  turned upright (its rotation metadata applied), bicubic-resized so its
  shorter side is `size`, then centre-cropped (sample aspect ratio is
  ignored). Only sampled frames
  are converted to RGB, and at most `chunk_size` frames are held at a time.

  The file is checked when this is called; frames are decoded lazily as the
  returned iterator is consumed. A truncated file whose first part decodes
  yields the decodable frames (and logs a warning); a file where no frame
  decodes raises during iteration.

  Args:
    path: video file.
    fps: sampling rate in frames per second.
    size: side of the square output crops.
    chunk_size: frames per yielded chunk.

  Returns:
    An iterator of (frames uint8 [n, size, size, 3], timestamps float64 [n])
    with 1 <= n <= chunk_size.

  Raises:
    VideoError: the file is missing, not a video, or nothing decodes.
  """
  if fps <= 0 or size <= 0 or chunk_size <= 0:
    raise ValueError(f'fps, size and chunk_size must be positive, got {fps}, {size}, {chunk_size}')
  _open(path).close()  # Fail now, not at the first next(), on a bad file.
  return _decode(path, Fraction(fps).limit_denominator(1_000_000), size, chunk_size)


def _decode(
  path: files.PathLike, rate: Fraction, size: int, chunk_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """The generator behind `decode_frames`."""
  container = _open(path)
  try:
    stream = container.streams.video[0]
    stream.thread_type = 'AUTO'
    expected = _declared_duration(container, stream)
    last = [None]  # Time of the last decoded frame.

    def tracked():
      for t, frame in _frame_times(container, stream):
        last[0] = t
        yield t, frame

    frames = np.empty((chunk_size, size, size, 3), np.uint8)
    times = np.empty((chunk_size,), np.float64)
    n, total = 0, 0
    samples = _nearest_sampler(tracked(), rate)
    while True:
      try:
        t, frame = next(samples)
      except StopIteration:
        break
      except av.error.FFmpegError as e:
        if last[0] is None:
          raise VideoError(
            f'{path}: no frame could be decoded ({cli.first_line(e)}); the file is '
            'corrupt or truncated, re-encode or re-download it.'
          ) from None
        _log.warning(
          '%s: decoding failed after %.2f s (%s); using the frames before that.',
          path,
          float(last[0]),
          cli.first_line(e),
        )
        break
      frames[n], times[n] = _to_rgb_crop(frame, size), float(t)
      n += 1
      if n == chunk_size:
        yield frames, times
        frames = np.empty_like(frames)
        times = np.empty_like(times)
        total, n = total + n, 0
    if n:
      yield frames[:n], times[:n]
    elif total == 0:
      raise VideoError(
        f'{path}: the video has no decodable frames; the file is empty, corrupt or truncated.'
      )
    if expected and last[0] is not None and float(last[0]) < expected - max(1.0, 0.05 * expected):
      _log.warning(
        '%s: frames stop at %.2f s of the declared %.2f s; the file looks truncated.',
        path,
        float(last[0]),
        expected,
      )
  finally:
    container.close()


def decode_frames_at(
  path: files.PathLike, indices: Sequence[int], size: int = 224, chunk_size: int = 64
) -> Iterator[np.ndarray]:
  """Streams the frames at 0-based decode-order `indices` (increasing), cropped like
  `decode_frames`: chunks of uint8 [n, size, size, 3], at most `chunk_size` frames each.

  This is how the benchmark files' `picks` (frame numbers) are read back from the
  raw videos. Raises VideoError when the file is bad or ends before the last index.
  """
  wanted = np.asarray(indices, np.int64).reshape(-1)
  if wanted.size and (wanted[0] < 0 or np.any(np.diff(wanted) <= 0)):
    raise ValueError('frame indices must be increasing and non-negative')
  _open(path).close()  # Fail now, not at the first next(), on a bad file.

  def generate():
    container = _open(path)
    try:
      stream = container.streams.video[0]
      stream.thread_type = 'AUTO'
      chunk, k, decoded = [], 0, 0
      try:
        for i, frame in enumerate(container.decode(stream)):
          decoded = i + 1
          if k == wanted.size:
            break
          if i == wanted[k]:
            chunk.append(_to_rgb_crop(frame, size))
            k += 1
            if len(chunk) == chunk_size:
              yield np.stack(chunk)
              chunk = []
      except av.error.FFmpegError as e:
        raise VideoError(
          f'{path}: decoding failed at frame {decoded} ({cli.first_line(e)}); '
          'the file is corrupt or truncated.'
        ) from None
      if k < wanted.size:
        raise VideoError(
          f'{path}: has {decoded} frames but frame {wanted[k]} is needed; '
          'is it the right video (see the name mapping file)?'
        )
      if chunk:
        yield np.stack(chunk)
    finally:
      container.close()

  return generate()


# ------------------------------------------------------------------- write --


def _check_segments(
  segments: Sequence[tuple[float, float]], duration: float, path: files.PathLike
) -> list[tuple[float, float]]:
  """Validates (start, end) pairs and clips them to [0, duration]."""
  out = []
  for start, end in segments:
    start, end = max(0.0, float(start)), min(float(end), duration)
    if not end > start:
      continue
    out.append((start, end))
  if not out:
    raise ValueError(
      f"{path}: no segment overlaps the video's {duration:.2f} s; got {list(segments)!r}"
    )
  return out


def _even(x: int) -> int:
  return max(2, x - x % 2)


def _decode_from(container, stream, target_pts: int) -> Iterator[av.frame.Frame]:
  """Decodes `stream` from its keyframe at or before `target_pts`.

  Some demuxers (e.g. MPEG-TS) can seek past the target or to nothing; then
  this decodes from the start of the file instead.

  Raises:
    VideoError: the input cannot seek at all (e.g. a raw H.264 stream).
  """
  try:
    container.seek(max(target_pts, 0), stream=stream, backward=True, any_frame=False)
  except av.error.FFmpegError as e:
    raise VideoError(
      f'{container.name}: cannot seek in this file ({cli.first_line(e)}); remux '
      'it into an mp4 first (ffmpeg -i IN -c copy OUT.mp4).'
    ) from None
  frames = container.decode(stream)
  first = next(frames, None)
  if first is None or (first.pts is not None and first.pts > target_pts):
    container.seek(0)
    frames = container.decode(stream)
    first = next(frames, None)
  if first is not None:
    yield first
    yield from frames


# Clock of the summary's video stream: fine enough to keep each source frame's own time.
_OUT_TICKS_PER_SECOND = 90_000


def _shown_frames(container, stream, start: float, end: float) -> Iterator[tuple[float, object]]:
  """(seconds after `start`, frame) for each frame on screen during [start, end).

  The first is the frame on screen at `start` (the last one with time <= start,
  else the first after it), at 0; then the frames with start < time < end at
  their own times. Times are compared as the float seconds `decode_frames`
  reports, so a shot bound taken from those timestamps cuts at that very frame.
  """
  target = _origin(stream) + math.floor(start / stream.time_base)
  held, started = None, False
  for t, frame in _frame_times(container, stream, _decode_from(container, stream, target)):
    seconds = float(t)
    if seconds <= start:
      held = frame
      continue
    if seconds >= end:
      break
    if not started:
      started = True
      yield 0.0, frame if held is None else held
      if held is None:
        continue
    yield seconds - start, frame
  if not started and held is not None:
    yield 0.0, held


class _VideoSink:
  """The summary's H.264 stream: frames in at output ticks, packets out with durations.

  Without B-frames the packets come out in display order, so each is muxed
  once the next one's time is known, and the last lasts until `close`'s end:
  the file lasts what its segments do, whatever the source's frame rate.
  """

  def __init__(self, out: av.container.OutputContainer, stream: av.video.stream.VideoStream):
    self.out, self.stream = out, stream
    self.next_pts = 0  # The earliest tick for the next frame.
    self.frames = 0
    self._held = None  # The last packet, waiting for its duration.

  def encode(self, frame: av.VideoFrame, pts: int) -> None:
    pts = max(pts, self.next_pts)
    frame = frame.reformat(width=self.stream.width, height=self.stream.height, format='yuv420p')
    frame.pts, frame.time_base = pts, Fraction(1, _OUT_TICKS_PER_SECOND)
    try:  # Let the encoder pick frame types; don't copy the source's.
      frame.pict_type = av.video.frame.PictureType.NONE
    except (AttributeError, TypeError, ValueError):
      pass
    self._mux(self.stream.encode(frame))
    self.next_pts, self.frames = pts + 1, self.frames + 1

  def _mux(self, packets) -> None:
    for packet in packets:
      if self._held is not None:
        self._held.duration = packet.pts - self._held.pts
        self.out.mux(self._held)
      self._held = packet

  def close(self, end_pts: int) -> None:
    """Flushes the encoder; the last frame lasts until tick `end_pts`."""
    self._mux(self.stream.encode(None))
    if self._held is not None:
      self._held.duration = max(1, end_pts - self._held.pts)
      self.out.mux(self._held)
      self._held = None


def _write_segment(container, stream, sink: _VideoSink, segment, offset: float, bar) -> None:
  """Encodes what is on screen during `segment` (start, end) from output second `offset`."""
  start, end = segment
  length, done = round((end - start) * 1000), 0  # Milliseconds; reported to `bar`.
  for seconds, frame in _shown_frames(container, stream, start, end):
    sink.encode(frame, round((offset + seconds) * _OUT_TICKS_PER_SECOND))
    now = min(round(seconds * 1000), length)
    if now > done:
      bar.update(now - done)
      done = now
  bar.update(length - done)


def _copy_audio(
  container,
  stream,
  enc_stream,
  out,
  src_start: float,
  out_start: float,
  out_end: float,
  origin_s: float,
  state: dict,
) -> None:
  """Re-encodes source audio from `src_start` into output [out_start, out_end).

  Samples are converted to the encoder's format and cut by sample index,
  assuming the source audio is contiguous after the seek point. The output
  stays contiguous: silence fills what the source lacks.
  """
  rate = enc_stream.codec_context.sample_rate
  layout = enc_stream.codec_context.layout.name
  channels = len(enc_stream.codec_context.layout.channels)
  resampler = av.AudioResampler(format='fltp', layout=layout, rate=rate)
  first_out = round(out_start * rate)
  last_out = round(out_end * rate)
  t0 = None  # Source time of the first resampled sample.
  seen = 0  # Resampled samples so far.

  def emit(arr: np.ndarray) -> None:
    frame = av.AudioFrame.from_ndarray(
      np.ascontiguousarray(arr, np.float32), format='fltp', layout=layout
    )
    frame.sample_rate = rate
    frame.pts, frame.time_base = state['next_apts'], Fraction(1, rate)
    state['next_apts'] += arr.shape[1]
    out.mux(enc_stream.encode(frame))

  def take(frames: list[av.AudioFrame]) -> bool:
    """Emits what `frames` have for this segment; True once it is full."""
    nonlocal seen
    for f in frames:
      arr = f.to_ndarray()
      # Output sample index of each resampled sample.
      lead = round((t0 - src_start) * rate)  # <= 0: decoding starts early.
      pos = first_out + lead + seen + np.arange(arr.shape[1])
      seen += arr.shape[1]
      keep = (pos >= state['next_apts']) & (pos < last_out)
      if keep.any():
        gap = int(pos[keep][0]) - state['next_apts']
        if gap > 0:
          emit(np.zeros((channels, gap), np.float32))
        emit(arr[:, keep])
      if pos[-1] >= last_out - 1:
        return True
    return False

  if first_out > state['next_apts']:
    emit(np.zeros((channels, first_out - state['next_apts']), np.float32))
  target = math.floor((src_start + origin_s) / stream.time_base)
  full = False
  for frame in _decode_from(container, stream, target):
    if frame.pts is None:
      continue
    if t0 is None:
      t0 = float(frame.pts * stream.time_base) - origin_s
    if take(resampler.resample(frame)):
      full = True
      break
  if not full and t0 is not None:
    take(resampler.resample(None))
  if last_out > state['next_apts']:
    emit(np.zeros((channels, last_out - state['next_apts']), np.float32))


def _x264_options(crf: int, preset: str) -> dict[str, str]:
  """libx264's options: quality and speed, and mbtree off, so the same frames always give the
  same bytes (x264's AVX-512 macroblock-tree code reads uninitialised memory)."""
  return {'crf': str(crf), 'preset': preset, 'mbtree': '0'}


def _add_video_stream(
  out: av.container.OutputContainer,
  vin: av.video.stream.VideoStream,
  rotation: int,
  crf: int,
  preset: str,
) -> av.video.stream.VideoStream:
  """An H.264 yuv420p stream of the source's stored size (made even) and rotation, on a
  1/90000 s clock, without B-frames (so packets come out in display order)."""
  fps = (_stream_fps(vin) or Fraction(25)).limit_denominator(100_000)
  vout = out.add_stream('libx264', rate=fps)
  vout.width = _even(vin.codec_context.width)
  vout.height = _even(vin.codec_context.height)
  vout.pix_fmt = 'yuv420p'
  vout.codec_context.time_base = Fraction(1, _OUT_TICKS_PER_SECOND)
  vout.codec_context.max_b_frames = 0
  vout.options = _x264_options(crf, preset)
  if rotation:
    vout.set_display_rotation(rotation)
  return vout


def _add_audio_stream(
  out: av.container.OutputContainer, ain: av.audio.stream.AudioStream
) -> av.audio.stream.AudioStream | None:
  """An AAC stream for the source's audio (mono stays mono, else stereo); None without a
  sample rate."""
  if not ain.codec_context.sample_rate:
    return None
  rate = ain.codec_context.sample_rate
  rate = rate if rate in _AAC_RATES else 48000
  mono = ain.codec_context.layout.nb_channels == 1
  aout = out.add_stream('aac', rate=rate)
  aout.codec_context.layout = 'mono' if mono else 'stereo'
  aout.codec_context.bit_rate = 96_000 if mono else 128_000
  return aout


def _write_segments(
  src_path: files.PathLike,
  segments: list[tuple[float, float]],
  tmp: pathlib.Path,
  info: VideoInfo,
  bar: tqdm.tqdm,
  crf: int,
  preset: str,
) -> None:
  """`write_summary`'s work: the segments one after another into the mp4 `tmp`."""
  with _open(src_path) as src, av.open(str(tmp), mode='w', format='mp4') as out:
    vin = src.streams.video[0]
    vin.thread_type = 'AUTO'
    sink = _VideoSink(out, _add_video_stream(out, vin, info.rotation, crf, preset))
    ain = src.streams.audio[0] if src.streams.audio else None
    aout = _add_audio_stream(out, ain) if ain is not None else None
    origin_s = float(_origin(vin) * vin.time_base)
    state = {'next_apts': 0}
    offsets = list(itertools.accumulate((end - start for start, end in segments), initial=0.0))
    for segment, offset in zip(segments, offsets):
      _write_segment(src, vin, sink, segment, offset, bar)
      if aout is not None:
        start, end = segment
        _copy_audio(src, ain, aout, out, start, offset, offset + end - start, origin_s, state)
    sink.close(round(offsets[-1] * _OUT_TICKS_PER_SECOND))
    if aout is not None:
      out.mux(aout.encode(None))
    if sink.frames == 0:  # Raised inside the block: nothing is renamed into place.
      raise VideoError(
        f'{src_path}: no frame decoded in the selected segments; the file may be corrupt or '
        'truncated.'
      )


def write_summary(
  src_path: files.PathLike,
  segments_seconds: Sequence[tuple[float, float]],
  out_path: files.PathLike,
  *,
  progress: bool = True,
  crf: int = 23,
  preset: str = 'veryfast',
) -> pathlib.Path:
  """Cuts `segments_seconds` from the source and joins them into an H.264 mp4.

  Video is re-encoded with libx264 (yuv420p; cuts are not on keyframes). Each
  segment (start, end) shows what a viewer sees of the source then: the frame
  on screen at `start`, then every frame with start < t < end at its own time
  (variable frame rates are kept), and it lasts exactly end - start, so the
  file lasts the segments' total. The source's rotation metadata is kept.
  When the source has audio, each segment's audio is re-encoded as AAC (mono
  stays mono, anything else becomes stereo), in sync to the sample. Segments
  are written in the given order, clipped to the video; empty ones are
  dropped. The file is written to a temporary name in the same directory and
  renamed into place, so a failure never leaves a partial `out_path`.

  Args:
    src_path: source video.
    segments_seconds: [(start, end), ...] in seconds on the decode timeline.
    out_path: the mp4 to write (parent directories are created).
    progress: show a tqdm bar over output seconds.
    crf: libx264 constant rate factor (lower is better quality).
    preset: libx264 speed preset.

  Returns:
    `out_path` as a Path.

  Raises:
    VideoError: the source is missing, unreadable, or fails while decoding.
    ValueError: no segment overlaps the video.
  """
  info = probe(src_path)
  segments = _check_segments(segments_seconds, info.duration, src_path)
  out_path = pathlib.Path(out_path)
  total_ms = sum(round((end - start) * 1000) for start, end in segments)
  try:
    with (
      files.atomic_path(out_path, suffix='.mp4') as tmp,
      tqdm.tqdm(
        total=total_ms,
        unit='s',
        unit_scale=0.001,
        disable=not progress,
        desc=f'writing {out_path.name}',
      ) as bar,
    ):
      _write_segments(src_path, segments, tmp, info, bar, crf, preset)
  except av.error.FFmpegError as e:
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
      raise VideoError(
        f'{out_path}: no space left on device while writing the summary; '
        'free space there or pass another --out'
      ) from None
    raise VideoError(
      f'{src_path}: failed while writing the summary '
      f'({cli.first_line(e)}); the source may be corrupt.'
    ) from None
  return out_path


def write_frames(
  path: files.PathLike, frames: np.ndarray, fps: float, *, crf: int = 18, preset: str = 'veryfast'
) -> pathlib.Path:
  """Encodes uint8 RGB frames `[n, H, W, 3]` (even H and W) as an H.264 mp4, atomically.

  The same frames give the same file: x264's macroblock-tree rate control is off, as its
  AVX-512 code depends on uninitialised memory (the decoded pixels varied with the heap).
  """
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
    raise ValueError(f'frames must be uint8 [n > 0, H, W, 3], got {frames.dtype} {frames.shape}')
  if frames.shape[1] % 2 or frames.shape[2] % 2:
    raise ValueError(f'H.264 (yuv420p) needs even sides, got {frames.shape[2]}x{frames.shape[1]}')
  with (
    files.atomic_path(path, suffix='.mp4') as tmp,
    av.open(str(tmp), mode='w', format='mp4') as out,
  ):
    stream = out.add_stream('libx264', rate=Fraction(fps).limit_denominator(100_000))
    stream.width, stream.height = frames.shape[2], frames.shape[1]
    stream.pix_fmt = 'yuv420p'
    stream.options = _x264_options(crf, preset)
    for frame in frames:
      out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')))
    out.mux(stream.encode(None))
  return pathlib.Path(path)

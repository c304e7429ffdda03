"""Tests for clipit_jax.media.video: probing, sampling, chunking, writing, errors."""

import fractions
import logging
import pathlib
import tracemalloc

import av
import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from clipit_jax.media import video
from testutil import fill_disk, small_disk

# Its tests share module-scoped fixtures: one worker runs them all (pytest -n --dist loadgroup).
pytestmark = pytest.mark.xdist_group('video')

FPS = 25
BANDS = 8  # Horizontal bands that spell a frame's index in binary.


def index_image(i: int, width: int = 160, height: int = 120) -> np.ndarray:
  """RGB frame whose 8 horizontal bands are white where bit b of i is set."""
  img = np.zeros((height, width, 3), np.uint8)
  band = height // BANDS
  for b in range(BANDS):
    if i >> b & 1:
      img[b * band : (b + 1) * band] = 255
  return img


def read_index(img: np.ndarray) -> int:
  """Inverse of `index_image` for any resize/crop that keeps full height."""
  band = img.shape[0] / BANDS
  bits = [img[int((b + 0.25) * band) : int((b + 0.75) * band)].mean() > 128 for b in range(BANDS)]
  return sum(int(v) << b for b, v in enumerate(bits))


def make_video(
  path,
  seconds=6.0,
  fps=FPS,
  width=160,
  height=120,
  audio=False,
  faststart=False,
  preset='ultrafast',
):
  """Writes an H.264 mp4 whose frame i shows i (`index_image`)."""
  options = {'movflags': 'faststart'} if faststart else {}
  with av.open(str(path), 'w', options=options) as out:
    vs = out.add_stream('libx264', rate=fps)
    vs.width, vs.height, vs.pix_fmt = width, height, 'yuv420p'
    vs.options = {'preset': preset, 'crf': '18'}
    if audio:
      aus = out.add_stream('aac', rate=44100)
      aus.codec_context.layout = 'mono'
    n = round(seconds * fps)
    for i in range(n):
      frame = av.VideoFrame.from_ndarray(index_image(i % 256, width, height), format='rgb24')
      frame.pts = i
      out.mux(vs.encode(frame))
    out.mux(vs.encode(None))
    if audio:
      total, step = round(seconds * 44100), 1000
      for start in range(0, total, step):
        k = min(step, total - start)
        t = np.arange(start, start + k) / 44100
        wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(wave, format='fltp', layout='mono')
        frame.sample_rate, frame.pts = 44100, start
        out.mux(aus.encode(frame))
      out.mux(aus.encode(None))
  return pathlib.Path(path)


@pytest.fixture(scope='module')
def clip(tmp_path_factory):
  """6 s, 25 fps, 160x120, no audio."""
  return make_video(tmp_path_factory.mktemp('v') / 'clip.mp4')


@pytest.fixture(scope='module')
def clip_audio(tmp_path_factory):
  """6 s, 25 fps, 160x120, mono AAC."""
  return make_video(tmp_path_factory.mktemp('v') / 'clip_audio.mp4', audio=True)


def decode_all(path, **kwargs):
  chunks = list(video.decode_frames(path, **kwargs))
  return (np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks]), chunks)


def stream_info(path):
  with av.open(str(path)) as c:
    return {s.type: float(s.duration * s.time_base) for s in c.streams}


# ------------------------------------------------------------------- probe --


def test_probe(clip, clip_audio):
  info = video.probe(clip)
  assert info.duration == pytest.approx(6.0, abs=0.05)
  assert info.fps == pytest.approx(25.0)
  assert info.n_frames == 150
  assert (info.width, info.height, info.has_audio) == (160, 120, False)
  assert video.probe(clip_audio).has_audio


def test_require_min_duration(clip):
  info = video.probe(clip)
  video.require_min_duration(info, 5.0)
  with pytest.raises(video.VideoError, match=r'shorter than the minimum'):
    video.require_min_duration(info, 7.0)


# ------------------------------------------------------------------ decode --


def test_decode_rate_timestamps_and_content(clip):
  frames, times, _ = decode_all(clip, fps=2.0, size=64)
  assert frames.shape == (12, 64, 64, 3) and frames.dtype == np.uint8
  # Nearest frame to k/2 s; at x.5 s the frames 1/50 s either side tie and
  # the earlier one wins.
  expected = [k / 2 - (0.02 if k % 2 else 0.0) for k in range(12)]
  np.testing.assert_allclose(times, expected, atol=1e-9)
  assert [read_index(f) for f in frames] == [round(t * FPS) for t in times]


def test_decode_rate_faster_than_source_uses_each_frame_once(tmp_path):
  path = make_video(tmp_path / 'slow.mp4', seconds=3.0, fps=5)
  frames, times, _ = decode_all(path, fps=12.0, size=32)
  np.testing.assert_allclose(times, np.arange(15) / 5, atol=1e-9)
  assert [read_index(f) for f in frames] == list(range(15))


def test_decode_bikes(shared_dir):
  path = shared_dir / 'data' / 'videos' / 'bikes.mp4'
  frames, times, _ = decode_all(path, fps=2.0, size=224)
  assert frames.shape == (20, 224, 224, 3)
  np.testing.assert_allclose(times, np.arange(20) * 0.5, atol=0.5 / 25)
  assert np.all(np.diff(times) > 0)
  assert frames.std() > 10  # Real content, not a blank frame.


def test_chunks_never_exceed_chunk_size(clip):
  _, times, chunks = decode_all(clip, fps=4.0, size=32, chunk_size=5)
  assert [len(c[1]) for c in chunks] == [5, 5, 5, 5, 4]
  assert all(c[0].shape == (len(c[1]), 32, 32, 3) for c in chunks)
  assert len(times) == 24


def test_decode_is_lazy_and_memory_bounded(tmp_path):
  path = make_video(tmp_path / 'long.mp4', seconds=60.0, fps=10, width=96, height=64)
  size, chunk = 64, 4
  tracemalloc.start()
  try:
    it = video.decode_frames(path, fps=10.0, size=size, chunk_size=chunk)
    assert tracemalloc.get_traced_memory()[1] < 1 << 20  # Nothing decoded.
    n = 0
    for frames, _ in it:
      n += len(frames)
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  all_frames = n * size * size * 3
  assert n == 600
  assert peak < all_frames / 10, (peak, all_frames)


@hypothesis.given(
  gaps=st.lists(st.integers(1, 40), min_size=1, max_size=60), fps=st.sampled_from([1, 2, 3, 7, 25])
)
@hypothesis.settings(max_examples=60, deadline=None)
def test_nearest_sampler_properties(gaps, fps):
  fr = fractions.Fraction
  times = np.cumsum([0] + gaps)
  items = [(fr(int(t), 100), int(t)) for t in times]
  out = list(video._nearest_sampler(iter(items), fr(fps)))
  got = [p for _, p in out]
  assert got == sorted(set(got))  # Strictly increasing, each item once.
  assert got and got[0] == times[0]
  # Every emitted item is the nearest item to some target time.
  targets = [fr(k, fps) for k in range(int(times[-1] / 100 * fps) + 2)]
  nearest = {
    min(items, key=lambda it: (abs(it[0] - t), it[0]))[1]
    for t in targets
    if t <= fr(int(times[-1]), 100)
  }
  assert set(got) >= nearest - {int(times[-1])}
  assert set(got) <= nearest | {int(times[-1])}


def test_decode_rejects_bad_arguments(clip):
  with pytest.raises(ValueError):
    video.decode_frames(clip, fps=0)
  with pytest.raises(ValueError):
    video.decode_frames(clip, chunk_size=0)


# ------------------------------------------------------------------ errors --


def test_missing_file(tmp_path):
  with pytest.raises(video.VideoError, match=r'nope\.mp4: file not found'):
    video.probe(tmp_path / 'nope.mp4')
  with pytest.raises(video.VideoError, match='not found'):
    video.decode_frames(tmp_path / 'nope.mp4')


def test_empty_file(tmp_path):
  (tmp_path / 'empty.mp4').write_bytes(b'')
  with pytest.raises(video.VideoError, match='empty'):
    video.probe(tmp_path / 'empty.mp4')


def test_not_a_video(tmp_path):
  path = tmp_path / 'notes.mp4'
  path.write_text('these are not the frames you are looking for\n' * 50)
  with pytest.raises(video.VideoError, match='not a readable video'):
    video.probe(path)
  with pytest.raises(video.VideoError, match='not a readable video'):
    video.decode_frames(path)


def test_no_video_stream(tmp_path):
  path = tmp_path / 'audio_only.m4a'
  with av.open(str(path), 'w') as out:
    s = out.add_stream('aac', rate=8000)
    frame = av.AudioFrame.from_ndarray(
      np.zeros((1, 8000), np.float32), format='fltp', layout='mono'
    )
    frame.sample_rate, frame.pts = 8000, 0
    out.mux(s.encode(frame))
    out.mux(s.encode(None))
  with pytest.raises(video.VideoError, match='no video stream'):
    video.probe(path)


def test_zero_length_video(tmp_path):
  path = tmp_path / 'zero.mp4'
  with av.open(str(path), 'w') as out:
    s = out.add_stream('libx264', rate=25)
    s.width = s.height = 64
    out.start_encoding()
    out.mux(s.encode(None))
  with pytest.raises(video.VideoError, match='no video stream|zero length'):
    video.probe(path)


def test_truncated_without_index(clip, tmp_path):
  # A plain mp4 keeps its index at the end: half the bytes cannot be opened.
  path = tmp_path / 'half.mp4'
  data = clip.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(video.VideoError, match='corrupt, truncated'):
    video.probe(path)
  with pytest.raises(video.VideoError):
    video.decode_frames(path)


def test_truncated_with_index_yields_decodable_part(tmp_path, caplog):
  full = make_video(tmp_path / 'fs.mp4', faststart=True)
  path = tmp_path / 'fs_half.mp4'
  data = full.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  with caplog.at_level(logging.WARNING, logger='clipit_jax.media.video'):
    frames, times, _ = decode_all(path, fps=2.0, size=32)
  assert 0 < len(frames) < 12
  assert [read_index(f) for f in frames] == [round(t * FPS) for t in times]
  assert 'truncated' in caplog.text


def test_truncated_to_header_only(tmp_path):
  full = make_video(tmp_path / 'fs.mp4', faststart=True)
  path = tmp_path / 'header.mp4'
  with av.open(str(full)) as c:
    first_packet = next(p for p in c.demux(video=0) if p.size)
    offset = first_packet.pos
  path.write_bytes(full.read_bytes()[: offset + 10])
  with pytest.raises(video.VideoError, match='no decodable frames|corrupt'):
    decode_all(path)


# ------------------------------------------------------------------- write --


def test_write_summary_with_audio(clip_audio, tmp_path):
  out = tmp_path / 'sub' / 'summary.mp4'
  got = video.write_summary(clip_audio, [(1.0, 2.0), (3.3, 4.1)], out, progress=False)
  assert got == out and out.is_file()
  durations = stream_info(out)
  assert durations['video'] == pytest.approx(1.8, abs=0.1)
  assert durations['audio'] == pytest.approx(1.8, abs=0.1)
  info = video.probe(out)
  assert info.has_audio and (info.width, info.height) == (160, 120)
  frames, times, _ = decode_all(out, fps=1.0, size=32)
  # Output second 0 is source frame 25 (1.0 s); second 1 is about 3.32 s.
  assert read_index(frames[0]) == 25
  assert abs(read_index(frames[1]) - 83) <= 1
  assert sorted(p.name for p in out.parent.iterdir()) == ['summary.mp4']


def test_write_summary_audio_is_the_source_audio(clip_audio, tmp_path):
  out = video.write_summary(clip_audio, [(0.5, 2.5)], tmp_path / 's.mp4', progress=False)
  with av.open(str(out)) as c:
    samples = np.concatenate([f.to_ndarray()[0] for f in c.decode(audio=0)])
  middle = samples[len(samples) // 4 : 3 * len(samples) // 4]
  spectrum = np.abs(np.fft.rfft(middle))
  peak_hz = np.argmax(spectrum) * 44100 / len(middle)
  assert peak_hz == pytest.approx(440, abs=5)
  assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.2)


def test_write_summary_bikes(shared_dir, tmp_path):
  src = shared_dir / 'data' / 'videos' / 'bikes.mp4'
  out = video.write_summary(src, [(0.0, 1.5), (6.0, 7.0)], tmp_path / 'b.mp4', progress=False)
  # 38 frames at 0.00..1.48 s, then 25 at 6.00..6.96 s: 63 frames lasting 1.5 + 1.0 s.
  assert stream_info(out) == {'video': pytest.approx(2.5, abs=1e-6)}
  frames, times, _ = decode_all(out, fps=2.0, size=64)
  np.testing.assert_allclose(times, [0, 0.48, 1.0, 1.5, 1.98])
  source, _, _ = decode_all(src, fps=25.0, size=64)
  # Output 1.0 s is source frame 25, 1.5 s is source 6.0 s, 1.98 s is source 6.48 s.
  for out_frame, src_index in [(frames[2], 25), (frames[3], 150), (frames[4], 162)]:
    diff = np.abs(out_frame.astype(int) - source[src_index]).mean()
    assert diff < 4, (src_index, diff)  # Neighbouring frames differ by 5+.


def test_write_summary_clips_and_rejects_segments(clip, tmp_path):
  out = video.write_summary(clip, [(-1.0, 0.5), (5.5, 99.0)], tmp_path / 's.mp4', progress=False)
  assert stream_info(out)['video'] == pytest.approx(1.0, abs=0.1)
  with pytest.raises(ValueError, match='no segment'):
    video.write_summary(clip, [(7.0, 8.0)], tmp_path / 't.mp4', progress=False)


def test_write_summary_failure_leaves_no_partial_file(clip, tmp_path, monkeypatch):
  out = tmp_path / 'summary.mp4'
  out.write_bytes(b'previous summary')
  calls = []

  def failing(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
      raise RuntimeError('disk full')
    return real(*args, **kwargs)

  real = video._write_segment
  monkeypatch.setattr(video, '_write_segment', failing)
  with pytest.raises(RuntimeError, match='disk full'):
    video.write_summary(clip, [(0.0, 1.0), (2.0, 3.0)], out, progress=False)
  assert out.read_bytes() == b'previous summary'
  assert [p.name for p in tmp_path.iterdir()] == ['summary.mp4']


def test_write_summary_on_a_full_disk_says_so(clip, tmp_path):
  with small_disk(tmp_path / 'disk', 64) as disk:
    out = disk / 'summary.mp4'
    out.write_bytes(b'previous summary')
    fill_disk(disk, leave_kb=4)
    with pytest.raises(video.VideoError) as e:
      video.write_summary(clip, [(0.0, 3.0)], out, progress=False)
    assert str(e.value) == (
      f'{out}: no space left on device while writing the summary; '
      'free space there or pass another --out'
    )
    assert out.read_bytes() == b'previous summary'


def test_write_summary_bad_source(tmp_path):
  src = tmp_path / 'junk.mp4'
  src.write_bytes(b'\x00' * 4096)
  with pytest.raises(video.VideoError):
    video.write_summary(src, [(0, 1)], tmp_path / 'out.mp4', progress=False)
  assert not (tmp_path / 'out.mp4').exists()


@pytest.mark.parametrize('fmt, name', [('mpegts', 'clip.ts'), ('matroska', 'clip.mkv')])
def test_other_containers(tmp_path, fmt, name):
  path = tmp_path / name
  with av.open(str(path), 'w', format=fmt) as out:
    s = out.add_stream('libx264', rate=FPS)
    s.width, s.height, s.pix_fmt = 160, 120, 'yuv420p'
    s.options = {'preset': 'ultrafast', 'crf': '18'}
    for i in range(50):
      frame = av.VideoFrame.from_ndarray(index_image(i), format='rgb24')
      frame.pts = i
      out.mux(s.encode(frame))
    out.mux(s.encode(None))
  frames, times, _ = decode_all(path, fps=2.0, size=32)
  np.testing.assert_allclose(times, [0, 0.48, 1.0, 1.48], atol=1e-9)
  assert [read_index(f) for f in frames] == [0, 12, 25, 37]
  # MPEG-TS seeking can land past the target; the writer must still cut right.
  out = video.write_summary(path, [(0.5, 1.2)], tmp_path / 's.mp4', progress=False)
  frames, _, _ = decode_all(out, fps=FPS, size=32)
  # Frame 12 (0.48 s) is on screen at 0.5 s; frame 29 (1.16 s) until 1.2 s.
  assert [read_index(f) for f in frames] == list(range(12, 30))


def test_raw_stream_probes_but_cannot_be_cut(tmp_path):
  path = tmp_path / 'clip.h264'
  with av.open(str(path), 'w', format='h264') as out:
    s = out.add_stream('libx264', rate=FPS)
    s.width, s.height, s.pix_fmt = 160, 120, 'yuv420p'
    s.options = {'preset': 'ultrafast'}
    for i in range(50):
      frame = av.VideoFrame.from_ndarray(index_image(i), format='rgb24')
      frame.pts = i
      out.mux(s.encode(frame))
    out.mux(s.encode(None))
  assert video.probe(path).duration == pytest.approx(2.0)
  _, times, _ = decode_all(path, fps=2.0, size=32)
  assert len(times) == 4
  with pytest.raises(video.VideoError, match='cannot seek.*remux'):
    video.write_summary(path, [(0.5, 1.2)], tmp_path / 's.mp4', progress=False)
  assert not (tmp_path / 's.mp4').exists()


# --------------------------------------------------- as the viewer sees it --


def timed_video(path, times_ms, rotation=0, image=index_image):
  """An mp4 whose frame i, `image(i)`, is shown from times_ms[i] (a 1/1000 s clock), with a
  display rotation (degrees counter-clockwise, as FFmpeg's display matrix)."""
  with av.open(str(path), 'w') as out:
    vs = out.add_stream('libx264', rate=FPS)
    vs.width, vs.height, vs.pix_fmt = 160, 120, 'yuv420p'
    vs.codec_context.time_base = fractions.Fraction(1, 1000)
    vs.options = {'preset': 'ultrafast', 'crf': '18'}
    if rotation:
      vs.set_display_rotation(rotation)
    for i, t in enumerate(times_ms):
      frame = av.VideoFrame.from_ndarray(image(i), format='rgb24')
      frame.pts, frame.time_base = t, fractions.Fraction(1, 1000)
      out.mux(vs.encode(frame))
    out.mux(vs.encode(None))
  return pathlib.Path(path)


def left_half_white(i, width=160, height=120):
  img = np.zeros((height, width, 3), np.uint8)
  img[:, : width // 2] = 255
  return img


@pytest.mark.parametrize(
  'rotation, white', [(-90, 'top'), (90, 'bottom'), (180, 'right'), (0, 'left')]
)
def test_rotation_is_applied_when_decoding_and_kept_in_the_summary(tmp_path, rotation, white):
  # A phone's portrait video stores landscape frames and a display rotation (-90: turn them
  # a quarter clockwise); the stored frames' white left half is then on top.
  path = timed_video(tmp_path / 'phone.mp4', range(0, 1000, 40), rotation, left_half_white)
  info = video.probe(path)
  portrait = rotation in (90, -90)
  assert (info.width, info.height) == ((120, 160) if portrait else (160, 120))
  assert info.rotation % 360 == rotation % 360

  def bright_side(frame):
    halves = {
      'top': frame[:16],
      'bottom': frame[16:],
      'left': frame[:, :16],
      'right': frame[:, 16:],
    }
    return max(halves, key=lambda k: halves[k].mean())

  frames, _, _ = decode_all(path, fps=5.0, size=32)
  assert {bright_side(f) for f in frames} == {white}
  out = video.write_summary(path, [(0.2, 0.6)], tmp_path / 's.mp4', progress=False)
  assert video.probe(out).rotation % 360 == rotation % 360
  frames, _, _ = decode_all(out, fps=5.0, size=32)
  assert {bright_side(f) for f in frames} == {white}


def test_variable_frame_rate_is_kept(tmp_path):
  # Slow, then fast, then slow: frames 0-4 every 200 ms, 5-14 every 20 ms, 15-17 every 300 ms.
  times_ms = [0, 200, 400, 600, 800] + list(range(1000, 1200, 20)) + [1200, 1500, 1800]
  path = timed_video(tmp_path / 'vfr.mp4', times_ms)
  source_frames, times, _ = decode_all(path, fps=1000.0, size=32)
  np.testing.assert_allclose(times, np.array(times_ms) / 1000)
  end = video.probe(path).duration  # When the last frame (1.8 s) stops showing.
  segments = [(0.2, 0.6), (0.9, 1.12), (1.5, end)]
  out = video.write_summary(path, segments, tmp_path / 's.mp4', progress=False)
  # The file lasts what its segments do (what summary.json's summary_duration says).
  assert stream_info(out)['video'] == pytest.approx(0.4 + 0.22 + end - 1.5, abs=2e-5)
  frames, out_times, _ = decode_all(out, fps=1000.0, size=32)
  # Each frame at its own time: the one on screen at a segment's start (0.8 s shows at
  # 0.9 s), then every later frame of the segment.
  expected = [(0, 1, 0.0), (0, 2, 0.2), (1, 4, 0.0), (1, 5, 0.1), (1, 6, 0.12), (1, 7, 0.14)]
  expected += [(1, k, 0.1 + 0.02 * (k - 5)) for k in range(8, 11)] + [(2, 16, 0.0), (2, 17, 0.3)]
  offsets = [0.0, 0.4, 0.62]
  assert [read_index(f) for f in frames] == [k for _, k, _ in expected]
  np.testing.assert_allclose(out_times, [offsets[s] + t for s, _, t in expected], atol=2e-5)


@pytest.mark.parametrize('rate', [25.0, 1000.0])
def test_cuts_at_decoded_timestamps_keep_exactly_their_frames(clip, tmp_path, rate):
  # Shot bounds are the float timestamps decode_frames gives; frame k of a 25 fps clip is at
  # exactly k/25 s, which floats round up for k = 1, 20, 33, 52 (the frame was dropped at a
  # start and added at an end when exact times were compared with the floats).
  _, times, _ = decode_all(clip, fps=rate, size=32)
  assert len(times) == 150
  segments = [(times[1], times[20]), (times[33], times[52])]
  out = video.write_summary(clip, segments, tmp_path / 's.mp4', progress=False)
  frames, _, _ = decode_all(out, fps=1000.0, size=32)
  assert [read_index(f) for f in frames] == list(range(1, 20)) + list(range(33, 52))
  assert stream_info(out)['video'] == pytest.approx(38 / FPS, abs=2e-5)

"""Tests for clipit_jax.summarize: the summarizer, shots, outputs, the CLI and its errors."""

import json
import logging
import os
import pathlib
import subprocess
import sys
import warnings

import av
import jax
import matplotlib.image
import numpy as np
import pytest

from clipit_jax import baselines
from clipit_jax import checkpoints
from clipit_jax import protocol
from clipit_jax import evaluators
from clipit_jax import files
from clipit_jax import models
from clipit_jax import train_step
from clipit_jax.media import captions as captions_lib
from clipit_jax.media import encoders
from clipit_jax.media import video
from clipit_jax.summarize import command
from clipit_jax.summarize import outputs
from clipit_jax.summarize import shots
from clipit_jax.summarize import summarizer as summarize
from clipit_jax.summarize import summary as summary_lib
from testutil import BLUES, REDS, SCENES_FPS, fill_disk, scenes_video, small_config, small_disk

# Its tests share module-scoped fixtures: one worker runs them all (pytest -n --dist loadgroup).
pytestmark = pytest.mark.xdist_group('summarize')

ROOT = pathlib.Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
JSON_KEYS = {
  'video',
  'video_sha256',
  'duration',
  'has_audio',
  'method',
  'mode',
  'query',
  'captions',
  'timestamps',
  'scores',
  'shots',
  'selected_shots',
  'segments',
  'summary_duration',
  'budget',
  'fallback',
  'settings',
  'versions',
}


@pytest.fixture(scope='module', autouse=True)
def cache(tmp_path_factory):
  """CLIPIT_CACHE in a temporary directory for the whole module."""
  root = tmp_path_factory.mktemp('clipit_cache')
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv('CLIPIT_CACHE', str(root))
    yield root


@pytest.fixture(scope='module')
def tiny(cache):
  del cache  # Built there.
  return encoders.load_clip(encoders.TINY)


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
  """16 s: eight 2 s scenes of different colours."""
  return scenes_video(tmp_path_factory.mktemp('v') / 'scenes.mp4', REDS + BLUES)


def visible(directory):
  """The names in `directory` but hidden ones (the lock file)."""
  return [name for name in os.listdir(directory) if not name.startswith('.')]


def check_outputs(paths, summary):
  """The three files exist, parse, and agree with `summary`."""
  data = json.loads(paths['json'].read_text())
  assert set(data) == JSON_KEYS
  assert data['selected_shots'] == summary.selected
  assert set(data['versions']) >= {'clipit_jax', 'jax', 'flax', 'tokenizers', 'safetensors'}
  assert paths['plot'].read_bytes()[:8] == PNG_SIGNATURE
  image = matplotlib.image.imread(paths['plot'])
  assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 500
  info = video.probe(paths['video'])
  assert abs(info.duration - summary.summary_duration) <= 2.0 / SCENES_FPS
  return data


def check_shots(summary):
  """Shots tile [0, duration]; the selection keeps within the budget."""
  times = summary.shot_times
  assert times[0, 0] == 0.0 and times[-1, 1] == pytest.approx(summary.duration)
  np.testing.assert_array_equal(times[1:, 0], times[:-1, 1])
  assert summary.shot_steps[0, 0] == 0
  assert summary.shot_steps[-1, 1] == len(summary.timestamps) - 1
  assert summary.summary_duration <= summary.budget + 1e-9
  if not summary.fallback:
    assert summary.segments == [tuple(times[i]) for i in summary.selected]


# -------------------------------------------------------------- end to end --


def test_query_summary_end_to_end(tiny, scenes, tmp_path):
  summarizer = summarize.Summarizer.training_free(
    tiny, proportion=0.3, cache_dir=tmp_path / 'features', progress=False
  )
  summary = summarizer.summarize(scenes, query='a red square')
  assert summary.method == summarize.BASELINE
  assert summary.query == 'a red square' and summary.captions is None
  assert summary.duration == pytest.approx(16.0)
  np.testing.assert_allclose(summary.timestamps, np.arange(32) / 2, atol=1 / SCENES_FPS)
  assert summary.scores.min() == 0.0 and summary.scores.max() == 1.0
  assert len(summary.shot_times) > 2  # KTS sees the scene changes.
  check_shots(summary)
  assert not summary.fallback
  assert summary.summary_duration >= 0.5 * summary.budget
  data = check_outputs(summary.write(tmp_path / 'out', progress=False), summary)
  assert data['mode'] == 'query' and data['query'] == 'a red square'
  assert data['settings']['proportion'] == 0.3
  assert data['budget'] == pytest.approx(0.3 * 16.0)
  assert len(data['scores']) == len(data['timestamps']) == 32
  assert [s['selected'] for s in data['shots']].count(True) == len(summary.selected)


def test_same_video_again_hits_the_feature_cache(tiny, scenes, tmp_path, monkeypatch):
  summarizer = summarize.Summarizer.training_free(tiny, cache_dir=tmp_path, progress=False)
  first = summarizer.summarize(scenes, query='blue')
  monkeypatch.setattr(video, 'decode_frames', None)  # Must not decode.
  again = summarizer.summarize(scenes, query='blue')
  np.testing.assert_array_equal(first.scores, again.scores)
  assert first.selected == again.selected


class ColourEncoder:
  """A stand-in CLIP: images embed as their mean colour, texts as colours."""

  model_id = 'colour-encoder-test'
  image_size = 16
  embed_dim = 512
  WORDS = {'red': (1.0, 0.0, 0.0), 'blue': (0.0, 0.0, 1.0)}

  def _embed(self, rgb):
    out = np.zeros((len(rgb), self.embed_dim), np.float32)
    out[:, :3] = rgb
    return out / np.linalg.norm(out, axis=1, keepdims=True)

  def encode_images(self, frames):
    return self._embed(frames.reshape(len(frames), -1, 3).mean(axis=1))

  def encode_texts(self, texts):
    return self._embed(np.array([self.WORDS[t] for t in texts]))


def test_the_query_decides_the_selection(tmp_path):
  half = 8.0
  path = scenes_video(tmp_path / 'red_blue.mp4', REDS + BLUES)
  summarizer = summarize.Summarizer.training_free(
    ColourEncoder(), proportion=0.3, cache_dir=tmp_path / 'f', progress=False
  )
  for query, (low, high) in (('red', (0.0, half)), ('blue', (half, 16.0))):
    summary = summarizer.summarize(path, query=query)
    check_shots(summary)
    assert not summary.fallback
    assert summary.summary_duration >= 0.5 * summary.budget
    for start, end in summary.segments:
      assert low - 1e-6 <= start < end <= high + 1e-6, (query, summary.segments)


def test_generic_summary_from_an_srt_file(tiny, scenes, tmp_path):
  srt = tmp_path / 'scenes.srt'
  texts = [f'scene {i} shows colour {i}' for i in range(8)]
  srt.write_text(
    ''.join(
      f'{i + 1}\n00:00:{2 * i:02d},000 --> 00:00:{2 * i + 2:02d},000\n{t}\n\n'
      for i, t in enumerate(texts)
    )
  )
  summarizer = summarize.Summarizer.training_free(tiny, cache_dir=tmp_path / 'f', progress=False)
  summary = summarizer.summarize(scenes, captions=srt)
  expected = captions_lib.sample_uniform(captions_lib.parse_captions(srt), 7, summary.duration)
  assert summary.captions == expected and summary.query is None
  check_shots(summary)
  data = check_outputs(summary.write(tmp_path / 'out', progress=False), summary)
  assert data['mode'] == 'generic' and data['captions'] == expected
  assert data['settings']['text_source'] == f'file {srt}'


@pytest.mark.filterwarnings('ignore:Using the model-agnostic default')
def test_generic_summary_with_generated_captions(tiny, scenes, tmp_path):
  summarizer = summarize.Summarizer.training_free(tiny, cache_dir=tmp_path, progress=False)
  assert summarizer.caption_model == captions_lib.TINY
  summary = summarizer.summarize(scenes)
  assert len(summary.captions) == 7
  assert all(isinstance(c, str) for c in summary.captions)
  assert summary.settings['text_source'].startswith('generated by tiny')
  check_shots(summary)


def test_too_small_a_budget_falls_back_to_part_of_a_shot(tiny, tmp_path):
  path = scenes_video(tmp_path / 'short.mp4', REDS[:1], seconds=3.0)
  summarizer = summarize.Summarizer.training_free(
    tiny, proportion=0.15, cache_dir=tmp_path, progress=False
  )
  summary = summarizer.summarize(path, query='red')
  assert summary.fallback and len(summary.segments) == 1
  assert summary.summary_duration == pytest.approx(0.45)
  check_shots(summary)
  check_outputs(summary.write(tmp_path / 'out', progress=False), summary)


# ------------------------------------------------------------- small parts --


def test_select_shots_never_exceeds_the_budget():
  rng = np.random.default_rng(0)
  for _ in range(20):
    ends = np.cumsum(rng.uniform(0.3, 4.0, 30))
    times = np.stack([np.append(0.0, ends[:-1]), ends], axis=1)
    budget = 0.15 * ends[-1]
    picks = shots.select_shots(rng.random(30), times, budget)
    assert picks and np.sum(times[picks, 1] - times[picks, 0]) <= budget


def test_baseline_scores_are_max_similarity_min_max_normalised():
  features = np.eye(4, 512, dtype=np.float32)
  text = np.stack([np.eye(1, 512, 0)[0], 0.5 * np.eye(1, 512, 2)[0]])
  np.testing.assert_allclose(baselines.clip_similarity(features, text), [1.0, 0.0, 0.5, 0.0])
  np.testing.assert_array_equal(baselines.clip_similarity(np.ones((3, 512)), text), np.ones(3))


def test_shot_times_and_values():
  steps = np.array([[0, 1], [2, 4], [5, 5]])
  timestamps = np.array([0.04, 0.5, 1.0, 1.5, 2.0, 2.5])
  np.testing.assert_array_equal(
    shots.shot_times(steps, timestamps, 3.0), [[0.0, 1.0], [1.0, 2.5], [2.5, 3.0]]
  )
  np.testing.assert_allclose(
    protocol.shot_means(np.array([1, 0, 1, 1, 1, 0.5]), steps), [0.5, 1.0, 0.5]
  )


# --------------------------------------------------------------------- CLI --


def test_cli_writes_the_three_files(scenes, tmp_path, capsys):
  out = tmp_path / 'out'
  assert (
    command.main(
      [
        str(scenes),
        '--query',
        'a red square',
        '--clip-model',
        'tiny',
        '--proportion',
        '0.2',
        '--cache-dir',
        str(tmp_path / 'f'),
        '--no-progress',
        '--out',
        str(out),
      ]
    )
    == 0
  )
  captured = capsys.readouterr()
  assert sorted(visible(out)) == ['scores.png', 'summary.json', 'summary.mp4']
  assert 'scenes.mp4: 16.0 s, 32 frames at 2 fps' in captured.out
  assert 'wrote' in captured.out
  data = json.loads((out / 'summary.json').read_text())
  assert data['settings']['clip_model'] == 'tiny'
  assert data['summary_duration'] <= 0.2 * 16.0


def make_audio_only(path):
  with av.open(str(path), 'w') as out:
    stream = out.add_stream('aac', rate=44100)
    stream.codec_context.layout = 'mono'
    for start in range(0, 44100, 1024):
      frame = av.AudioFrame.from_ndarray(
        np.zeros((1, 1024), np.float32), format='fltp', layout='mono'
      )
      frame.sample_rate, frame.pts = 44100, start
      out.mux(stream.encode(frame))
    out.mux(stream.encode(None))
  return path


def make_no_frames(path):
  """An mp4 container with a video stream's header but no frame."""
  out = av.open(str(path), 'w', format='mp4')
  stream = out.add_stream('libx264', rate=10)
  stream.width, stream.height, stream.pix_fmt = 64, 64, 'yuv420p'
  out.start_encoding()
  out.mux(stream.encode(None))
  out.close()
  return path


@pytest.fixture(scope='module')
def bad_inputs(scenes, tmp_path_factory):
  """name -> (extra CLI args, message fragment) of inputs that must fail."""
  d = tmp_path_factory.mktemp('bad')
  (d / 'not_a_video.mp4').write_text('hello, this is text\n' * 50)
  (d / 'empty.mp4').write_bytes(b'')
  data = scenes.read_bytes()
  (d / 'truncated.mp4').write_bytes(data[: len(data) // 2])
  make_audio_only(d / 'audio.m4a')
  make_no_frames(d / 'no_frames.mp4')
  scenes_video(d / 'short.mp4', REDS[:1], seconds=0.5)
  (d / 'not_a_run').mkdir()
  (d / 'no_videos').mkdir()
  (d / 'no_videos' / 'notes.txt').write_text('not a video\n')
  config = small_config(frame_dim=512, text_dim=512, text_fusion='query')
  checkpoints.save_config(str(d / 'no_checkpoint'), config)
  (d / 'bad.srt').write_text('1\nnot a timing line\nhello\n')
  (d / 'good.srt').write_text('1\n00:00:01,000 --> 00:00:02,000\nhello\n')
  v = str(scenes)
  return {
    'missing': ([str(d / 'missing.mp4')], 'not found'),
    'not_a_video': ([str(d / 'not_a_video.mp4')], 'not a readable video'),
    'empty': ([str(d / 'empty.mp4')], 'empty'),
    'truncated': ([str(d / 'truncated.mp4')], 'truncated'),
    'audio_only': ([str(d / 'audio.m4a')], 'no video stream'),
    'no_frames': ([str(d / 'no_frames.mp4')], 'video'),
    'too_short': ([str(d / 'short.mp4')], 'shorter than the minimum'),
    'directory': ([str(d / 'no_videos')], 'no video files in the directory'),
    'proportion_zero': ([v, '--proportion', '0'], '--proportion'),
    'proportion_big': ([v, '--proportion', '1.5'], '--proportion'),
    'proportion_text': ([v, '--proportion', 'half'], '--proportion'),
    'fps': ([v, '--fps', '-2'], '--fps'),
    'ckpt_missing': ([v, '--ckpt', str(d / 'nope')], 'not found'),
    'ckpt_not_a_run': ([v, '--ckpt', str(d / 'not_a_run')], 'config.json'),
    'ckpt_empty': ([v, '--ckpt', str(d / 'no_checkpoint')], 'no checkpoint found'),
    'captions_missing': ([v, '--captions', str(d / 'nope.srt')], 'not found'),
    'captions_bad': ([v, '--captions', str(d / 'bad.srt')], 'timing'),
    'query_and_captions': ([v, '--query', 'a', '--captions', str(d / 'good.srt')], 'not both'),
    'empty_query': ([v, '--query', ' '], 'empty'),
    'clip_model': ([v, '--clip-model', str(d / 'no_model')], 'CLIP model directory'),
  }


ERROR_CASES = [
  'missing',
  'not_a_video',
  'empty',
  'truncated',
  'audio_only',
  'no_frames',
  'too_short',
  'directory',
  'proportion_zero',
  'proportion_big',
  'proportion_text',
  'fps',
  'ckpt_missing',
  'ckpt_not_a_run',
  'ckpt_empty',
  'captions_missing',
  'captions_bad',
  'query_and_captions',
  'empty_query',
  'clip_model',
]


@pytest.mark.parametrize('case', ERROR_CASES)
def test_cli_errors_are_one_line(case, bad_inputs, tmp_path, capsys):
  args, fragment = bad_inputs[case]
  if '--query' not in args:
    args = args + ['--query', 'red']
  if '--clip-model' not in args:
    args = args + ['--clip-model', 'tiny']
  with pytest.raises(SystemExit) as e:
    command.main(
      args + ['--no-progress', '--cache-dir', str(tmp_path), '--out', str(tmp_path / 'out')]
    )
  assert e.value.code not in (0, None)
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1, err
  assert err.startswith('clipit-summarize: error:') and fragment in err, err
  assert not (tmp_path / 'out').exists()


def test_an_unusable_out_is_refused_before_the_work(tmp_path, capsys):
  missing = str(tmp_path / 'missing.mp4')  # Were --out checked late, this would fail first.
  (tmp_path / 'a_file').write_text('x')
  with small_disk(tmp_path / 'ro', 64, read_only=True) as read_only:
    for out, words in (
      (tmp_path / 'a_file', f'{tmp_path / "a_file"} is a file'),
      (tmp_path / 'a_file' / 'out', f'{tmp_path / "a_file"} is a file'),
      (read_only / 'out', 'cannot write in'),
    ):
      with pytest.raises(SystemExit) as e:
        command.main([missing, '--query', 'red', '--out', str(out)])
      assert e.value.code == 1
      err = capsys.readouterr().err
      assert err.startswith(f'clipit-summarize: error: --out {out}: ') and words in err, err
      assert len(err.splitlines()) == 1


def test_a_full_disk_leaves_the_earlier_summary_whole(scenes, tmp_path, capsys):
  args = [
    str(scenes),
    '--clip-model',
    'tiny',
    '--cache-dir',
    str(tmp_path / 'features'),
    '--no-progress',
  ]
  with small_disk(tmp_path / 'disk', 1024) as disk:
    out = disk / 'out'
    assert command.main(args + ['--query', 'a red square', '--out', str(out)]) == 0
    before = {name: (out / name).read_bytes() for name in visible(out)}
    fill_disk(disk, leave_kb=2)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
      command.main(args + ['--query', 'a blue square', '--proportion', '0.5', '--out', str(out)])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err == (
      f'clipit-summarize: error: {out}: no space left on device for the summary; '
      'free space there or pass another --out (what was there is unchanged)\n'
    )
    assert {name: (out / name).read_bytes() for name in visible(out)} == before
    assert sorted(os.listdir(out)) == sorted([*before, outputs.LOCK_FILE])  # No staging left.


def test_captions_after_the_video_are_dropped_with_a_warning(tiny, scenes, tmp_path, caplog):
  inside = [f'scene {i} shows colour {i}' for i in range(8)]
  srt = tmp_path / 'longer_cut.srt'
  cues = [(2 * i, 2 * i + 2, t) for i, t in enumerate(inside)] + [
    (100 + i, 101 + i, f'after the end {i}') for i in range(3)
  ]
  srt.write_text(
    ''.join(
      f'{i + 1}\n00:{a // 60:02d}:{a % 60:02d},000 --> 00:{b // 60:02d}:{b % 60:02d},000\n{t}\n\n'
      for i, (a, b, t) in enumerate(cues)
    )
  )
  summarizer = summarize.Summarizer.training_free(tiny, cache_dir=tmp_path / 'f', progress=False)
  summary = summarizer.summarize(scenes, captions=srt)
  assert set(summary.captions) <= set(inside) and len(summary.captions) == 7
  assert any(
    'dropped 3 of 11 captions that start after the video ends (16.0 s)' in r.getMessage()
    for r in caplog.records
  )
  late = tmp_path / 'another_video.srt'
  late.write_text('1\n00:01:40,000 --> 00:01:41,000\nlater\n')
  with pytest.raises(
    captions_lib.CaptionError, match=r'all 1 captions start after the video ends \(16.0 s\)'
  ):
    summarizer.summarize(scenes, captions=late)


def test_query_with_captions_is_refused():
  with pytest.raises(ValueError, match='not both'):
    summarize.check_text(None, 'a dog', True)


def test_cli_as_a_module_prints_one_line_on_error(tmp_path):
  result = subprocess.run(
    [
      sys.executable,
      '-m',
      'clipit_jax.summarize',
      str(tmp_path / 'missing.mp4'),
      '--out',
      str(tmp_path / 'out'),
    ],
    capture_output=True,
    text=True,
    cwd=ROOT,
    timeout=120,
    env=dict(os.environ, JAX_PLATFORMS='cpu'),
  )
  assert result.returncode == 1
  assert result.stderr.splitlines() == [
    f'clipit-summarize: error: {tmp_path / "missing.mp4"}: file not found; check the path.'
  ]
  assert result.stdout == ''


# ------------------------------------------------------------- checkpoints --


def save_run(workdir, **model):
  """A train.py run directory with one (untrained) checkpoint."""
  config = small_config(frame_dim=512, text_dim=512, **model)
  config.data.dataset = 'synthetic'
  config.data.features = 'tiny'
  state = train_step.create_train_state(config, jax.random.PRNGKey(0))
  checkpoints.save_config(str(workdir), config)
  manager = checkpoints.make_manager(str(workdir), config.best_metric)
  checkpoints.save(manager, 1, state, {config.best_metric: 0.0})
  manager.close()
  return config, state.params


@pytest.fixture(scope='module')
def query_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('query_run')
  config, params = save_run(workdir, text_fusion='query')
  return workdir, config, params


def test_checkpoint_scores_with_the_model(tiny, scenes, query_run, tmp_path):
  workdir, config, params = query_run
  summarizer = summarize.Summarizer.from_checkpoint(
    workdir, clip_model=tiny, cache_dir=tmp_path, progress=False
  )
  assert summarizer.method == summarize.TRAINED
  summary = summarizer.summarize(scenes, query='a red square')
  features, timestamps = encoders.cached_video_features(scenes, tiny, 2.0, tmp_path)
  np.testing.assert_array_equal(summary.timestamps, timestamps)
  expected = evaluators.score_video(
    models.CLIPIt(config.model).apply,
    params,
    features,
    tiny.encode_texts(['a red square']),
    np.ones(1, bool),
    config.model.window,
  )
  np.testing.assert_allclose(summary.scores, expected, rtol=1e-5, atol=1e-6)
  check_shots(summary)
  data = check_outputs(summary.write(tmp_path / 'out', progress=False), summary)
  assert data['method'] == summarize.TRAINED
  assert data['settings']['checkpoint']['epoch'] == 1
  assert data['settings']['checkpoint']['text_fusion'] == 'query'
  with pytest.raises(ValueError, match='needs|give --query'):
    summarizer.summarize(scenes)


def test_cli_with_a_checkpoint(scenes, query_run, tmp_path, capsys, caplog):
  workdir = query_run[0]
  assert (
    command.main(
      [
        str(scenes),
        '--ckpt',
        str(workdir),
        '--checkpoint',
        'latest',
        '--query',
        'red',
        '--no-progress',
        '--cache-dir',
        str(tmp_path),
        '--out',
        str(tmp_path / 'out'),
      ]
    )
    == 0
  )
  data = json.loads((tmp_path / 'out' / 'summary.json').read_text())
  assert data['settings']['clip_model'] == 'tiny'  # The run's features.
  assert data['method'] == summarize.TRAINED
  assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
  with pytest.raises(SystemExit):
    command.main(
      [str(scenes), '--ckpt', str(workdir), '--clip-model', 'tiny', '--out', str(tmp_path / 'out2')]
    )
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1 and '--query' in err, err


def test_googlenet_checkpoint_is_refused(scenes, tmp_path, capsys):
  config = small_config(frame_dim=1024, text_dim=512, text_fusion='query')
  config.data.features = 'googlenet'
  checkpoints.save_config(str(tmp_path / 'run'), config)
  with pytest.raises(checkpoints.CheckpointError, match='1024-d'):
    summarize.Summarizer.from_checkpoint(tmp_path / 'run', clip_model='tiny')
  with pytest.raises(SystemExit) as e:
    command.main(
      [
        str(scenes),
        '--ckpt',
        str(tmp_path / 'run'),
        '--query',
        'red',
        '--out',
        str(tmp_path / 'out'),
      ]
    )
  assert e.value.code == 1
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1 and '1024-d' in err, err


def test_generic_checkpoint_refuses_a_query(tmp_path):
  with pytest.raises(ValueError, match='takes no query'):
    summarize.check_text('concat', 'a dog', False)


# ------------------------------------------------------------- real video --


def test_bikes(tiny, shared_dir, tmp_path):
  path = shared_dir / 'data' / 'videos' / 'bikes.mp4'
  if not path.is_file():
    pytest.skip(f'{path} not found')
  source = video.probe(path)
  summarizer = summarize.Summarizer.training_free(tiny, cache_dir=tmp_path, progress=False)
  summary = summarizer.summarize(path, query='people riding bicycles')
  check_shots(summary)
  paths = summary.write(tmp_path / 'out', progress=False)
  data = json.loads(paths['json'].read_text())
  times = np.array(data['timestamps'])
  assert len(times) == 20 and times[0] == 0.0
  np.testing.assert_allclose(times, np.arange(20) / 2, atol=1 / source.fps)
  assert data['duration'] == pytest.approx(10.0)
  out = video.probe(paths['video'])
  assert out.has_audio == source.has_audio
  assert abs(out.duration - summary.summary_duration) <= 2 / source.fps
  assert summary.summary_duration <= 0.15 * 10.0 + 1e-9


# ----------------------------------------------------- outputs as one unit --


def test_out_holding_the_input_video_is_refused_before_the_work(scenes, tmp_path, capsys):
  d = tmp_path / 'd'
  d.mkdir()
  (d / 'summary.mp4').write_bytes(scenes.read_bytes())
  with pytest.raises(SystemExit) as e:
    command.main([str(d / 'summary.mp4'), '--query', 'red', '--out', str(d)])
  assert e.value.code == 1
  err = capsys.readouterr().err
  assert err.startswith(f'clipit-summarize: error: --out {d} holds the input video '), err
  assert len(err.splitlines()) == 1 and f'--out (e.g. {d / "summary_summary"})' in err
  assert (
    os.listdir(d) == ['summary.mp4'] and (d / 'summary.mp4').read_bytes() == scenes.read_bytes()
  )


def test_a_second_writer_stops_with_one_line(scenes, tmp_path, capsys):
  out = tmp_path / 'out'
  out.mkdir()
  args = [str(scenes), '--query', 'red', '--clip-model', 'tiny', '--no-progress']
  args += ['--cache-dir', str(tmp_path / 'f'), '--out', str(out)]
  with files.exclusive_lock(out / outputs.LOCK_FILE):  # Another writer, as the kernel sees it.
    with pytest.raises(SystemExit) as e:
      command.main(args)
  assert e.value.code == 1
  err = capsys.readouterr().err
  assert len(err.splitlines()) == 1 and f'{out / outputs.LOCK_FILE} is locked by pid ' in err, err
  assert err.rstrip().endswith(
    'another clipit-summarize is writing there; wait for it to end or pass another --out'
  )
  assert visible(out) == []


def test_stale_staging_directories_are_removed_by_the_next_writer(tiny, scenes, tmp_path):
  out = tmp_path / 'out'
  stale = out / f'{outputs.STAGING_PREFIX}killed'
  stale.mkdir(parents=True)
  (stale / 'summary.mp4').write_bytes(b'part of a summary')
  summarizer = summarize.Summarizer.training_free(tiny, cache_dir=tmp_path / 'f', progress=False)
  summarizer.summarize(scenes, query='red').write(out, progress=False)
  assert sorted(os.listdir(out)) == sorted([outputs.LOCK_FILE, *summarize.OUTPUT_FILES.values()])


# ---------------------------------------------------------- the Python API --


def test_the_api_names_a_bad_argument(scenes):
  with pytest.raises(TypeError, match='clip_model must be a CLIP hub name.*got NoneType'):
    summarize.Summarizer.training_free(None)
  summarizer = summarize.Summarizer.training_free(ColourEncoder(), progress=False)
  with pytest.raises(TypeError, match='query must be a string .* got int'):
    summarizer.summarize(scenes, query=123)
  with pytest.raises(TypeError, match='query must be a string .* got list; summarize one query'):
    summarizer.summarize(scenes, query=['red', 'blue'])
  with pytest.raises(TypeError, match="captions must be a caption file's path.* got int"):
    summarizer.summarize(scenes, captions=7)
  with pytest.raises(TypeError, match='video_path must be a path, got NoneType'):
    summarizer.summarize(None, query='red')
  with pytest.raises(TypeError, match='--proportion must be a number, got list'):
    summarize.Summarizer.training_free(ColourEncoder(), proportion=[0.2])
  with pytest.raises(ValueError, match="--fps must be a number, got 'fast'"):
    summarize.Summarizer.training_free(ColourEncoder(), fps='fast')
  with pytest.raises(TypeError, match='paths must be a list of video files'):
    next(summarizer.summarize_many(str(scenes), query='red'))


def test_a_long_query_is_cut_to_clips_context_with_a_warning(tiny, scenes, tmp_path, caplog):
  query = 'a red square moving left ' * 400  # 10,000 characters.
  summarizer = summarize.Summarizer.training_free(tiny, cache_dir=tmp_path, progress=False)
  summary = summarizer.summarize(scenes, query=query)
  (encoded,) = summary.settings['encoded_texts']
  ids = tiny.tokenizer(encoded)['input_ids']
  assert len(ids) == tiny.context_length and query.startswith(encoded)
  assert summary.query == query  # What was asked, beside what was encoded.
  warned = [r.getMessage() for r in caplog.records if "longer than CLIP's" in r.getMessage()]
  assert warned == [
    f"a text of 10000 characters is longer than CLIP's {tiny.context_length} tokens; "
    f'encoded its start: {encoded[:57] + "..."!r}'
  ]
  features, _ = encoders.cached_video_features(scenes, tiny, 2.0, tmp_path)
  expected = baselines.clip_similarity(features, tiny.encode_texts([encoded]))
  np.testing.assert_allclose(summary.scores, expected, atol=1e-6)
  short = summarizer.summarize(scenes, query='a red square')
  assert short.settings['encoded_texts'] == ['a red square']


def test_long_captions_are_cut_quietly(tiny, scenes, tmp_path, caplog):
  long = 'a red square moving left ' * 40  # 1,000 characters: past CLIP's 77 tokens.
  srt = tmp_path / 'long.srt'
  srt.write_text(
    f'1\n00:00:01,000 --> 00:00:03,000\n{long}\n\n2\n00:00:04,000 --> 00:00:05,000\nblue\n'
  )
  summarizer = summarize.Summarizer.training_free(tiny, cache_dir=tmp_path, progress=False)
  summary = summarizer.summarize(scenes, captions=srt)
  encoded = summary.settings['encoded_texts']  # The M texts spread over time.
  first = encoded[0]
  assert len(tiny.tokenizer(first)['input_ids']) == tiny.context_length
  assert long.strip().startswith(first) and set(encoded) == {first, 'blue'}
  assert not [r for r in caplog.records if r.levelname == 'WARNING']


def test_unicode_titles_draw_without_warnings(tmp_path, capfd):
  n = 6
  summary = summary_lib.Summary(
    video=str(tmp_path / 'vidéo_犬.mp4'),
    duration=3.0,
    has_audio=False,
    timestamps=np.arange(n) / 2,
    scores=np.linspace(0, 1, n),
    shot_steps=np.array([[0, 2], [3, 5]]),
    shot_times=np.array([[0.0, 1.5], [1.5, 3.0]]),
    shot_values=np.array([0.2, 0.8]),
    selected=[1],
    segments=[(1.5, 3.0)],
    budget=1.5,
    fallback=False,
    method=summarize.BASELINE,
    query='犬が走る \U0001f415 café',
    captions=None,
    settings={},
  )
  text, families = summary_lib.drawable('café 犬\n\U0001f415')
  assert text[:5] == 'café ' and text[5] in '犬?' and text[-2:] in ('\n\U0001f415', '\n?')
  assert families[0] == summary_lib.TITLE_FONT
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    summary_lib.plot_scores(summary, tmp_path / 'scores.png')
  assert capfd.readouterr().err == ''
  assert matplotlib.image.imread(tmp_path / 'scores.png').shape[1] == 1100

"""Tests for clipit-encode-beam (clipit_jax.summarize.beam_pipeline) and the builders on Beam.

Skipped without the `beam` extra (`pip install -e ".[beam]"`).
"""

import json

import numpy as np
import pytest

pytest.importorskip('apache_beam')

# pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow_datasets as tfds
from apache_beam.options import pipeline_options

from clipit_jax.datasets import summe_tvsum
from clipit_jax.datasets import h5_files
from clipit_jax.datasets import loading
from clipit_jax.summarize import beam_pipeline
from clipit_jax.media import encoders
from clipit_jax.summarize import command
from clipit_jax.summarize import summarizer as summarize
from clipit_jax.media import video
from testutil import write_h5

# One pipeline run is shared by the module's tests: one worker runs them all.
pytestmark = pytest.mark.xdist_group('beam')

FPS = 2.0
QUERY = 'a white square'
COLOURS = [[(255, 0, 0), (0, 0, 255)], [(0, 200, 0), (250, 250, 0)], [(90, 0, 90), (0, 90, 90)]]


def scenes_video(path, colours, seconds=1.5, size=32, fps=8):
  """Flat-colour scenes, `seconds` each, with a moving white square."""
  frames = []
  for colour in colours:
    for i in range(round(seconds * fps)):
      frame = np.full((size, size, 3), colour, np.uint8)
      frame[8:16, 2 * i : 2 * i + 8] = 255
      frames.append(frame)
  return video.write_frames(path, np.stack(frames), fps)


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  """Three 3 s videos and a corrupt one."""
  directory = tmp_path_factory.mktemp('corpus')
  good = [scenes_video(directory / f'v{i}.mp4', c) for i, c in enumerate(COLOURS)]
  broken = directory / 'broken.mp4'
  broken.write_bytes(b'not a video ' * 20)
  return directory, good, broken


@pytest.fixture(scope='module')
def run(corpus, tmp_path_factory):
  """One pipeline run on 2 worker processes, with summaries: (exit status, cache, out)."""
  directory, _, _ = corpus
  root = tmp_path_factory.mktemp('beam')
  cache, out = root / 'features', root / 'out'
  argv = [str(directory / '*.mp4'), '--clip-model', 'tiny', '--fps', str(FPS)]
  argv += ['--cache-dir', str(cache), '--out', str(out), '--summaries', '--query', QUERY]
  argv += [
    '--runner=DirectRunner',
    '--direct_num_workers=2',
    '--direct_running_mode=multi_processing',
  ]
  return beam_pipeline.main(argv), cache, out


@pytest.fixture(scope='module')
def tiny():
  return encoders.load_clip(encoders.TINY)


def records(out, name):
  return [json.loads(line) for line in (out / name).read_text().splitlines()]


def test_features_equal_the_in_process_cache(run, corpus, tiny, tmp_path):
  _, cache, out = run
  _, good, _ = corpus
  encoded = {r['video']: r for r in records(out, beam_pipeline.ENCODED_FILE)}
  assert sorted(encoded) == sorted(str(p) for p in good)
  for path in good:
    cache_file = encoders.feature_cache_file(path, tiny, FPS, cache)
    assert encoded[str(path)]['cache_file'] == str(cache_file)
    features, timestamps = encoders.read_cached_features(cache_file)
    want, want_times = encoders.cached_video_features(path, tiny, FPS, tmp_path)
    assert features.shape == want.shape == (6, 512)
    np.testing.assert_allclose(features, want, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(timestamps, want_times)
    assert encoded[str(path)]['frames'] == 6 and not encoded[str(path)]['from_cache']


def test_the_corrupt_video_goes_to_the_dead_letter_output(run, corpus):
  status, _, out = run
  _, _, broken = corpus
  (failed,) = records(out, beam_pipeline.FAILED_FILE)
  assert failed['video'] == str(broken) and failed['stage'] == 'encode'
  assert failed['error'] == 'VideoError' and 'not a readable video' in failed['reason']
  assert status == 1  # Some video failed.


def test_summaries_are_the_summarizers(run, corpus, tiny, tmp_path):
  _, cache, out = run
  _, good, _ = corpus
  summary = summarize.Summarizer.training_free(tiny, cache_dir=tmp_path, progress=False).summarize(
    good[0], query=QUERY
  )
  written = json.loads((out / 'v0' / 'summary.json').read_text())
  assert written['selected_shots'] == summary.selected
  np.testing.assert_allclose(written['scores'], summary.scores, atol=1e-6)
  assert all((out / 'v0' / name).is_file() for name in summarize.OUTPUT_FILES.values())


def test_clipit_summarize_reads_the_features_without_encoding(run, corpus, tmp_path, monkeypatch):
  _, cache, _ = run
  _, good, _ = corpus

  def no_encoding(self, frames):
    raise AssertionError('encoded frames instead of reading the cache')

  monkeypatch.setattr(encoders.ClipEncoder, 'encode_images', no_encoding)
  argv = [str(good[1]), '--query', QUERY, '--clip-model', 'tiny', '--fps', str(FPS)]
  argv += ['--cache-dir', str(cache), '--out', str(tmp_path / 's'), '--no-progress']
  assert command.main(argv) == 0
  assert (tmp_path / 's' / 'summary.json').is_file()


def test_a_second_encoding_reads_the_cache(corpus, tiny, tmp_path, monkeypatch):
  _, good, _ = corpus
  first = beam_pipeline.encode_to_cache(str(good[2]), tiny, FPS, tmp_path, 4)
  monkeypatch.setattr(encoders, 'video_features', lambda *a, **k: 1 / 0)
  second = beam_pipeline.encode_to_cache(str(good[2]), tiny, FPS, tmp_path, 4)
  assert not first['from_cache'] and second['from_cache']
  assert first['cache_file'] == second['cache_file'] and second['frames'] == 6


def test_an_unwritable_cache_is_a_failure_of_that_video(corpus, tiny, tmp_path, monkeypatch):
  _, good, _ = corpus
  monkeypatch.setattr(encoders, 'write_cached_features', lambda *a: False)
  (out,) = beam_pipeline.encode_video(
    (str(good[0]), 'v0'), tiny, None, fps=FPS, cache_dir=str(tmp_path), batch_size=4
  )
  assert out.tag == beam_pipeline.FAILED and out.value['error'] == 'OSError'
  assert 'cannot write the feature cache file' in out.value['reason']


@pytest.mark.parametrize(
  'argv, message',
  [
    ([], 'no videos given'),
    (['{d}/*.webm'], 'the pattern matches no video file'),
    (['{d}/x.mp4', '--fps', '0'], '--fps must be positive'),
    (['{d}/x.mp4', '--query', 'a dog'], '--query and --ckpt are for --summaries'),
    (['{d}/x.mp4', '--list', '{d}/none.txt'], '--list {d}/none.txt: cannot read it'),
    (['{d}/x.mp4', '--clip-model', '{d}/nowhere'], 'CLIP model directory'),
    (['{d}/x.mp4', '--fsp', '3'], 'unknown option --fsp: neither'),
  ],
)
def test_bad_input_is_one_line_before_the_pipeline(argv, message, tmp_path, capsys):
  argv = [a.format(d=tmp_path) for a in argv] + ['--out', str(tmp_path / 'out')]
  with pytest.raises(SystemExit) as e:
    beam_pipeline.main(argv)
  assert e.value.code == 1
  err = capsys.readouterr().err
  assert err.startswith(f'{beam_pipeline.PROGRAM}: error: ') and message.format(d=tmp_path) in err
  assert len(err.strip().splitlines()) == 1 and not (tmp_path / 'out').exists()


def test_benchmark_clip_config_on_beam(tmp_path, tiny):
  """`clipit_summe/clip_tiny` prepared by TFDS on Beam: the examples of the local path."""
  manual = tmp_path / 'manual'
  manual.mkdir()
  written = write_h5(manual / h5_files.h5_filename('summe'), 2, frames=(40, 60))
  paths = {}
  for i, (key, data) in enumerate(written.items()):
    paths[key] = manual / 'videos' / 'summe' / f'name_{key.split("_")[1]}.mp4'
    paths[key].parent.mkdir(parents=True, exist_ok=True)
    colours = [COLOURS[i][0]] * 2 + [COLOURS[i][1]] * 2
    scenes_video(paths[key], colours, seconds=data['n_frames'] / 4 / 25, fps=25)
  builder = tfds.builder('clipit_summe/clip_tiny', data_dir=str(tmp_path / 'data'))
  options = pipeline_options.PipelineOptions(['--runner=DirectRunner'])
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual), beam_options=options),
    file_format='array_record',
  )
  got = loading.read_records(builder)
  models = summe_tvsum.load_clip_and_captioner(encoders.TINY, 'tiny')
  videos = {v.key: v for v in h5_files.read_h5_videos(manual / h5_files.h5_filename('summe'))}
  for key in written:
    features, texts, embeddings = summe_tvsum.clip_language_and_features(
      videos[key], str(paths[key]), *models, builder.builder_config.num_captions
    )
    np.testing.assert_allclose(got[key]['features'], features, atol=1e-6)
    assert loading.decode_text(got[key]['captions']).split('\n') == texts
    np.testing.assert_allclose(got[key]['caption_embeddings'], embeddings, atol=1e-6)
    np.testing.assert_array_equal(got[key]['picks'], written[key]['picks'])

"""Benchmark builders on small h5/tsv files in the real schemas, and the settings' splits."""

import gzip
import json
import os

import h5py
import numpy as np
import pytest
import tensorflow_datasets as tfds

from clipit_jax.datasets import summe_tvsum
from clipit_jax.datasets import errors
from clipit_jax.datasets import h5_files
from clipit_jax.datasets import loading
from clipit_jax.datasets import settings
from testutil import load_config_file, small_disk, write_h5


@pytest.fixture
def manual_dir(tmp_path):
  d = tmp_path / 'manual'
  d.mkdir()
  return d


def _build(name, tmp_path, manual_dir):
  builder = tfds.builder(f'clipit_{name}/googlenet', data_dir=str(tmp_path / 'data'))
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
    file_format='array_record',
  )
  return builder


@pytest.mark.parametrize('name', ['summe', 'youtube', 'ovp'])
def test_benchmark_builder_round_trip(name, tmp_path, manual_dir):
  written = write_h5(manual_dir / h5_files.h5_filename(name), 4, names=name == 'summe')
  builder = _build(name, tmp_path, manual_dir)
  records = loading.read_records(builder)
  assert sorted(records) == sorted(written)
  for key, data in written.items():
    record = records[key]
    np.testing.assert_allclose(record['features'], data['features'])
    np.testing.assert_array_equal(record['picks'], data['picks'])
    np.testing.assert_array_equal(record['user_summary'], data['user_summary'])
    np.testing.assert_array_equal(record['user_scores'], data['user_summary'])
    np.testing.assert_array_equal(record['change_points'], data['change_points'])
    assert record['n_frames'] == data['n_frames']
    expected_name = f'name_{key.split("_")[1]}' if name == 'summe' else key
    assert loading.decode_text(record['video_name']) == expected_name
    assert record['caption_embeddings'].shape == (0, summe_tvsum.TEXT_DIM)
  metadata = builder.info.metadata
  assert metadata['standard_splits'] == settings.standard_splits(list(written))
  # Reloading the prepared dataset reads the metadata back from disk.
  again = tfds.builder(f'clipit_{name}/googlenet', data_dir=str(tmp_path / 'data'))
  assert again.info.metadata['standard_splits'] == metadata['standard_splits']


def test_tvsum_takes_user_scores_from_the_annotation_file(tmp_path, manual_dir):
  written = write_h5(manual_dir / h5_files.h5_filename('tvsum'), 3, names=False)
  rng = np.random.default_rng(5)
  lines, expected = [], {}
  for i, (key, data) in enumerate(written.items()):
    scores = rng.integers(1, 6, size=(20, data['n_frames']))
    expected[key] = scores
    lines += [f'yt{i}\tVT\t' + ','.join(map(str, row)) for row in scores]
  with gzip.open(manual_dir / 'ydata-anno.tsv.gz', 'wt') as f:
    f.write('\n'.join(lines) + '\n')
  records = loading.read_records(_build('tvsum', tmp_path, manual_dir))
  for key, scores in expected.items():
    np.testing.assert_array_equal(records[key]['user_scores'], scores)
    assert loading.decode_text(records[key]['video_name']) == key


def test_tvsum_rejects_annotations_of_other_videos(tmp_path, manual_dir):
  write_h5(manual_dir / h5_files.h5_filename('tvsum'), 2, names=False, frames=(150, 160))
  rows = [f'yt{i}\tVT\t' + ','.join(['3'] * 500) for i in range(2) for _ in range(2)]
  (manual_dir / 'ydata-anno.tsv').write_text('\n'.join(rows) + '\n')
  with pytest.raises(errors.DatasetError, match='do not correspond'):
    _build('tvsum', tmp_path, manual_dir)


def test_name_mapping_file(tmp_path, manual_dir):
  write_h5(manual_dir / h5_files.h5_filename('ovp'), 2, names=False)
  (manual_dir / 'video_names').mkdir()
  (manual_dir / 'video_names' / 'ovp.json').write_text(json.dumps({'video_2': 'v21'}))
  records = loading.read_records(_build('ovp', tmp_path, manual_dir))
  assert loading.decode_text(records['video_2']['video_name']) == 'v21'
  assert loading.decode_text(records['video_1']['video_name']) == 'video_1'


def test_missing_manual_file_says_what_to_download(tmp_path, manual_dir):
  write_h5(manual_dir / h5_files.h5_filename('tvsum'), 1)
  with pytest.raises(errors.DatasetError, match='eccv16_dataset_summe_google_pool5.h5: not found'):
    _build('summe', tmp_path, manual_dir)


def test_empty_manual_directory_says_what_to_download(tmp_path, manual_dir):
  with pytest.raises(errors.DatasetError, match='manual directory .* is missing or empty'):
    loading.load_builder('ovp', 'googlenet', str(tmp_path / 'data'), str(manual_dir))
  with pytest.raises(errors.DatasetError, match='data/downloads/manual is missing or empty'):
    loading.load_builder('ovp', 'googlenet', str(tmp_path / 'data'))


def test_truncated_file_names_the_file(tmp_path):
  path = tmp_path / h5_files.h5_filename('summe')
  write_h5(path, 3)
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(errors.DatasetError, match=r'summe_google_pool5.h5: cannot be read as HDF5'):
    list(h5_files.read_h5_videos(path))


def test_wrong_feature_width_is_rejected(tmp_path):
  path = tmp_path / 'x.h5'
  write_h5(path, 1, feature_dim=512)
  with pytest.raises(errors.DatasetError, match=r'expected \[n_steps, 1024\]'):
    list(h5_files.read_h5_videos(path))


def test_inconsistent_file_is_rejected(tmp_path):
  path = tmp_path / 'x.h5'
  write_h5(path, 1)
  with h5py.File(path, 'a') as f:
    del f['video_1/gtscore']
    f['video_1/gtscore'] = np.zeros(3, np.float32)
  with pytest.raises(errors.DatasetError, match='gtscore has 3 entries'):
    list(h5_files.read_h5_videos(path))


def test_interrupted_build_leaves_nothing_and_reruns(tmp_path, manual_dir):
  path = manual_dir / h5_files.h5_filename('youtube')
  write_h5(path, 3)
  with h5py.File(path, 'a') as f:  # A corrupt video in the middle stops the build.
    f['video_2/features'][0, 0] = np.nan
  with pytest.raises(errors.DatasetError, match='NaN'):
    _build('youtube', tmp_path, manual_dir)
  builder = tfds.builder('clipit_youtube/googlenet', data_dir=str(tmp_path / 'data'))
  assert not builder.is_prepared()
  write_h5(path, 3)
  assert len(loading.read_records(_build('youtube', tmp_path, manual_dir))) == 3


def _replace(group, field, value):
  del group[field]
  group[field] = value


# Each poison is (edit of video_2, words of the error). video_2 has n_frames frames.
POISONS = {
  'empty video': (
    lambda g, n: [
      _replace(g, f, np.zeros((0, 1024) if f == 'features' else 0))
      for f in ('features', 'gtscore', 'gtsummary', 'picks')
    ],
    'features is empty',
  ),
  'change points past the end': (
    lambda g, n: _replace(g, 'change_points', [[0, 30], [31, n + 500]]),
    'change_points end at frame {end}',
  ),
  'negative change points': (
    lambda g, n: _replace(g, 'change_points', [[-5, 30], [31, n - 1]]),
    'must start at frame 0',
  ),
  'a gap between shots': (
    lambda g, n: _replace(g, 'change_points', [[0, 10], [20, n - 1]]),
    'leave a gap',
  ),
  'NaN importance': (lambda g, n: g['gtscore'].__setitem__(0, np.nan), 'gtscore contains NaN'),
  'no annotator': (lambda g, n: _replace(g, 'user_summary', np.zeros((0, n))), 'user_summary'),
  'wrong n_steps': (lambda g, n: _replace(g, 'n_steps', 3), 'n_steps says 3'),
}


@pytest.mark.parametrize('poison', sorted(POISONS))
def test_poisoned_video_is_refused_at_build_naming_file_and_video(poison, tmp_path, manual_dir):
  path = manual_dir / h5_files.h5_filename('summe')
  written = write_h5(path, 3, frames=(60, 90))
  n = written['video_2']['n_frames']
  edit, words = POISONS[poison]
  with h5py.File(path, 'a') as f:
    edit(f['video_2'], n)
  with pytest.raises(errors.DatasetError) as e:
    loading.load_builder('summe', 'googlenet', str(tmp_path / 'data'), str(manual_dir))
  assert str(e.value).startswith(f'{path}: video_2 (name_2)/'), e.value
  assert words.format(end=n + 500) in str(e.value) and 'download it again' in str(e.value)
  assert not tfds.builder('clipit_summe/googlenet', data_dir=str(tmp_path / 'data')).is_prepared()


def test_a_changed_source_file_rebuilds_the_prepared_dataset(tmp_path, manual_dir, capfd):
  path = manual_dir / h5_files.h5_filename('summe')
  data_dir = str(tmp_path / 'data')
  write_h5(path, 3, frames=(60, 90))
  with h5py.File(path, 'a') as f:  # Poisoned: refused, nothing prepared.
    _replace(f['video_3'], 'change_points', [[0, 10], [11, 2000]])
  with pytest.raises(errors.DatasetError, match='video_3'):
    loading.load_builder('summe', 'googlenet', data_dir, str(manual_dir))
  write_h5(path, 3, frames=(60, 90))  # Fixed: built.
  builder = loading.load_builder('summe', 'googlenet', data_dir, str(manual_dir))
  assert sorted(loading.read_records(builder)) == ['video_1', 'video_2', 'video_3']
  capfd.readouterr()
  loading.load_builder('summe', 'googlenet', data_dir, str(manual_dir))  # Unchanged: reused.
  assert 'rebuilding' not in capfd.readouterr().err
  fixed = write_h5(path, 4, frames=(60, 90), seed=7)  # Edited again: rebuilt, saying so.
  records = loading.read_records(
    loading.load_builder('summe', 'googlenet', data_dir, str(manual_dir))
  )
  err = capfd.readouterr().err
  assert f'{path.name} changed in {manual_dir} since the dataset was built; rebuilding' in err
  assert sorted(records) == sorted(fixed)
  np.testing.assert_array_equal(records['video_4']['picks'], fixed['video_4']['picks'])
  path.unlink()  # Sources gone: the prepared dataset stands on its own.
  assert (
    len(loading.read_records(loading.load_builder('summe', 'googlenet', data_dir, str(manual_dir))))
    == 4
  )


def test_a_full_disk_during_the_build_is_one_line(tmp_path, manual_dir):
  write_h5(manual_dir / h5_files.h5_filename('summe'), 10, frames=(200, 400))
  with small_disk(tmp_path / 'disk', 100) as disk:
    with pytest.raises(errors.DatasetError) as e:
      loading.load_builder('summe', 'googlenet', str(disk / 'data'), str(manual_dir))
    assert str(e.value) == (
      f'cannot build clipit_summe/googlenet in {disk}/data (no space left '
      'on device); free space there, or set config.data.data_dir to '
      'another directory, and run again'
    )
    assert not tfds.builder('clipit_summe/googlenet', data_dir=str(disk / 'data')).is_prepared()


# --- settings ---------------------------------------------------------------------------------

KEYS = {
  d: [f'video_{i}' for i in range(1, n + 1)]
  for d, n in dict(summe=25, tvsum=50, youtube=39, ovp=50).items()
}


@pytest.mark.parametrize('target', settings.TARGETS)
def test_standard_splits_partition_the_dataset(target):
  splits = settings.standard_splits(KEYS[target])
  assert len(splits) == 5
  for split in splits:
    assert not set(split['train']) & set(split['test'])
    assert sorted(split['train'] + split['test']) == sorted(KEYS[target])
    assert len(split['test']) == len(KEYS[target]) // 5
  assert len({tuple(s['test']) for s in splits}) == 5
  assert splits == settings.standard_splits(list(reversed(KEYS[target])))


@pytest.mark.parametrize('target', settings.TARGETS)
@pytest.mark.parametrize('split', range(5))
def test_settings_arithmetic(target, split):
  others = [d for d in settings.BENCHMARKS if d != target]
  standard = settings.resolve_setting(target, 'standard', split, KEYS)
  augment = settings.resolve_setting(target, 'augment', split, KEYS)
  transfer = settings.resolve_setting(target, 'transfer', split, KEYS)
  for chosen in (standard, augment, transfer):
    assert not set(chosen['train']) & set(chosen['test'])
  assert {d for d, _ in standard['train'] + standard['test']} == {target}
  assert augment['test'] == standard['test']
  assert set(augment['train']) == set(standard['train']) | {(d, k) for d in others for k in KEYS[d]}
  assert transfer['test'] == [(target, k) for k in sorted(KEYS[target])]
  assert {d for d, _ in transfer['train']} == set(others)
  assert len(transfer['train']) == sum(len(KEYS[d]) for d in others)


def test_validation_is_held_out_of_training():
  chosen = settings.resolve_setting('summe', 'standard', 0, KEYS)
  train, validation = settings.hold_out_validation(chosen['train'], 0.1)
  assert len(validation) == 2 and not set(train) & set(validation)
  assert sorted(train + validation) == chosen['train']
  assert not set(validation) & set(chosen['test'])


def test_bad_settings_are_rejected():
  with pytest.raises(ValueError, match="unknown setting 'mixed'"):
    settings.resolve_setting('summe', 'mixed', 0, KEYS)
  with pytest.raises(ValueError, match='split must be in'):
    settings.resolve_setting('summe', 'standard', 5, KEYS)
  with pytest.raises(ValueError, match='also needs youtube, ovp'):
    settings.resolve_setting('summe', 'augment', 0, {k: KEYS[k] for k in ('summe', 'tvsum')})


def test_split_fingerprint_is_order_free_and_distinct():
  a = settings.resolve_setting('tvsum', 'standard', 0, KEYS)['test']
  b = settings.resolve_setting('tvsum', 'standard', 1, KEYS)['test']
  assert settings.split_fingerprint(a) == settings.split_fingerprint(list(reversed(a)))
  assert settings.split_fingerprint(a) != settings.split_fingerprint(b)


# --- clip config: features of the raw videos at the picks ------------------------------------


def _coloured_frames(n_frames, seed):
  """Frames whose colour changes every 20 frames, so features differ along the video."""
  rng = np.random.default_rng(seed)
  colours = rng.integers(0, 255, size=(n_frames // 20 + 1, 3))
  return (
    np.repeat(colours, 20, axis=0)[:n_frames, None, None, :]
    .repeat(32, 1)
    .repeat(32, 2)
    .astype(np.uint8)
  )


def test_clip_config_encodes_raw_videos_at_picks(tmp_path, manual_dir):
  from clipit_jax.media import encoders
  from clipit_jax.media import video as video_io

  written = write_h5(manual_dir / h5_files.h5_filename('summe'), 2, frames=(60, 90))
  frames = {}
  for i, (key, data) in enumerate(written.items()):
    frames[key] = _coloured_frames(data['n_frames'], i)
    video_io.write_frames(
      manual_dir / 'videos' / 'summe' / f'name_{key.split("_")[1]}.mp4', frames[key], fps=25.0
    )
  builder = tfds.builder('clipit_summe/clip_tiny', data_dir=str(tmp_path / 'data'))
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
    file_format='array_record',
  )
  records = loading.read_records(builder)
  encoder = encoders.load_clip('tiny')
  for key, data in written.items():
    record = records[key]
    assert record['features'].shape == (len(data['picks']), 512)
    # Decoding the picks again and encoding them gives the stored features.
    picked = np.concatenate(
      list(
        video_io.decode_frames_at(
          manual_dir / 'videos' / 'summe' / f'name_{key.split("_")[1]}.mp4',
          data['picks'],
          size=encoder.image_size,
        )
      )
    )
    np.testing.assert_allclose(record['features'], encoder.encode_images(picked), atol=1e-5)
    captions = loading.decode_text(record['captions']).split('\n')
    assert len(captions) == record['caption_embeddings'].shape[0] > 0
    np.testing.assert_allclose(
      record['caption_embeddings'], encoder.encode_texts(captions), atol=1e-5
    )
    np.testing.assert_array_equal(record['user_summary'], data['user_summary'])


def test_clip_config_names_missing_raw_videos(tmp_path, manual_dir):
  write_h5(manual_dir / h5_files.h5_filename('summe'), 2, frames=(60, 90))
  with pytest.raises(errors.DatasetError, match='raw videos missing for the clip config: name_1'):
    _build_config('summe', 'clip_tiny', tmp_path, manual_dir)


def _build_config(name, config, tmp_path, manual_dir):
  builder = tfds.builder(f'clipit_{name}/{config}', data_dir=str(tmp_path / 'data'))
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
    file_format='array_record',
  )
  return builder


# --- QFVS ---------------------------------------------------------------------------------------


def write_qfvs(root, seconds=(12, 17, 11, 14), videos=True):
  """Four tiny 'UT Egocentric' videos (unless not `videos`), their shot tags, queries and
  summaries."""
  from clipit_jax.media import video as video_io
  from clipit_jax.datasets import qfvs

  origin = root / 'qfvs' / 'origin_data'
  tags_dir = origin / 'Dense_per_shot_tags'
  tags_dir.mkdir(parents=True)
  concepts = ['Baby', 'Cupglass', 'Street', 'Sky'] + [f'Thing{i}' for i in range(44)]
  (tags_dir / 'Dictionary.txt').write_text(''.join(f"'{c}'\n" for c in concepts))
  expected = {}
  for v, (video, length) in enumerate(zip(qfvs.VIDEOS, seconds)):
    if videos:
      video_io.write_frames(
        root / 'qfvs' / 'videos' / f'{video}.mp4', _coloured_frames(int(length * 8), v), fps=8.0
      )
    n_shots = -(-length // 5)
    shot_tags = [['Baby', 'Street'], ['Cupglass'], ['Sky', 'Street'], []][:n_shots]
    (tags_dir / video).mkdir()
    (tags_dir / video / f'{video}.txt').write_text('\n'.join(','.join(t) for t in shot_tags) + '\n')
    oracle_dir = origin / 'Query-Focused_Summaries' / 'Oracle_Summaries' / video
    oracle_dir.mkdir(parents=True)
    for query, oracle, users in (
      (('Baby', 'Sky'), [1, 3], ([1], [1, 3], [3])),
      (('Cupglass', 'Street'), [2], ([2], [2, 1], [1])),
    ):
      name = f'{query[0]}_{query[1]}'
      (oracle_dir / f'{name}_oracle.txt').write_text(''.join(f'{s}\n' for s in oracle))
      user_dir = origin / 'Query-Focused_Summaries' / 'User_Summaries' / video / name
      user_dir.mkdir(parents=True)
      for u, shots in enumerate(users, 1):
        (user_dir / f'{name}_user{u}.txt').write_text(''.join(f'{s}\n' for s in shots))
      expected[(video, name)] = (oracle, users, n_shots)
  return expected


def test_qfvs_builder_and_rounds(tmp_path, manual_dir):
  from clipit_jax.datasets import qfvs

  expected = write_qfvs(manual_dir)
  records = loading.read_records(_build_config('qfvs', 'tiny', tmp_path, manual_dir))
  assert sorted(records) == list(qfvs.VIDEOS)
  for (video, query), (oracle, users, n_shots) in expected.items():
    record = records[video]
    queries = loading.decode_text(record['queries']).split('\n')
    q = queries.index(query)
    assert record['shot_concepts'].shape == (n_shots, 48)
    np.testing.assert_array_equal(np.flatnonzero(record['oracle'][q]) + 1, oracle)
    for u, shots in enumerate(users):
      np.testing.assert_array_equal(np.flatnonzero(record['user_shots'][q, u]) + 1, sorted(shots))
    # 2 fps frames; frame at t seconds lies in shot floor(t / 5).
    np.testing.assert_array_equal(
      record['shot_of_frame'], np.minimum(record['timestamps'] // 5, n_shots - 1)
    )
    assert record['features'].shape[0] == record['timestamps'].shape[0]
  assert records['P01']['shot_concepts'][0, [0, 2]].tolist() == [1, 1]
  assert qfvs.query_text(('Cupglass', 'Street')) == 'cup or glass and street'

  config = load_config_file('qfvs')
  config.data.update(features='tiny', data_dir=str(tmp_path / 'data'), split=2)
  data = loading.load_data(config)
  assert [v.ref[0] for v in data['test']] == ['qfvs', 'qfvs']
  assert {v.ref[1].split('/')[0] for v in data['test']} == {'P03'}
  assert {v.ref[1].split('/')[0] for v in data['validation']} == {'P04'}
  assert {v.ref[1].split('/')[0] for v in data['train']} == {'P01', 'P02'}
  video = data['test'][0]
  np.testing.assert_array_equal(video.labels, video.truth.oracle[video.truth.shot_of_frame])
  assert video.text.shape == (1, 512) and video.features is data['test'][1].features


def test_qfvs_builder_reads_precomputed_features(tmp_path, manual_dir):
  from clipit_jax.datasets import qfvs, standins

  write_qfvs(manual_dir, videos=False)
  features = standins.write_qfvs_standin(str(manual_dir / 'qfvs/origin_data'), str(manual_dir))
  records = loading.read_records(_build_config('qfvs', 'tiny', tmp_path, manual_dir))
  for video, length in zip(qfvs.VIDEOS, (12, 17, 11, 14)):
    n_shots = -(-length // 5)
    record, stored = records[video], np.load(os.path.join(features, f'{video}.npy'))
    assert stored.shape == (10 * n_shots, 512)  # 2 fps, 5-second shots.
    np.testing.assert_array_equal(record['features'], stored)
    np.testing.assert_array_equal(record['shot_of_frame'], np.arange(10 * n_shots) // 10)
    np.testing.assert_allclose(np.linalg.norm(stored, axis=1), 1.0, rtol=1e-5)
  # The stand-in carries the real concepts: Baby_Sky is nearest the shots showing Baby or Sky
  # (1 and 3 of P01), farthest from the Cupglass shot (2).
  record = records['P01']
  q = loading.decode_text(record['queries']).split('\n').index('Baby_Sky')
  similarity = record['features'] @ record['query_embeddings'][q]
  per_shot = [similarity[record['shot_of_frame'] == s].mean() for s in range(3)]
  assert per_shot[1] < min(per_shot[0], per_shot[2])
  # Features that do not cover the shots are refused, naming the file.
  np.save(os.path.join(features, 'P03.npy'), np.zeros((45, 512), np.float32))
  with pytest.raises(errors.DatasetError, match=r'P03.npy: 45 frames at 2 fps do not cover'):
    _build_config('qfvs', 'tiny', tmp_path / 'again', manual_dir)


def test_qfvs_rejects_unknown_concepts(tmp_path, manual_dir):
  write_qfvs(manual_dir)
  (manual_dir / 'qfvs/origin_data/Dense_per_shot_tags/P02/P02.txt').write_text('Baby,Unicorn\n')
  with pytest.raises(errors.DatasetError, match=r"P02.txt:1: unknown concept 'Unicorn'"):
    _build_config('qfvs', 'tiny', tmp_path, manual_dir)


def test_qfvs_rounds_cover_each_video_once_as_test():
  from clipit_jax.datasets import qfvs

  rounds = qfvs.rounds()
  assert sorted(r['test'][0] for r in rounds) == list(qfvs.VIDEOS)
  for r in rounds:
    assert len(set(r['train'] + r['validation'] + r['test'])) == 4 and len(r['train']) == 2

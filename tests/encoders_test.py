"""Tests for clipit_jax.media.encoders: tiny CLIP, loading errors, feature cache."""

import os
import shutil
import time

import av
import jax
import numpy as np
import pytest

from clipit_jax.media import encoders
from clipit_jax.media import hub
from clipit_jax.media import tokenizer as tokenizer_lib
from clipit_jax.media import video
from testutil import fill_disk, small_disk

# Its tests share module-scoped fixtures: one worker runs them all (pytest -n --dist loadgroup).
pytestmark = pytest.mark.xdist_group('encoders')


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
  return tmp_path_factory.mktemp('clipit_cache')


@pytest.fixture(scope='module')
def tiny_dir(cache):
  return encoders.tiny_clip_dir(cache)


@pytest.fixture(scope='module')
def tiny(cache, tiny_dir):
  del tiny_dir  # Built.
  return encoders.load_clip('tiny', cache_dir=cache, image_batch_size=16)


@pytest.fixture(scope='module')
def clip_path(tmp_path_factory):
  """3 s, 10 fps, 80x60 mp4 of changing colours."""
  path = tmp_path_factory.mktemp('v') / 'clip.mp4'
  with av.open(str(path), 'w') as out:
    s = out.add_stream('libx264', rate=10)
    s.width, s.height, s.pix_fmt = 80, 60, 'yuv420p'
    s.options = {'preset': 'ultrafast'}
    for i in range(30):
      img = np.zeros((60, 80, 3), np.uint8)
      img[..., i % 3] = 40 + 7 * i
      img[: 2 * i] = 255 - 8 * i
      frame = av.VideoFrame.from_ndarray(img, format='rgb24')
      frame.pts = i
      out.mux(s.encode(frame))
    out.mux(s.encode(None))
  return path


def random_frames(n, size=32, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# -------------------------------------------------------------- tiny model --


def test_tiny_shapes_norms_and_attributes(tiny):
  assert (tiny.image_size, tiny.embed_dim, tiny.model_id) == (32, 512, encoders.TINY_CLIP_ID)
  images = tiny.encode_images(random_frames(5))
  texts = tiny.encode_texts(['a dog on a bike', 'an empty street', 'x'])
  assert images.shape == (5, 512) and images.dtype == np.float32
  assert texts.shape == (3, 512) and texts.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1, atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
  # Different inputs give different features (the random model is not flat).
  assert np.abs(images @ images.T - np.eye(5)).max() > 1e-3
  assert np.max(np.abs(texts[0] - texts[1])) > 1e-3
  assert tiny.encode_images(np.zeros((0, 32, 32, 3), np.uint8)).shape == (0, 512)
  assert tiny.encode_texts([]).shape == (0, 512)


def test_batching_and_padding_do_not_change_features(tiny):
  frames = random_frames(37, seed=1)  # > image_batch_size, not a multiple.
  together = tiny.encode_images(frames)
  alone = np.concatenate([tiny.encode_images(frames[i : i + 1]) for i in (0, 20, 36)])
  np.testing.assert_allclose(together[[0, 20, 36]], alone, atol=1e-5)
  texts = [f'caption number {i}' for i in range(19)]
  np.testing.assert_allclose(
    tiny.encode_texts(texts)[[3, 18]], tiny.encode_texts([texts[3], texts[18]]), atol=1e-5
  )


def test_encode_images_rejects_wrong_input(tiny):
  with pytest.raises(ValueError, match='image_size'):
    tiny.encode_images(random_frames(2, size=64))
  with pytest.raises(ValueError, match='uint8'):
    tiny.encode_images(random_frames(2).astype(np.float32))
  with pytest.raises(TypeError):
    tiny.encode_texts('a single string')


def test_tiny_save_reload_round_trip(tiny, tiny_dir, tmp_path):
  # Reloading the saved directory by path gives the same model.
  directory = tiny_dir
  for name in (
    'config.json',
    'model.safetensors',
    'tokenizer.json',
    'vocab.json',
    'merges.txt',
    'preprocessor_config.json',
  ):
    assert (directory / name).is_file(), name
  again = encoders.load_clip(str(directory))
  frames = random_frames(4, seed=2)
  texts = ['a red car', 'people walking']
  np.testing.assert_array_equal(tiny.encode_images(frames), again.encode_images(frames))
  np.testing.assert_array_equal(tiny.encode_texts(texts), again.encode_texts(texts))
  assert again.model_id != tiny.model_id  # A path is identified by its file.
  # The tokenizer built from vocab.json and merges.txt alone (no tokenizer.json) is the same.
  for name in ('vocab.json', 'merges.txt', 'tokenizer_config.json'):
    shutil.copy(directory / name, tmp_path / name)
  rebuilt = tokenizer_lib.load(tmp_path, tokenizer_lib.CLIP)
  text = 'A Dog, riding 2 bikes!'
  assert rebuilt(text)['input_ids'] == tiny.tokenizer(text)['input_ids']
  ids = tiny.tokenizer(text)['input_ids']
  assert ids[0] == 512 and ids[-1] == 513  # <|startoftext|> ... <|endoftext|>
  assert tiny.tokenizer.decode(ids, skip_special_tokens=True).strip() == (
    'a dog , riding 2 bikes !'
  )


def test_tiny_is_deterministic(tiny_dir, tmp_path):
  other = encoders.tiny_clip_dir(tmp_path)
  first = tiny_dir
  for name in ('model.safetensors', 'tokenizer.json', 'config.json'):
    assert (other / name).read_bytes() == (first / name).read_bytes(), name


def test_build_once_is_atomic(tmp_path):
  calls = []

  def build(directory):
    calls.append(directory)
    (directory / 'x').write_text('1')

  target = tmp_path / 'model'
  assert encoders.build_once(target, build) == target
  assert encoders.build_once(target, build) == target
  assert len(calls) == 1 and (target / 'x').read_text() == '1'

  def broken(directory):
    (directory / 'half').write_text('')
    raise RuntimeError('boom')

  with pytest.raises(RuntimeError):
    encoders.build_once(tmp_path / 'other', broken)
  assert sorted(p.name for p in tmp_path.iterdir()) == ['model']


# ----------------------------------------------------------------- loading --


def one_line(message):
  assert '\n' not in message
  return message


def test_hub_name_offline_fails_fast(monkeypatch, tmp_path):
  monkeypatch.setenv('HF_HUB_OFFLINE', '1')
  start = time.monotonic()
  with pytest.raises(encoders.ModelLoadError) as e:
    encoders.load_clip('openai/clip-vit-base-patch32', hf_cache_dir=tmp_path)
  assert time.monotonic() - start < 10
  message = one_line(str(e.value))
  assert 'openai/clip-vit-base-patch32' in message
  assert 'hf download openai/clip-vit-base-patch32' in message
  assert '--clip-model PATH' in message and '--clip-model tiny' in message
  assert 'HF_HUB_OFFLINE' in message


def test_hub_name_without_network_fails_fast(monkeypatch, tmp_path):
  monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
  monkeypatch.delenv('TRANSFORMERS_OFFLINE', raising=False)
  monkeypatch.setattr(hub, 'hub_reachable', lambda timeout=3.0: False)
  start = time.monotonic()
  with pytest.raises(encoders.ModelLoadError, match='unreachable') as e:
    encoders.load_clip('openai/clip-vit-base-patch32', hf_cache_dir=tmp_path)
  assert time.monotonic() - start < 10
  assert '--clip-model tiny' in one_line(str(e.value))


def test_missing_or_broken_local_directory(tmp_path):
  with pytest.raises(encoders.ModelLoadError, match='not found') as e:
    encoders.load_clip(str(tmp_path / 'no' / 'such' / 'model'))
  one_line(str(e.value))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(encoders.ModelLoadError, match='could not load') as e:
    encoders.load_clip(str(tmp_path / 'empty'))
  one_line(str(e.value))


def test_truncated_weights(tiny_dir, tmp_path):
  broken = tmp_path / 'broken'
  shutil.copytree(tiny_dir, broken)
  weights = broken / 'model.safetensors'
  weights.write_bytes(weights.read_bytes()[:1000])
  with pytest.raises(encoders.ModelLoadError) as e:
    encoders.load_clip(str(broken))
  one_line(str(e.value))


def test_pytorch_pickle_only_says_how_to_convert(tiny_dir, tmp_path):
  only_bin = tmp_path / 'only_bin'
  shutil.copytree(tiny_dir, only_bin)
  (only_bin / 'model.safetensors').rename(only_bin / 'pytorch_model.bin')
  with pytest.raises(encoders.ModelLoadError, match='has only pytorch_model.bin') as e:
    encoders.load_clip(str(only_bin))
  message = one_line(str(e.value))
  assert f"from_pretrained('{only_bin}').save_pretrained('{only_bin}')" in message
  assert f'--clip-model {only_bin}' in message and 'hf download' not in message


def test_hub_repo_with_only_a_pytorch_pickle_says_download_then_convert(tmp_path, monkeypatch):
  """The hub lists only pytorch_model.bin: the side files come down, then one line on converting."""
  monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
  monkeypatch.delenv('TRANSFORMERS_OFFLINE', raising=False)
  monkeypatch.setattr(hub, 'hub_reachable', lambda timeout=3.0: True)
  monkeypatch.setattr(hub, '_hub_patterns', lambda name: (list(hub.SIDE_FILES), True))
  snapshot = tmp_path / 'snapshot'
  snapshot.mkdir()
  (snapshot / 'config.json').write_text('{}')

  def fake_snapshot(name, cache, local, patterns):
    if local:
      raise FileNotFoundError('not cached')
    assert hub.TORCH_WEIGHTS not in patterns  # The pickle is not downloaded.
    return snapshot

  monkeypatch.setattr(hub, '_snapshot', fake_snapshot)
  with pytest.raises(encoders.ModelLoadError, match='has only pytorch_model.bin') as e:
    encoders.load_clip('someone/old-clip')
  message = one_line(str(e.value))
  assert '`hf download someone/old-clip --local-dir DIR`' in message
  assert (
    "from_pretrained('DIR').save_pretrained('DIR')" in message and '--clip-model DIR' in message
  )


def test_flax_msgpack_of_transformers_4_loads(tiny, tiny_dir, tmp_path):
  """A directory saved by transformers 4's FlaxCLIPModel (flax_model.msgpack, the same tree)."""
  from flax import serialization  # pylint: disable=g-import-not-at-top

  old = tmp_path / 'flax_era'
  shutil.copytree(tiny_dir, old)
  (old / 'model.safetensors').unlink()
  params = jax.tree.map(np.asarray, tiny.params)
  (old / 'flax_model.msgpack').write_bytes(serialization.msgpack_serialize(params))
  frames = random_frames(2, seed=3)
  np.testing.assert_array_equal(
    encoders.load_clip(str(old)).encode_images(frames), tiny.encode_images(frames)
  )


def test_hub_name_found_in_the_local_cache_offline(tiny, tiny_dir, tmp_path, monkeypatch):
  """A hub name resolves from the Hugging Face cache layout with HF_HUB_OFFLINE set."""
  monkeypatch.setenv('HF_HUB_OFFLINE', '1')
  repo = tmp_path / 'models--someone--tiny-clip'
  commit = '0123456789abcdef0123456789abcdef01234567'
  shutil.copytree(tiny_dir, repo / 'snapshots' / commit)
  (repo / 'refs').mkdir()
  (repo / 'refs' / 'main').write_text(commit)
  again = encoders.load_clip('someone/tiny-clip', hf_cache_dir=tmp_path)
  assert (
    again.model_id == f'someone/tiny-clip@{commit}'
  )  # As transformers 4 named it: old caches hit.
  frames = random_frames(2, seed=4)
  np.testing.assert_array_equal(again.encode_images(frames), tiny.encode_images(frames))


# ----------------------------------------------------------- feature cache --


def test_feature_cache_hit_does_not_decode(tiny, clip_path, tmp_path, monkeypatch):
  calls = []
  real = video.decode_frames

  def counting(*args, **kwargs):
    calls.append(args)
    return real(*args, **kwargs)

  monkeypatch.setattr(video, 'decode_frames', counting)
  cache_dir = tmp_path / 'features'
  feats, times = encoders.cached_video_features(clip_path, tiny, 2.0, cache_dir)
  assert len(calls) == 1
  assert feats.shape == (6, 512) and feats.dtype == np.float32
  np.testing.assert_allclose(times, np.arange(6) * 0.5, atol=1e-9)
  # The features are the encoder's features of the decoded frames.
  frames = np.concatenate([f for f, _ in real(clip_path, fps=2.0, size=tiny.image_size)])
  np.testing.assert_allclose(feats, tiny.encode_images(frames), atol=1e-6)

  again, times2 = encoders.cached_video_features(clip_path, tiny, 2.0, cache_dir)
  assert len(calls) == 1  # Hit: no decoding.
  np.testing.assert_array_equal(again, feats)
  np.testing.assert_array_equal(times2, times)

  copy = tmp_path / 'renamed.mp4'
  shutil.copy(clip_path, copy)
  encoders.cached_video_features(copy, tiny, 2.0, cache_dir)
  assert len(calls) == 1  # Keyed by content, not by name.

  encoders.cached_video_features(clip_path, tiny, 1.0, cache_dir)
  assert len(calls) == 2  # Another rate is another entry.
  assert all(p.suffix == '.npz' for p in cache_dir.iterdir())
  assert len(list(cache_dir.iterdir())) == 2


@pytest.mark.parametrize('damage', ['garbage', 'truncated', 'tail cut'])
def test_feature_cache_recomputes_and_replaces_a_damaged_entry(tiny, clip_path, tmp_path, damage):
  cache_dir = tmp_path / 'features'
  feats, _ = encoders.cached_video_features(clip_path, tiny, 2.0, cache_dir)
  (entry,) = cache_dir.iterdir()
  data = entry.read_bytes()
  entry.write_bytes(
    {'garbage': b'not an npz', 'truncated': data[: len(data) // 2], 'tail cut': data[:-50]}[damage]
  )
  again, _ = encoders.cached_video_features(clip_path, tiny, 2.0, cache_dir)
  np.testing.assert_allclose(again, feats, atol=1e-6)
  assert list(cache_dir.iterdir()) == [entry]
  np.testing.assert_array_equal(np.load(entry)['features'], again)  # Replaced, whole.


@pytest.mark.parametrize(
  'field, change, reason',
  [
    ('features', lambda f: f[:, :7], '7-d features where the model gives 512-d ones'),
    ('features', lambda f: np.where(f > 0, np.nan, f), 'NaN or infinite values'),
    ('timestamps', lambda t: t - 2000, 'timestamps that are negative or not increasing'),
    ('timestamps', lambda t: t[:3], 'features of shape (6, 512) with timestamps of shape (3,)'),
  ],
)
def test_feature_cache_entry_with_wrong_data_is_recomputed_with_a_warning(
  tiny, clip_path, tmp_path, caplog, field, change, reason
):
  cache_dir = tmp_path / 'features'
  feats, times = encoders.cached_video_features(clip_path, tiny, 2.0, cache_dir)
  (entry,) = cache_dir.iterdir()
  wrong = dict(features=feats, timestamps=times)
  wrong[field] = change(wrong[field])
  np.savez(entry.with_suffix(''), **wrong)  # Loads, but holds wrong data.
  again, times2 = encoders.cached_video_features(clip_path, tiny, 2.0, cache_dir)
  np.testing.assert_allclose(again, feats, atol=1e-6)
  np.testing.assert_array_equal(times2, times)
  (record,) = [r for r in caplog.records if r.levelname == 'WARNING']
  assert record.getMessage() == f'damaged feature cache file {entry}: {reason}; recomputing it'
  np.testing.assert_array_equal(np.load(entry)['features'], again)  # Replaced.


def test_feature_cache_on_a_full_disk_is_a_warning(tiny, clip_path, tmp_path, caplog):
  with small_disk(tmp_path / 'disk', 64) as disk:
    fill_disk(disk, leave_kb=4)
    feats, times = encoders.cached_video_features(clip_path, tiny, 2.0, disk / 'features')
    assert feats.shape == (6, 512) and len(times) == 6
    assert [p.name for p in (disk / 'features').iterdir()] == []  # No partial entry.
  (record,) = [r for r in caplog.records if r.levelname == 'WARNING']
  assert 'could not write the feature cache file' in record.getMessage()
  assert 'No space left on device' in record.getMessage()


def test_progress_reaches_the_end_when_the_source_is_slower_than_fps(tiny, clip_path, capfd):
  feats, _ = encoders.video_features(clip_path, tiny, 20.0, progress=True)
  assert len(feats) == 30  # 10 fps source: each frame once.
  last = capfd.readouterr().err.replace('\r', '\n').strip().splitlines()[-1]
  assert '100%' in last and '30/30' in last, last


def test_feature_cache_missing_video(tiny, tmp_path):
  with pytest.raises(video.VideoError, match='not found'):
    encoders.cached_video_features(tmp_path / 'nope.mp4', tiny, 2.0, tmp_path)
  assert not os.listdir(tmp_path)


def test_file_sha256(tmp_path):
  path = tmp_path / 'f'
  path.write_bytes(b'abc' * 1000)
  import hashlib  # pylint: disable=g-import-not-at-top

  assert encoders.file_sha256(path, block=7) == hashlib.sha256(b'abc' * 1000).hexdigest()


def test_batch_buckets_are_powers_of_two_up_to_the_batch_size():
  # A single frame is computed alone (no padding to 8), and at most 7 shapes compile.
  assert [encoders._bucket(n, 64) for n in (1, 2, 3, 5, 9, 33, 64)] == [1, 2, 4, 8, 16, 64, 64]
  assert encoders._bucket(20, 16) == 16

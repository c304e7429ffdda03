"""Windows, masks, per-epoch shuffling and the split of global batches over hosts and devices."""

import numpy as np
import pytest

from clipit_jax import arrays
from clipit_jax import input_pipeline


def _video(i, n_frames, dim=3):
  return input_pipeline.Video(
    ref=('toy', f'v{i}'),
    features=np.full((n_frames, dim), i + 1, np.float32) + np.arange(n_frames)[:, None] / 1000,
    labels=(np.arange(n_frames) % 4 == 0).astype(np.float32),
    importance=np.linspace(0, 1, n_frames).astype(np.float32),
    text=np.full((2, 5), i, np.float32),
    text_mask=np.array([True, False]),
  )


def test_video_windows_masks_and_padding():
  windows = input_pipeline.video_windows([_video(0, 10), _video(1, 3)], window=4)
  frames = windows['frame_table'][windows['window_id']]
  assert frames.shape == (4, 4, 3)
  np.testing.assert_array_equal(windows['frame_mask'].sum(1), [4, 4, 2, 3])
  np.testing.assert_array_equal(windows['video_index'], [0, 0, 0, 1])
  np.testing.assert_array_equal(frames[2, 2:], 0)
  np.testing.assert_allclose(frames[2, :2, 0], [1.008, 1.009])
  np.testing.assert_array_equal(windows['labels'][0], [1, 0, 0, 0])
  np.testing.assert_allclose(windows['importance'][2], [8 / 9, 1, 0, 0])
  np.testing.assert_array_equal(windows['text'][3], np.full((2, 5), 1))
  np.testing.assert_array_equal(windows['text_mask'][3], [True, False])


def test_select_captions_uniform_and_padded():
  emb = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
  out, mask = input_pipeline.select_captions(emb, 4)
  np.testing.assert_array_equal(out[:, 0], [0, 3, 6, 9])
  assert mask.all()
  out, mask = input_pipeline.select_captions(emb[:2], 4)
  np.testing.assert_array_equal(out[:, 0], [0, 1, 0, 0])
  np.testing.assert_array_equal(mask, [True, True, False, False])
  out, mask = input_pipeline.select_captions(np.zeros((0, 4), np.float32), 3)
  assert out.shape == (3, 4) and not mask.any()


def test_videos_sharing_features_share_windows():
  shared = _video(0, 10)
  other_query = input_pipeline.Video(
    ref=('toy', 'v0/q2'),
    features=shared.features,
    labels=1 - shared.labels,
    importance=shared.importance,
    text=shared.text + 1,
    text_mask=shared.text_mask,
  )
  windows = input_pipeline.video_windows([shared, other_query, _video(1, 3)], window=4)
  assert windows['frame_table'].shape == (4, 4, 3)
  np.testing.assert_array_equal(windows['window_id'], [0, 1, 2, 0, 1, 2, 3])
  np.testing.assert_array_equal(windows['labels'][3], 1 - windows['labels'][0])
  batch = next(input_pipeline.epoch_batches(windows, 7, seed=0, epoch=0, shuffle=False))
  np.testing.assert_array_equal(batch['frames'][0, 3], batch['frames'][0, 0])
  np.testing.assert_array_equal(batch['text'][0, 3], batch['text'][0, 0] + 1)


def _windows(n):
  frames = np.arange(n, dtype=np.float32)[:, None, None] * np.ones((1, 2, 1), np.float32)
  return dict(
    frame_table=frames,
    window_id=np.arange(n),
    frame_mask=np.ones((n, 2), bool),
    labels=np.zeros((n, 2), np.float32),
    importance=np.zeros((n, 2), np.float32),
    text=np.zeros((n, 1, 1), np.float32),
    text_mask=np.ones((n, 1), bool),
    video_index=np.zeros(n, np.int32),
  )


@pytest.mark.parametrize('process_count,local_devices', [(1, 1), (1, 4), (2, 2)])
def test_every_window_once_per_epoch_across_hosts_and_devices(process_count, local_devices):
  windows = _windows(23)
  seen, count, real_per_step = [], 0, {}
  for process in range(process_count):
    for step, batch in enumerate(
      input_pipeline.epoch_batches(
        windows,
        10,
        seed=0,
        epoch=3,
        process_index=process,
        process_count=process_count,
        local_devices=local_devices,
      )
    ):
      per_device = input_pipeline.padded_batch_size(10, process_count * local_devices) // (
        process_count * local_devices
      )
      assert batch['frames'].shape == (local_devices, per_device, 2, 1)
      real = batch['frame_mask'].any(-1).reshape(-1)
      seen += list(batch['frames'][..., 0, 0].reshape(-1)[real])
      count += process == 0
      real_per_step[step] = real_per_step.get(step, 0) + int(real.sum())
  assert sorted(seen) == list(range(23))
  global_size = input_pipeline.padded_batch_size(10, process_count * local_devices)
  assert global_size % (process_count * local_devices) == 0 and 10 <= global_size < 14
  assert (
    count
    == input_pipeline.num_batches(23, 10, process_count * local_devices)
    == -(-23 // global_size)
  )
  assert list(real_per_step.values()) == input_pipeline.real_samples_per_batch(
    23, 10, process_count * local_devices
  )


def test_last_batch_is_padded_with_empty_samples():
  batches = list(input_pipeline.epoch_batches(_windows(7), 4, seed=1, epoch=0, local_devices=2))
  assert len(batches) == 2
  last = batches[-1]
  assert last['frames'].shape == (2, 2, 2, 1)
  assert last['frame_mask'].any(-1).sum() == 3
  assert not last['frame_mask'][1, 1].any()


def test_order_depends_only_on_seed_and_epoch():
  def order(seed, epoch):
    return np.concatenate(
      [
        b['frames'][..., 0, 0].reshape(-1)
        for b in input_pipeline.epoch_batches(_windows(30), 8, seed=seed, epoch=epoch)
      ]
    )

  np.testing.assert_array_equal(order(0, 1), order(0, 1))
  assert not np.array_equal(order(0, 1), order(0, 2))
  assert not np.array_equal(order(0, 1), order(1, 1))
  unshuffled = np.concatenate(
    [
      b['frames'][..., 0, 0].reshape(-1)
      for b in input_pipeline.epoch_batches(_windows(8), 8, seed=0, epoch=0, shuffle=False)
    ]
  )
  np.testing.assert_array_equal(unshuffled, np.arange(8))


def test_uniform_indices_include_both_ends():
  np.testing.assert_array_equal(arrays.uniform_indices(10, 4), [0, 3, 6, 9])
  np.testing.assert_array_equal(arrays.uniform_indices(5, 5), [0, 1, 2, 3, 4])
  np.testing.assert_array_equal(arrays.uniform_indices(7, 1), [0])


def test_fixed_shape_batches_pad_to_a_fixed_size_and_say_how_many_rows_are_real():
  x, y = np.arange(10).reshape(5, 2), np.arange(5) > 1
  batches = list(arrays.fixed_shape_batches([x, y], 2))
  assert [real for _, real in batches] == [2, 2, 1]
  (last_x, last_y), _ = batches[-1]
  np.testing.assert_array_equal(last_x, [[8, 9], [8, 9]])  # 'edge': the last row repeated.
  np.testing.assert_array_equal(last_y, [True, True])
  (zx, zy), real = list(arrays.fixed_shape_batches([x, y], 4, pad='zeros'))[-1]
  assert real == 1 and zx.shape == (4, 2) and not zx[1:].any() and not zy[1:].any()
  sizes = [
    p[0].shape[0]
    for p, _ in arrays.fixed_shape_batches(
      [np.zeros((11, 1))], 8, bucket=lambda real: 1 << (real - 1).bit_length()
    )
  ]
  assert sizes == [8, 4]  # 8 real rows, then 3 padded to the bucket of 4.

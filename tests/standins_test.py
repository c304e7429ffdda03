"""The benchmark-shaped stand-ins: every eccv16 field, real TVSum scores, the standard procedure."""

import gzip
import os

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.optimize

from clipit_jax import protocol
from clipit_jax.datasets import h5_files
from clipit_jax.datasets import loading
from clipit_jax.datasets import standins
from clipit_jax.datasets import tvsum_annotations


def _optimal_value(values: np.ndarray, weights: np.ndarray, capacity: int) -> float:
  """The 0/1 knapsack optimum by scipy's MILP solver (independent of protocol.knapsack)."""
  result = scipy.optimize.milp(
    -values,
    integrality=np.ones_like(values),
    bounds=scipy.optimize.Bounds(0, 1),
    constraints=scipy.optimize.LinearConstraint(weights[None], 0, capacity),
  )
  return -result.fun


def _check_common_fields(video: h5_files.H5Video) -> np.ndarray:
  """The eccv16 invariants every stand-in video keeps; returns each frame's shot."""
  n_steps = video.features.shape[0]
  assert video.features.shape == (n_steps, standins.FEATURE_DIM)
  assert video.features.dtype == np.float32 and np.all(np.isfinite(video.features))
  np.testing.assert_array_equal(video.picks, np.arange(0, video.n_frames, 15))
  assert video.gtscore.shape == video.gtsummary.shape == (n_steps,)
  cps = protocol.check_change_points(video.change_points, video.n_frames)
  lengths = cps[:, 1] - cps[:, 0] + 1
  np.testing.assert_array_equal(video.n_frame_per_seg, lengths)
  assert video.user_summary.shape[1] == video.n_frames
  shot_of_frame = np.repeat(np.arange(len(cps)), lengths)
  for user in video.user_summary:  # Whole shots only.
    per_shot = np.bincount(shot_of_frame, weights=user) / lengths
    assert set(np.unique(per_shot)) <= {0.0, 1.0}
  np.testing.assert_array_equal(
    video.gtsummary,
    protocol.generate_summary(video.gtscore, cps, video.n_frames, video.picks)[video.picks],
  )
  return shot_of_frame


def test_tvsum_standin_uses_the_real_annotations(shared_dir, tmp_path):
  anno_path = shared_dir / 'data/tvsum/ydata-anno.tsv.gz'
  real = list(tvsum_annotations.load_tvsum_annotations(anno_path).items())[:3]
  path = standins.write_standin(
    'tvsum', str(tmp_path), num_videos=3, tvsum_annotations=str(anno_path)
  )
  videos = list(h5_files.read_h5_videos(path))
  assert [v.name for v in videos] == [name for name, _ in real]
  for video, (_, annotation) in zip(videos, real):
    scores = annotation.user_scores.astype(np.float64)
    assert video.n_frames == scores.shape[1] and video.user_summary.shape[0] == 20
    shot_of_frame = _check_common_fields(video)
    np.testing.assert_allclose(video.gtscore, (scores.mean(0)[video.picks] - 1) / 4, rtol=1e-6)
    # Each user summary: the optimal knapsack of that user's shot means at 15 %.
    lengths = np.bincount(shot_of_frame)
    for user_scores, summary in zip(scores[:4], video.user_summary[:4]):
      means = np.bincount(shot_of_frame, weights=user_scores) / lengths
      chosen = np.bincount(shot_of_frame, weights=summary) > 0
      capacity = int(0.15 * video.n_frames)
      assert lengths[chosen].sum() <= capacity
      np.testing.assert_allclose(
        means[chosen].sum(), _optimal_value(means, lengths, capacity), rtol=1e-9
      )
  # The annotation file written beside the h5 holds the same real scores, and the
  # real builder reads them as the per-frame annotator scores.
  written = tvsum_annotations.load_tvsum_annotations(tmp_path / 'ydata-anno.tsv.gz')
  for name, annotation in real:
    np.testing.assert_array_equal(written[name].user_scores, annotation.user_scores)
  records = loading.read_records(
    loading.load_builder('tvsum', 'googlenet', str(tmp_path / 'tfds'), str(tmp_path))
  )
  for video, (_, annotation) in zip(videos, real):
    np.testing.assert_array_equal(records[video.key]['user_scores'], annotation.user_scores)


@pytest.mark.parametrize('dataset', ['summe', 'youtube', 'ovp'])
def test_selection_standins(dataset, tmp_path):
  shape = standins.SHAPES[dataset]
  path = standins.write_standin(dataset, str(tmp_path), num_videos=3, max_seconds=90)
  videos = list(h5_files.read_h5_videos(path))
  assert len(videos) == 3
  for video in videos:
    _check_common_fields(video)
    assert shape.users[0] <= video.user_summary.shape[0] <= shape.users[1]
    proportions = video.user_summary.mean(axis=1)
    assert np.all(proportions <= 0.15) and np.all(proportions > 0.02)
    # gtscore: the fraction of annotators selecting each sampled frame.
    np.testing.assert_allclose(video.gtscore, video.user_summary.mean(0)[video.picks], rtol=1e-6)


def test_real_sizes_without_annotations(tmp_path):
  """The simulated TVSum has TVSum's 50 videos and 20 annotators (durations as the real set)."""
  shape = standins.SHAPES['tvsum']
  lengths = standins._video_lengths(shape, np.random.default_rng(0), shape.num_videos)
  assert len(lengths) == 50
  seconds = lengths / standins.SOURCE_FPS
  assert seconds.min() >= shape.seconds[0] and seconds.max() <= shape.seconds[1]
  path = standins.write_standin('tvsum', str(tmp_path), num_videos=2, max_seconds=60)
  video = next(h5_files.read_h5_videos(path))
  assert video.user_summary.shape == (20, video.n_frames)
  with gzip.open(tmp_path / 'ydata-anno.tsv.gz', 'rt') as f:
    assert sum(1 for _ in f) == 40  # 2 videos x 20 annotators.


def test_rarity_within_a_video_falls_with_importance():
  rng = np.random.default_rng(0)
  importance = rng.random(40)
  concept = standins.assign_concepts(importance, rng)
  counts = np.array([np.sum(concept == c) for c in concept])
  order = np.argsort(importance)
  assert np.all(counts[order[32:]] == 1)  # The top 20 %: unique concepts.
  assert np.all(counts[order[:20]] >= 4)  # The bottom half share two concepts.
  assert counts[order[:20]].min() > counts[order[20:32]].max() >= 2


def test_same_seed_same_file_and_the_cli_keeps_existing_files(tmp_path, capsys):
  a = standins.write_standin('summe', str(tmp_path / 'a'), num_videos=2, max_seconds=60)
  b = standins.write_standin('summe', str(tmp_path / 'b'), num_videos=2, max_seconds=60)
  for x, y in zip(h5_files.read_h5_videos(a), h5_files.read_h5_videos(b)):
    np.testing.assert_array_equal(x.features, y.features)
    np.testing.assert_array_equal(x.user_summary, y.user_summary)
  before = os.path.getmtime(a)
  assert standins.main(['--manual_dir', str(tmp_path / 'a'), '--datasets', 'summe']) == 2
  assert 'already holds' in capsys.readouterr().err and os.path.getmtime(a) == before


def _write_summe_gt(gt_dir, rng) -> dict[str, np.ndarray]:
  """Three `GT/<name>.mat` files in SumMe's format (scipy.io.savemat); returns the user scores."""
  os.makedirs(gt_dir)
  written = {}
  for name, n_frames in (('car_over_camera', 400), ('Base_jumping', 330), ('Air_Force_One', 300)):
    user_score = (rng.random((n_frames, 4)) < 0.2) * rng.integers(1, 5, (n_frames, 4))
    gt_score = (user_score > 0).mean(axis=1, keepdims=True)
    scipy.io.savemat(
      os.path.join(gt_dir, name + '.mat'),
      dict(
        user_score=user_score.astype(np.uint8),
        gt_score=gt_score,
        nFrames=[[n_frames]],
        FPS=[[30.0]],
      ),
    )
    written[name] = user_score
  return written


def test_summe_standin_from_the_ground_truth_files(tmp_path):
  written = _write_summe_gt(tmp_path / 'GT', np.random.default_rng(0))
  path = standins.write_standin('summe', str(tmp_path / 'manual'), summe_gt=str(tmp_path / 'GT'))
  videos = list(h5_files.read_h5_videos(path))
  # The eccv16 order: names sorted, upper case first.
  assert [v.name for v in videos] == ['Air_Force_One', 'Base_jumping', 'car_over_camera']
  for video in videos:
    user_score = written[video.name]
    assert video.n_frames == user_score.shape[0] and video.features.shape[0] == len(video.picks)
    np.testing.assert_array_equal(video.user_summary, (user_score > 0).T)
    np.testing.assert_allclose(video.gtscore, (user_score > 0).mean(1)[video.picks], rtol=1e-6)
    np.testing.assert_array_equal(
      video.gtsummary,
      protocol.generate_summary(video.gtscore, video.change_points, video.n_frames, video.picks)[
        video.picks
      ],
    )
  assert (
    standins.main(
      [
        '--manual_dir',
        str(tmp_path / 'b'),
        '--summe_gt',
        str(tmp_path / 'x'),
        '--datasets',
        'summe',
      ]
    )
    == 2
  )


def test_tvsum_standin_with_the_real_shot_boundaries(tmp_path):
  rng = np.random.default_rng(0)
  with gzip.open(tmp_path / 'anno.tsv.gz', 'wt') as f:
    for name, n_frames in (('vidA', 700), ('vidB', 500)):
      for _ in range(20):
        f.write(f'{name}\tVT\t{",".join(map(str, rng.integers(1, 6, n_frames)))}\n')
  cells = np.empty((2, 1), object)
  cells[0, 0], cells[1, 0] = np.array([[0, 120, 333, 610, 700]]), np.array([[0, 250, 500]])
  scipy.io.savemat(tmp_path / 'shots.mat', dict(shot_boundaries=cells))
  kwargs = dict(
    tvsum_annotations=str(tmp_path / 'anno.tsv.gz'), tvsum_shots=str(tmp_path / 'shots.mat')
  )
  path = standins.write_standin('tvsum', str(tmp_path / 'full'), **kwargs)
  first, second = h5_files.read_h5_videos(path)
  np.testing.assert_array_equal(first.change_points, [[0, 119], [120, 332], [333, 609], [610, 699]])
  np.testing.assert_array_equal(second.change_points, [[0, 249], [250, 499]])
  _check_common_fields(first)
  # Cut short (tests), the shots past the end go and the last one ends at the cut.
  path = standins.write_standin('tvsum', str(tmp_path / 'cut'), max_seconds=12, **kwargs)
  np.testing.assert_array_equal(
    next(h5_files.read_h5_videos(path)).change_points, [[0, 119], [120, 332], [333, 359]]
  )
  cells[1, 0] = np.array([[0, 250, 499]])  # The shots must end at the video's frame count.
  scipy.io.savemat(tmp_path / 'shots.mat', dict(shot_boundaries=cells))
  with pytest.raises(ValueError, match='vidB: the shots end at frame 499'):
    standins.write_standin('tvsum', str(tmp_path / 'bad'), **kwargs)


def test_standins_from_the_real_summe_and_tvsum_releases(shared_dir, tmp_path):
  summe = shared_dir / 'data/summe'
  path = standins.write_standin('summe', str(tmp_path), summe_gt=str(summe / 'GT'))
  videos = list(h5_files.read_h5_videos(path))
  with h5py.File(summe / 'SumMe_data.mat', 'r') as f:
    n_frames = f['nFrames'][:, 0].astype(int)
    names = [''.join(map(chr, f[ref][()].ravel())).replace(' ', '_') for ref in f['nameVid'][:, 0]]
  assert [v.name for v in videos] == names and [v.n_frames for v in videos] == list(n_frames)
  cooking = scipy.io.loadmat(summe / 'GT/Cooking.mat')['user_score']
  np.testing.assert_array_equal(videos[names.index('Cooking')].user_summary, (cooking > 0).T)
  path = standins.write_standin(
    'tvsum',
    str(tmp_path),
    num_videos=2,
    tvsum_annotations=str(shared_dir / 'data/tvsum/ydata-anno.tsv.gz'),
    tvsum_shots=str(shared_dir / 'data/tvsum/shot_TVSum.mat'),
  )
  boundaries = standins.load_tvsum_shots(str(shared_dir / 'data/tvsum/shot_TVSum.mat'))
  for video, cuts in zip(h5_files.read_h5_videos(path), boundaries):
    np.testing.assert_array_equal(video.change_points[:, 0], cuts[:-1])
    assert video.change_points[-1, 1] == cuts[-1] - 1 == video.n_frames - 1


def test_within_video_rarity_by_hand_and_on_a_standin(tmp_path):
  from clipit_jax import baselines  # pylint: disable=g-import-not-at-top

  a, b = np.array([1.0, 2.0, 0.0]), np.array([0.0, -1.0, 3.0])
  # Centred, the frames are u, u and -u; their mean is u / 3: rarity -1/3, -1/3, 1/3.
  np.testing.assert_allclose(
    baselines.within_video_rarity(np.stack([a, a, b])), np.array([-1, -1, 1]) / 3
  )
  # On the stand-in, rarity within the video is the context signal: it rises with importance.
  path = standins.write_standin('summe', str(tmp_path), num_videos=2)
  for video in h5_files.read_h5_videos(path):
    rho = np.corrcoef(baselines.within_video_rarity(video.features), video.gtscore)[0, 1]
    assert rho > 0.15

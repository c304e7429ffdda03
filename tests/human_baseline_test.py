"""Tests of the TVSum annotation loader and the human rank baseline."""

import gzip
import itertools

import numpy as np
import pytest
import scipy.stats

from clipit_jax import human_baseline as hb
from clipit_jax import reproduce
from clipit_jax.datasets import tvsum_annotations

_LINES = [
  ('vidA', 'VT', [1, 2, 3, 4, 5]),
  ('vidA', 'VT', [5, 4, 3, 2, 1]),
  ('vidA', 'VT', [2, 2, 2, 3, 3]),
  ('vid-B_2', 'GA', [3, 3, 1]),
  ('vid-B_2', 'GA', [1, 1, 5]),
]


def _write(path, lines, gzipped=True):
  text = ''.join(f'{v}\t{c}\t{",".join(map(str, s))}\n' for v, c, s in lines)
  if gzipped:
    with gzip.open(path, 'wt') as f:
      f.write(text)
  else:
    path.write_text(text)
  return path


def _leave_one_out(scores):
  """Otani et al.'s loops: each annotator vs every other one, with scipy."""
  out = {}
  for name, fn in (('kendall', scipy.stats.kendalltau), ('spearman', scipy.stats.spearmanr)):
    per_user = []
    for i, x in enumerate(scores):
      per_user.append(np.mean([fn(x, y)[0] for j, y in enumerate(scores) if j != i]))
    out[name] = np.mean(per_user)
  return out


@pytest.mark.parametrize('gzipped', [True, False])
def test_load_tvsum_annotations(tmp_path, gzipped):
  path = _write(tmp_path / 'anno.tsv', _LINES, gzipped)
  videos = tvsum_annotations.load_tvsum_annotations(path)
  assert list(videos) == ['vidA', 'vid-B_2']
  assert videos['vidA'].category == 'VT'
  assert videos['vid-B_2'].category == 'GA'
  assert videos['vidA'].user_scores.dtype == np.int8
  np.testing.assert_array_equal(
    videos['vidA'].user_scores, [s for v, _, s in _LINES if v == 'vidA']
  )
  np.testing.assert_array_equal(videos['vid-B_2'].user_scores, [[3, 3, 1], [1, 1, 5]])


def test_load_tvsum_annotations_accepts_crlf_and_blank_lines(tmp_path):
  path = tmp_path / 'anno.tsv'
  path.write_bytes(b'v1\tVT\t1,2\r\n\r\nv1\tVT\t2,1\r\n')
  np.testing.assert_array_equal(
    tvsum_annotations.load_tvsum_annotations(path)['v1'].user_scores, [[1, 2], [2, 1]]
  )


@pytest.mark.parametrize(
  'content,match',
  [
    (b'', 'no annotations'),
    (b'v1\tVT\n', '3 tab-separated fields'),
    (b'v1\tVT\t1,2\textra\n', '3 tab-separated fields'),
    (b'v1\tVT\t1,6,2\n', 'integers 1-5'),
    (b'v1\tVT\t1,x,2\n', 'integers 1-5'),
    (b'v1\tVT\t1,,2\n', 'integers 1-5'),
    (b'v1\tVT\t\n', 'integers 1-5'),
    (b'v1\tVT\t1,2\nv1\tVT\t1,2,3\n', '3 frame scores, earlier 2'),
    (b'v1\tVT\t1,2\nv1\tGA\t1,2\n', 'category GA'),
    (b'\tVT\t1,2\n', 'empty video id'),
    (b'\x1f\x8bnot really gzip', 'cannot read'),
  ],
)
def test_load_tvsum_annotations_rejects_malformed_files(tmp_path, content, match):
  path = tmp_path / 'bad.tsv'
  path.write_bytes(content)
  with pytest.raises(ValueError, match=match) as info:
    tvsum_annotations.load_tvsum_annotations(path)
  assert 'bad.tsv' in str(info.value)


def test_load_tvsum_annotations_missing_file(tmp_path):
  with pytest.raises(ValueError, match='does not exist') as info:
    tvsum_annotations.load_tvsum_annotations(tmp_path / 'nope.tsv.gz')
  assert 'nope.tsv.gz' in str(info.value)
  with pytest.raises(ValueError, match='cannot read'):
    tvsum_annotations.load_tvsum_annotations(tmp_path)  # a directory


def test_pairwise_kendall_matches_scipy():
  rng = np.random.default_rng(0)
  discrete = rng.integers(1, 6, size=(6, 300))
  discrete[2] = 3  # a constant annotator counts as 0
  continuous = rng.normal(size=(4, 50))  # > 32 levels: scipy per pair
  for scores in (discrete, continuous):
    got = hb.pairwise_kendall(scores)
    for i, j in itertools.product(range(len(scores)), repeat=2):
      if np.ptp(scores[i]) == 0 or np.ptp(scores[j]) == 0:
        want = 0.0
      else:
        want = scipy.stats.kendalltau(scores[i], scores[j])[0]
      assert got[i, j] == pytest.approx(want, abs=1e-12), (i, j)


def test_human_rank_correlation_by_hand():
  # Annotators 0 and 1 are reversed (tau = rho = -1); annotator 2 ties.
  scores = np.array([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1], [2, 2, 2, 3, 3]])
  # tau(0, 2) = 6 / sqrt(10 * 6); rho(0, 2) = Pearson of ranks with
  # [2, 2, 2, 4.5, 4.5] = 7.5 / sqrt(10 * 7.5).
  tau02 = 6 / np.sqrt(60)
  rho02 = 7.5 / np.sqrt(75)
  got = hb.human_rank_correlation(scores)
  assert got['kendall'] == pytest.approx((-1 + tau02 - tau02) / 3)
  assert got['spearman'] == pytest.approx((-1 + rho02 - rho02) / 3)
  want = _leave_one_out(scores)
  assert got == pytest.approx(want, abs=1e-12)


def test_human_rank_correlation_matches_otani_loops_on_random_scores():
  rng = np.random.default_rng(1)
  base = rng.integers(1, 6, size=400)
  scores = np.where(rng.random((7, 400)) < 0.4, base, rng.integers(1, 6, size=(7, 400)))
  got = hb.human_rank_correlation(scores)
  assert got == pytest.approx(_leave_one_out(scores), abs=1e-12)
  assert got['kendall'] > 0.1  # the shared base makes them agree


def test_human_rank_correlation_rejects_bad_input():
  with pytest.raises(ValueError, match='2 annotators'):
    hb.human_rank_correlation(np.ones((1, 5)))
  with pytest.raises(ValueError, match='NaN'):
    hb.human_rank_correlation(np.array([[1.0, np.nan], [1.0, 2.0]]))
  with pytest.raises(ValueError, match='dimension'):
    hb.human_rank_correlation(np.ones(5))


def test_human_baseline_main_on_small_file(tmp_path):
  path = _write(tmp_path / 'anno.tsv.gz', _LINES)
  got = hb.human_baseline_main('tvsum', str(path))
  videos = tvsum_annotations.load_tvsum_annotations(path)
  per_video = [_leave_one_out(v.user_scores) for v in videos.values()]
  for key in ('kendall', 'spearman'):
    assert got[key] == pytest.approx(np.mean([r[key] for r in per_video]), abs=1e-12)
  with pytest.raises(ValueError, match='TVSum'):
    hb.human_baseline_main('summe', str(path))
  with pytest.raises(ValueError, match='does not exist'):
    hb.human_baseline_main('tvsum', str(tmp_path / 'missing.tsv'))


def test_human_baseline_on_real_tvsum(shared_dir):
  path = shared_dir / 'data' / 'tvsum' / 'ydata-anno.tsv.gz'
  if not path.is_file():
    pytest.skip(f'{path} not found')
  videos = tvsum_annotations.load_tvsum_annotations(path)
  assert len(videos) == 50
  assert all(v.user_scores.shape[0] == 20 for v in videos.values())
  got = hb.human_baseline_main('tvsum', str(path))
  # Otani et al. 2019 Table 1 / CLIP-It supplementary Table 1, "Human".
  assert round(got['kendall'], 3) == 0.177
  assert round(got['spearman'], 3) == 0.204


def _write_qfvs_release(root):
  """A QFVS origin_data tree: four videos of 4 shots tagged {A}, {B}, {A, B}, {}; one query."""
  tags = root / 'Dense_per_shot_tags'
  (tags).mkdir(parents=True)
  (tags / 'Dictionary.txt').write_text("'A'\n'B'\n")
  for video in ('P01', 'P02', 'P03', 'P04'):
    (tags / video).mkdir()
    (tags / video / f'{video}.txt').write_text('A\nB\nA,B\n\n')
    oracle = root / 'Query-Focused_Summaries/Oracle_Summaries' / video
    users = root / 'Query-Focused_Summaries/User_Summaries' / video
    oracle.mkdir(parents=True)
    users.mkdir(parents=True)
    (oracle / 'A_B_oracle.txt').write_text('1\n2\n')
    for user, shots in ((1, '1\n2\n'), (2, '3\n'), (3, '4\n')):
      (users / f'A_B_user{user}.txt').write_text(shots)


def test_qfvs_users_and_random_against_the_oracle(tmp_path):
  from clipit_jax.datasets import qfvs  # pylint: disable=g-import-not-at-top

  _write_qfvs_release(tmp_path)
  release = qfvs.read_release(str(tmp_path))
  # By hand: user 1 is the oracle (F1 1); user 2's {A, B} matches one oracle shot with IoU
  # 0.5 (precision 0.5, recall 0.25, F1 1/3); user 3's empty shot matches nothing (0).
  row = hb.human_baseline_main('qfvs', str(tmp_path))
  assert row['f1'] == pytest.approx(4 / 9) and row['per_video'] == {
    v: pytest.approx(4 / 9) for v in qfvs.VIDEOS
  }
  assert row['precision'] == pytest.approx((1 + 0.5 + 0) / 3)
  # A random pair of the 4 shots: F1 1, .75, .5, .75, .5, .25 for the 6 pairs, 0.625 expected.
  random = hb.qfvs_reference_rows(release, draws=400, seed=0)['random']
  assert random['f1'] == pytest.approx(0.625, abs=0.03)
  again = hb.qfvs_reference_rows(release, draws=400, seed=0)['random']
  assert again == random and hb.qfvs_reference_rows(release, draws=10, seed=1)['random'] != random
  # reproduce's QFVS table: per video and mean, in %.
  table = reproduce.qfvs_markdown(hb.qfvs_reference_rows(release, draws=10, seed=0))
  assert '| the users against the oracle | 44.4 | 44.4 | 44.4 | 44.4 | 44.4 |' in table
  assert "| random summary of the oracle's length (seed 0, mean of 10 draws) |" in table


def test_qfvs_rows_on_the_real_release(shared_dir):
  from clipit_jax.datasets import qfvs  # pylint: disable=g-import-not-at-top

  release = qfvs.read_release(str(shared_dir / 'data/qfvs/origin_data'))
  assert [tags.shape[0] for tags, _ in release.values()] == [2783, 3692, 2152, 3588]
  assert all(len(queries) == 45 for _, queries in release.values())
  rows = hb.qfvs_reference_rows(release, draws=10, seed=0)
  # The measurement: a random summary of the oracle's length scores about 51 F1.
  assert 0.48 < rows['random']['f1'] < 0.54 < rows['users']['f1']

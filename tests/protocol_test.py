"""Tests of the evaluation protocol: hand-solved and brute-force cases."""

import itertools
import math
import warnings

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from clipit_jax import protocol as ev


def _no_warnings(fn, *args, **kwargs):
  """Calls fn with every warning (numpy's RuntimeWarning included) an error."""
  with warnings.catch_warnings(), np.errstate(all='raise'):
    warnings.simplefilter('error')
    return fn(*args, **kwargs)


# ---------------------------------------------------------------------------
# KTS.


def _reference_cpd_auto(x, max_ncp, lmin=1, vmax=1.0):
  """Loop-by-loop KTS `cpd_nonlin` + `cpd_auto` (lmax = n), change points."""
  x = x / np.linalg.norm(x, axis=1, keepdims=True)
  k = x @ x.T
  n = len(x)
  scatter = np.full((n, n + 1), np.inf)  # scatter[t, l]: frames [t, l)
  for t in range(n):
    for l in range(t + 1, n + 1):
      block = k[t:l, t:l]
      scatter[t, l] = np.trace(block) - block.sum() / (l - t)
  cost = np.full((max_ncp + 1, n + 1), np.inf)
  back = np.zeros((max_ncp + 1, n + 1), int)
  for l in range(lmin, n + 1):
    cost[0, l] = scatter[0, l]
  for m in range(1, max_ncp + 1):
    for l in range((m + 1) * lmin, n + 1):
      ts = np.arange(m * lmin, l - lmin + 1)
      c = cost[m - 1, ts] + scatter[ts, l]
      cost[m, l] = c.min()
      back[m, l] = ts[np.argmin(c)]
  totals = [
    cost[m, n] / n + (0 if m == 0 else vmax * m / (2 * n) * (math.log(n / m) + 1))
    for m in range(max_ncp + 1)
  ]
  m = int(np.argmin(totals))
  cps, cur = [], n
  for j in range(m, 0, -1):
    cur = back[j, cur]
    cps.append(cur)
  return sorted(cps)


def _piecewise(rng, bounds, n, dim, noise):
  x = np.zeros((n, dim))
  for a, b in zip(bounds[:-1], bounds[1:]):
    x[a:b] = rng.normal(size=dim)
  return x + noise * rng.normal(size=x.shape)


def test_kts_recovers_piecewise_constant_change_points():
  rng = np.random.default_rng(0)
  bounds = [0, 23, 60, 61 + 20, 140, 147, 210, 300]
  x = _piecewise(rng, bounds, 300, 64, noise=0.4)
  shots = ev.kts(x)
  np.testing.assert_array_equal(shots[:, 0], bounds[:-1])
  np.testing.assert_array_equal(shots[:, 1], np.array(bounds[1:]) - 1)


def test_kts_change_points_within_one_step_under_heavy_noise():
  rng = np.random.default_rng(1)
  bounds = [0, 50, 110, 130, 200, 260]
  x = _piecewise(rng, bounds, 260, 32, noise=1.0)
  starts = ev.kts(x)[:, 0]
  assert len(starts) == len(bounds) - 1
  assert np.all(np.abs(starts - bounds[:-1]) <= 1)


@pytest.mark.parametrize(
  'seed,n,lmin,max_ncp',
  [
    (0, 12, 1, 11),
    (1, 25, 1, 10),
    (2, 30, 2, 14),
    (3, 40, 3, 8),
    (4, 33, 1, 32),
    (5, 18, 4, 3),
  ],
)
def test_kts_matches_reference_cpd_auto(seed, n, lmin, max_ncp):
  rng = np.random.default_rng(seed)
  # A few noisy segments so that the optimum has several change points.
  x = _piecewise(rng, [0, n // 3, n // 2, n], n, 5, noise=0.5)
  want = _reference_cpd_auto(x, max_ncp, lmin=lmin)
  shots = ev.kts(x, max_shots=max_ncp + 1, lmin=lmin)
  assert shots[1:, 0].tolist() == want


@pytest.mark.parametrize('seed', range(20))
def test_kts_matches_reference_cpd_auto_on_noise(seed):
  # Low-dimensional noise: many change points at data-dependent places.
  rng = np.random.default_rng(100 + seed)
  n, dim, lmin = int(rng.integers(5, 45)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
  max_ncp = int(rng.integers(1, n // lmin + 1)) - 1
  x = rng.normal(size=(n, dim))
  want = _reference_cpd_auto(x, max_ncp, lmin=lmin)
  shots = ev.kts(x, max_shots=max_ncp + 1, lmin=lmin)
  assert shots[1:, 0].tolist() == want


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), dim=st.integers(1, 6), seed=st.integers(0, 99), lmin=st.integers(1, 4))
def test_kts_output_covers_every_frame_once(n, dim, seed, lmin):
  lmin = min(lmin, n)
  x = np.random.default_rng(seed).normal(size=(n, dim))
  shots = ev.kts(x, lmin=lmin)
  ev.check_change_points(shots, n)  # raises unless a contiguous cover
  counts = np.zeros(n, int)
  for a, b in shots:
    counts[a : b + 1] += 1
  np.testing.assert_array_equal(counts, 1)
  assert shots.dtype == np.int64
  assert np.all(shots[:, 1] - shots[:, 0] + 1 >= lmin)
  assert len(shots) <= max(1, -(-n // 4))


def test_kts_constant_features_and_single_frame():
  np.testing.assert_array_equal(ev.kts(np.ones((50, 8))), [[0, 49]])
  np.testing.assert_array_equal(ev.kts(np.ones((1, 8))), [[0, 0]])
  # Zero vectors stay zero after normalisation (no division warning).
  np.testing.assert_array_equal(_no_warnings(ev.kts, np.zeros((7, 3))), [[0, 6]])


def test_kts_respects_max_shots_and_lmax():
  rng = np.random.default_rng(2)
  x = _piecewise(rng, [0, 10, 20, 30, 40, 50, 60], 60, 16, noise=0.1)
  assert len(ev.kts(x)) == 6
  assert len(ev.kts(x, max_shots=3)) <= 3
  shots = ev.kts(np.ones((40, 4)), lmax=15)
  assert np.all(shots[:, 1] - shots[:, 0] + 1 <= 15)
  assert len(shots) == 3


def test_kts_long_input_bounds_segment_length():
  shots = ev.kts(np.ones((3000, 2)))
  lengths = shots[:, 1] - shots[:, 0] + 1
  assert lengths.sum() == 3000
  assert lengths.max() <= (1 << 22) // 3000


@pytest.mark.parametrize(
  'features,kwargs,match',
  [
    (np.zeros((0, 4)), {}, 'empty'),
    (np.zeros(5), {}, 'dimension'),
    (np.array([[0.0, np.nan], [1.0, 1.0]]), {}, 'NaN'),
    (np.ones((5, 2)), {'max_shots': 0}, 'max_shots'),
    (np.ones((5, 2)), {'lmin': 0}, 'lmin'),
    (np.ones((5, 2)), {'lmin': 6}, 'lmin'),
    (np.ones((5, 2)), {'lmin': 3, 'lmax': 2}, 'lmax'),
    (np.ones((10, 2)), {'lmax': 2, 'max_shots': 3}, 'cannot be cut'),
  ],
)
def test_kts_rejects_bad_input(features, kwargs, match):
  with pytest.raises(ValueError, match=match):
    ev.kts(features, **kwargs)


# ---------------------------------------------------------------------------
# Knapsack.


def _brute_force_best(values, weights, capacity):
  best = 0.0
  for r in range(len(values) + 1):
    for subset in itertools.combinations(range(len(values)), r):
      if sum(weights[i] for i in subset) <= capacity:
        best = max(best, sum(values[i] for i in subset))
  return best


def test_knapsack_by_hand():
  # Greedy by value takes item 0 (10); the optimum is items 1 + 2 (14).
  assert ev.knapsack([10, 7, 7], [5, 3, 3], 6) == [1, 2]
  assert ev.knapsack([10, 7, 7], [5, 3, 3], 11) == [0, 1, 2]
  assert ev.knapsack([10, 7, 7], [5, 3, 3], 2) == []


def test_knapsack_ties_prefer_earlier_items():
  # Equal values: an item is only taken when it strictly improves the value.
  assert ev.knapsack([1.0, 1.0], [1, 1], 1) == [0]
  assert ev.knapsack([1.0, 1.0, 1.0], [2, 1, 1], 2) == [1, 2]  # 2 > 1
  # {0} and {1, 2} are both worth 2: the first item found stays.
  assert ev.knapsack([2.0, 1.0, 1.0], [2, 1, 1], 2) == [0]
  assert ev.knapsack([1.0, 1.0, 2.0], [1, 1, 2], 2) == [0, 1]


def test_knapsack_capacity_zero_heavy_items_and_zero_values():
  assert ev.knapsack([5.0, 3.0], [1, 2], 0) == []
  assert ev.knapsack([5.0, 3.0], [0, 2], 0) == [0]
  assert ev.knapsack([5.0, 3.0, 4.0], [7, 2, 9], 5) == [1]
  assert ev.knapsack([0.0, -1.0, 2.0], [1, 1, 1], 3) == [2]
  assert ev.knapsack([], [], 10) == []


@settings(max_examples=300, deadline=None)
@given(
  items=st.lists(st.tuples(st.integers(-5, 20), st.integers(0, 12)), max_size=9),
  capacity=st.integers(0, 40),
)
def test_knapsack_matches_brute_force(items, capacity):
  values = [float(v) for v, _ in items]
  weights = [w for _, w in items]
  picks = ev.knapsack(values, weights, capacity)
  assert picks == sorted(set(picks))
  assert sum(weights[i] for i in picks) <= capacity
  assert sum(values[i] for i in picks) == _brute_force_best(values, weights, capacity)
  assert ev.knapsack(values, weights, capacity) == picks  # deterministic


@pytest.mark.parametrize(
  'values,weights,capacity,match',
  [
    ([1.0], [1], -1, 'capacity'),
    ([1.0], [1], 2.5, 'capacity'),
    ([np.nan], [1], 1, 'NaN'),
    ([1.0], [-1], 1, 'weights'),
    ([1.0], [1.5], 1, 'integers'),
    ([1.0, 2.0], [1], 1, 'length'),
  ],
)
def test_knapsack_rejects_bad_input(values, weights, capacity, match):
  with pytest.raises(ValueError, match=match):
    ev.knapsack(values, weights, capacity)


# ---------------------------------------------------------------------------
# Keyframe -> keyshot summaries.

_SHOTS = np.array([[0, 1], [2, 4], [5, 5], [6, 9]])


def test_upsample_scores_step_function():
  got = ev.upsample_scores([0.9, 0.1, 0.5], [2, 3, 7], 9)
  np.testing.assert_allclose(got, [0, 0, 0.9, 0.1, 0.1, 0.1, 0.1, 0.5, 0.5])


def test_generate_summary_by_hand():
  # Frame scores 0.9 x3, 0.1 x3, 0.5 x2, 0.2 x2 -> shot means 0.9, 0.367,
  # 0.1 (a one-frame shot), 0.35; budget int(10 * 0.3) = 3 frames:
  # {0, 2} (weight 3, value 1.0) beats {0} and {1}.
  summary = ev.generate_summary([0.9, 0.1, 0.5, 0.2], _SHOTS, 10, [0, 3, 6, 8], proportion=0.3)
  assert summary.dtype == np.int8
  np.testing.assert_array_equal(summary, [1, 1, 0, 0, 0, 1, 0, 0, 0, 0])


def test_generate_summary_equal_scores_fill_with_short_shots():
  # All means equal: the most shots that fit in 5 frames, {0, 1, 2}.
  summary = ev.generate_summary(
    np.ones(10), [[0, 2], [3, 3], [4, 4], [5, 9]], 10, np.arange(10), proportion=0.5
  )
  np.testing.assert_array_equal(summary, [1, 1, 1, 1, 1, 0, 0, 0, 0, 0])


def test_generate_summary_value_scale_quantises_like_reference():
  shots = [[0, 1], [2, 3]]
  scores = [0.5001, 0.5001, 0.5004, 0.5004]
  float_values = ev.generate_summary(scores, shots, 4, np.arange(4), 0.5)
  np.testing.assert_array_equal(float_values, [0, 0, 1, 1])
  # int(1000 * mean) ties at 500: the earlier shot is kept.
  scaled = ev.generate_summary(scores, shots, 4, np.arange(4), 0.5, value_scale=1000)
  np.testing.assert_array_equal(scaled, [1, 1, 0, 0])


def test_generate_summary_zero_budget():
  summary = ev.generate_summary([1.0, 2.0], [[0, 4], [5, 9]], 10, [0, 5], proportion=0.05)
  np.testing.assert_array_equal(summary, np.zeros(10))


@pytest.mark.parametrize(
  'kwargs,match',
  [
    ({'scores': [np.nan, 1, 1, 1]}, 'NaN'),
    ({'scores': [1, 1, 1]}, 'length'),
    ({'positions': [0, 3, 3, 8]}, 'increasing'),
    ({'positions': [0, 3, 6, 10]}, r'\[0, 10\)'),
    ({'change_points': [[0, 1], [3, 9]]}, 'gap'),
    ({'change_points': [[0, 4], [3, 9]]}, 'overlap'),
    ({'change_points': [[0, 4], [5, 8]]}, 'end at frame 8'),
    ({'change_points': [[1, 4], [5, 9]]}, 'start at frame 0'),
    ({'change_points': [0, 4, 5, 9]}, 'shape'),
    ({'proportion': 1.5}, 'proportion'),
    ({'n_frames': 0}, 'n_frames'),
  ],
)
def test_generate_summary_rejects_bad_input(kwargs, match):
  args = {
    'scores': [0.9, 0.1, 0.5, 0.2],
    'change_points': _SHOTS,
    'n_frames': 10,
    'positions': [0, 3, 6, 8],
  }
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    ev.generate_summary(**args)


def test_user_summaries_from_scores_by_hand():
  frame_scores = ev.upsample_scores([0.9, 0.1, 0.5, 0.2], [0, 3, 6, 8], 10)
  users = np.stack([frame_scores, frame_scores[::-1]])
  got = ev.user_summaries_from_scores(users, _SHOTS, proportion=0.3)
  assert got.dtype == np.int8 and got.shape == (2, 10)
  np.testing.assert_array_equal(got[0], [1, 1, 0, 0, 0, 1, 0, 0, 0, 0])
  # Reversed scores: shot means 0.2, 0.367, 0.1, 0.7 -> {1} (3 frames,
  # 0.367) beats {0, 2} (0.3); {3} (4 frames) does not fit.
  np.testing.assert_array_equal(got[1], [0, 0, 1, 1, 1, 0, 0, 0, 0, 0])
  for u, row in enumerate(users):
    np.testing.assert_array_equal(got[u], ev.generate_summary(row, _SHOTS, 10, np.arange(10), 0.3))


def test_user_summaries_from_scores_rejects_bad_input():
  with pytest.raises(ValueError, match='end at frame'):
    ev.user_summaries_from_scores(np.ones((2, 10)), [[0, 4], [5, 10]])
  with pytest.raises(ValueError, match='NaN'):
    ev.user_summaries_from_scores(np.full((2, 10), np.nan), _SHOTS)


# ---------------------------------------------------------------------------
# F1.


def test_evaluate_summary_by_hand():
  pred = np.array([1, 1, 0, 0, 1, 0])
  users = np.array([[1, 0, 0, 0, 1, 1], [0, 0, 1, 1, 0, 0]])
  # User 0: overlap 2, P = R = 2/3 -> 66.67; user 1: no overlap -> 0.
  assert ev.evaluate_summary(pred, users, 'max') == pytest.approx(200 / 3)
  assert ev.evaluate_summary(pred, users, 'avg') == pytest.approx(100 / 3)


def test_evaluate_summary_binarises():
  pred = np.array([0.0, 0.7, 2.0, 0.0])
  users = np.array([[0, 3, 0, 0]])
  # P = 1/2, R = 1 -> F1 = 2/3.
  assert ev.evaluate_summary(pred, users, 'avg') == pytest.approx(200 / 3)


def test_evaluate_summary_empty_summaries_give_zero_without_warnings():
  users = np.array([[1, 1, 0, 0], [0, 0, 0, 0]])
  assert _no_warnings(ev.evaluate_summary, np.zeros(4), users, 'max') == 0.0
  assert _no_warnings(ev.evaluate_summary, np.ones(4), users, 'avg') == (
    pytest.approx(100 * (2 * 0.5 * 1 / 1.5) / 2)
  )


def test_evaluate_summary_user_summaries_one_frame_longer_or_shorter():
  users = np.array([[1, 1, 0, 0, 0, 1]])
  # One frame shorter: padded with a 0 -> overlap 2, P = 2/2, R = 2/3.
  short = np.array([1, 1, 0, 0, 0])
  assert ev.evaluate_summary(short, users, 'avg') == pytest.approx(80.0)
  # One frame longer: the extra selected frame is cut -> P = R = 1.
  long = np.array([1, 1, 0, 0, 0, 1, 1])
  assert ev.evaluate_summary(long, users, 'avg') == pytest.approx(100.0)


def test_evaluate_summary_rejects_bad_input():
  users = np.ones((2, 10))
  with pytest.raises(ValueError, match='reduce'):
    ev.evaluate_summary(np.ones(10), users, 'mean')
  with pytest.raises(ValueError, match='apart'):
    ev.evaluate_summary(np.ones(4), users, 'max')
  assert ev.evaluate_summary(np.ones(4), users, 'max', max_length_mismatch=None) == pytest.approx(
    100 * 2 * 0.4 / 1.4
  )
  with pytest.raises(ValueError, match='NaN'):
    ev.evaluate_summary(np.full(10, np.nan), users, 'max')
  with pytest.raises(ValueError, match='dimension'):
    ev.evaluate_summary(np.ones(10), np.ones(10), 'max')
  with pytest.raises(ValueError, match='empty'):
    ev.evaluate_summary(np.ones(0), users, 'max')


# ---------------------------------------------------------------------------
# Rank correlation.


def test_rank_correlation_by_hand_with_ties():
  pred = np.array([1.0, 2.0, 2.0, 3.0])
  users = np.array([[1, 1, 2, 3], [2, 1, 1, 1]])
  # User 0: 4 concordant, 0 discordant, one tie in each -> 4 / sqrt(5 * 5);
  #   ranks [1, 2.5, 2.5, 4] vs [1.5, 1.5, 3, 4] -> rho = 3.75 / 4.5.
  # User 1: 3 discordant, 1 tie in pred, 3 ties in user -> -3 / sqrt(5 * 3);
  #   ranks vs [4, 2, 2, 2] -> rho = -3 / sqrt(4.5 * 3).
  tau = [0.8, -3 / math.sqrt(15)]
  rho = [3.75 / 4.5, -3 / math.sqrt(13.5)]
  got = ev.rank_correlation(pred, users)
  assert got['kendall'] == pytest.approx(np.mean(tau), abs=1e-12)
  assert got['spearman'] == pytest.approx(np.mean(rho), abs=1e-12)


def test_rank_correlation_matches_scipy():
  rng = np.random.default_rng(3)
  pred = rng.normal(size=200)
  users = rng.integers(1, 6, size=(5, 200)) + 0.3 * pred
  got = ev.rank_correlation(pred, users)
  assert got['kendall'] == pytest.approx(
    np.mean([scipy.stats.kendalltau(pred, u)[0] for u in users]), abs=1e-12
  )
  assert got['spearman'] == pytest.approx(
    np.mean([scipy.stats.spearmanr(pred, u)[0] for u in users]), abs=1e-12
  )


def test_rank_correlation_constant_scores_count_as_zero():
  users = np.array([[1, 2, 3, 4], [4, 4, 4, 4]])
  got = _no_warnings(ev.rank_correlation, np.full(4, 0.5), users)
  assert got == {'kendall': 0.0, 'spearman': 0.0}
  got = _no_warnings(ev.rank_correlation, np.arange(4.0), users)
  assert got == pytest.approx({'kendall': 0.5, 'spearman': 0.5}, abs=1e-12)


def test_rank_correlation_rejects_bad_input():
  with pytest.raises(ValueError, match='frames'):
    ev.rank_correlation(np.ones(4), np.ones((2, 5)))
  with pytest.raises(ValueError, match='NaN'):
    ev.rank_correlation(np.array([1.0, np.nan]), np.ones((2, 2)))
  with pytest.raises(ValueError, match='at least 2'):
    ev.rank_correlation(np.ones(1), np.ones((2, 1)))


# ---------------------------------------------------------------------------
# QFVS.

# Shots 0, 1 predicted; 2, 3 (and 4) by the user.
_CONCEPTS = [{'a', 'b', 'c'}, {'c', 'd'}, {'a', 'b', 'c', 'd'}, {'a', 'b'}, {'e'}, set()]


def test_qfvs_optimal_matching_beats_greedy():
  # IoU: p0-u2 3/4, p0-u3 2/3, p1-u2 1/2, p1-u3 0.  Greedy takes p0-u2 then
  # p1-u3 = 0.75; the optimum p0-u3 + p1-u2 = 7/6.
  got = ev.qfvs_evaluate([0, 1], [2, 3], _CONCEPTS)
  assert got['precision'] == pytest.approx(7 / 12)
  assert got['recall'] == pytest.approx(7 / 12)
  assert got['f1'] == pytest.approx(7 / 12)


def test_qfvs_unequal_sizes_and_array_concepts():
  labels = ['a', 'b', 'c', 'd', 'e']
  array = np.array([[c in s for c in labels] for s in _CONCEPTS], np.int64)
  got = ev.qfvs_evaluate(np.array([0, 1]), [2, 3, 4], array)
  p, r = 7 / 12, 7 / 18
  assert got['precision'] == pytest.approx(p)
  assert got['recall'] == pytest.approx(r)
  assert got['f1'] == pytest.approx(2 * p * r / (p + r))
  assert ev.qfvs_evaluate([0, 1], [2, 3, 4], _CONCEPTS) == pytest.approx(got)


def test_qfvs_empty_and_conceptless_shots_give_zeros_without_warnings():
  zeros = {'precision': 0.0, 'recall': 0.0, 'f1': 0.0}
  assert _no_warnings(ev.qfvs_evaluate, [], [2, 3], _CONCEPTS) == zeros
  assert _no_warnings(ev.qfvs_evaluate, [0], [], _CONCEPTS) == zeros
  # A shot without concepts matches nothing, not even itself.
  assert _no_warnings(ev.qfvs_evaluate, [5], [5], _CONCEPTS) == zeros
  assert _no_warnings(ev.qfvs_evaluate, [4], [0, 1], _CONCEPTS) == zeros
  assert ev.qfvs_evaluate([3], [3], _CONCEPTS)['f1'] == 1.0


@pytest.mark.parametrize(
  'pred,user,concepts,match',
  [
    ([0, 6], [1], _CONCEPTS, 'index shots'),
    ([-1], [1], _CONCEPTS, 'index shots'),
    ([0, 0], [1], _CONCEPTS, 'more than once'),
    ([0.5], [1], _CONCEPTS, 'integers'),
    ([0], [1], np.array([[0, 2], [1, 0]]), '0 and 1'),
    ([0], [1], np.array([[0, np.nan], [1, 0]]), '0 and 1'),
    ([0], [1], np.ones(3), 'shape'),
  ],
)
def test_qfvs_rejects_bad_input(pred, user, concepts, match):
  with pytest.raises(ValueError, match=match):
    ev.qfvs_evaluate(pred, user, concepts)

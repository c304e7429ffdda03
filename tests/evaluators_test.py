"""The protocol evaluators: typed ground truth, one evaluate() per protocol, averaging."""

import ml_collections
import numpy as np
import pytest

from clipit_jax import evaluators
from clipit_jax import input_pipeline
from clipit_jax import protocol


def _keyshot_truth():
  """20 frames sampled every 2nd, 4 shots of 5 frames; 2 annotators ranking frames alike."""
  user_scores = np.stack([np.arange(20.0), np.arange(20.0) ** 2])
  change_points = np.array([[0, 4], [5, 9], [10, 14], [15, 19]])
  user_summary = np.zeros((2, 20), np.int8)
  user_summary[:, 15:20] = 1
  return evaluators.KeyshotTruth(
    picks=np.arange(0, 20, 2),
    n_frames=20,
    change_points=change_points,
    user_summary=user_summary,
    user_scores=user_scores,
    gtscore=np.arange(10.0) / 9,
    f1_reduction='avg',
  )


def test_keyshot_evaluate_agrees_with_the_protocol_functions():
  truth = _keyshot_truth()
  scores = np.linspace(0, 1, 10)
  row = truth.evaluate(scores)
  summary = protocol.generate_summary(scores, truth.change_points, 20, truth.picks, 0.15)
  assert row['f1'] == protocol.evaluate_summary(summary, truth.user_summary, 'avg')
  frame_scores = protocol.upsample_scores(scores, truth.picks, 20)
  expected = protocol.rank_correlation(frame_scores, truth.user_scores)
  assert row['kendall'] == expected['kendall'] and row['spearman'] == expected['spearman']
  assert row['kendall'] > 0.9  # The scores rise with both annotators' scores.
  assert truth.evaluate(scores[::-1])['kendall'] < -0.9


def test_qfvs_evaluate_takes_the_oracle_length_of_top_shots():
  truth = evaluators.QfvsTruth(
    shot_of_frame=np.array([0, 0, 1, 1, 2, 2]),
    shot_concepts=np.eye(3, dtype=bool),
    oracle=np.array([1, 0, 1]),
    user_shots=np.array([[1, 0, 1]] * 3),
    query='a b',
  )
  right = truth.evaluate(np.array([0.9, 0.8, 0.1, 0.2, 0.7, 0.6]))
  assert right == {'precision': 1.0, 'recall': 1.0, 'f1': 1.0}
  wrong = truth.evaluate(np.array([0.9, 0.8, 0.7, 0.6, 0.1, 0.2]))
  assert wrong['f1'] < 1.0


def _video(truth):
  return input_pipeline.Video(
    ref=('d', 'v'),
    features=np.zeros((10, 4), np.float32),
    labels=np.zeros(10, np.float32),
    importance=np.zeros(10, np.float32),
    text=np.zeros((1, 4), np.float32),
    text_mask=np.ones(1, bool),
    truth=truth,
  )


def test_evaluate_scores_averages_rows_and_refuses_mixed_protocols():
  truth = _keyshot_truth()
  scores = [np.linspace(0, 1, 10), np.linspace(1, 0, 10)]
  result = evaluators.evaluate_scores([_video(truth), _video(truth)], scores)
  assert [r['protocol'] for r in result['rows']] == ['keyshot', 'keyshot']
  for key in ('f1', 'kendall', 'spearman'):
    assert result['metrics'][key] == pytest.approx(np.mean([r[key] for r in result['rows']]))
  qfvs = evaluators.QfvsTruth(
    np.zeros(10, int), np.ones((1, 1), bool), np.ones(1), np.ones((3, 1)), 'q'
  )
  with pytest.raises(ValueError, match='mixed protocols'):
    evaluators.evaluate_scores([_video(truth), _video(qfvs)], scores)


def _rising_video(truth, rising: bool):
  """A video whose one feature rises (or falls) over its 10 steps."""
  video = _video(truth)
  ramp = np.linspace(0, 1, 10, dtype=np.float32)
  video.features = np.stack([ramp if rising else ramp[::-1]] + [np.zeros(10, np.float32)] * 3, 1)
  return video


def _first_feature(variables, frames, frame_mask, text, text_mask):
  """A stand-in model (`CLIPIt.apply`'s signature) whose frame score is the first feature."""
  return {'scores': frames[..., 0]}


def test_make_evaluators_reads_the_config_and_evaluates_each_split():
  config = ml_collections.ConfigDict(dict(evaluators=('val',), test_every_epoch=False))
  assert list(evaluators.make_evaluators(config)) == ['val']
  config.test_every_epoch = True
  assert list(evaluators.make_evaluators(config)) == ['val', 'test']
  config.test_every_epoch, config.evaluators = False, ('test', 'val')
  made = evaluators.make_evaluators(config)
  assert list(made) == ['val', 'test']
  truth = _keyshot_truth()
  data = dict(train=[_rising_video(truth, True)], validation=[], test=[_rising_video(truth, False)])
  # No held-out videos: 'val' evaluates the training ones (rising, as the annotators rank).
  assert made['val'](_first_feature, {}, data, window=4)['kendall'] > 0.9
  assert made['test'](_first_feature, {}, data, window=4)['kendall'] < -0.9
  config.evaluators = ('test',)
  with pytest.raises(ValueError, match="must list 'val'"):
    evaluators.make_evaluators(config)
  config.evaluators = ('val', 'tset')
  with pytest.raises(ValueError, match=r"unknown 'tset'; expected some of 'val', 'test'"):
    evaluators.make_evaluators(config)

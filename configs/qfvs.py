"""QFVS (UT Egocentric): query-focused summaries; the query's CLIP embedding is the text.

Four rounds (--config.data.split=0..3): train on two videos, validate on one, test on one.
Shots are 5 seconds; a shot's score is the mean of its frames' scores; the summary has
as many shots as the oracle; F1 is the concept-IoU matching of Sharghi et al. (2017).
  python train.py --config configs/qfvs.py --workdir runs/qfvs_round0
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.dataset = 'qfvs'
  config.data.features = 'clip'
  config.model.text_fusion = 'query'
  return config

"""QFVS (UT Egocentric): query-focused summaries; the query's CLIP embedding is the text.

Four rounds (--config.data.split=0..3, or train.py --all_splits): train on two videos,
validate on one, test on one. Shots are 5 seconds; a shot's score is the mean of its
frames' scores; the summary has as many shots as the oracle; F1 is the concept-IoU matching
of Sharghi et al. (2017).
  python train.py --config configs/qfvs.py --workdir runs/qfvs --all_splits
  python train.py --config configs/qfvs.py:small --workdir runs/qfvs_small --all_splits

':small' is the model and optimizer of configs/synthetic_query.py, with the paper's target
(the oracle's keyframes), for one epoch: a round in about 15 minutes on 2 CPU cores, where
the paper's model needs an accelerator (docs/learning.md, "QFVS at its real size").
"""

from configs import default
from configs import synthetic_query


def get_config(variant: str = 'paper'):
  if variant not in ('paper', 'small'):
    raise ValueError(f"configs/qfvs.py takes ':paper' or ':small', got {variant!r}")
  config = default.get_config()
  config.data.dataset = 'qfvs'
  config.data.features = 'clip'
  config.model.text_fusion = 'query'
  if variant == 'small':
    recipe = synthetic_query.get_config()
    for key in ('width', 'mlp_dim', 'head_mlp_dim', 'num_encoder_layers', 'num_decoder_layers'):
      config.model[key] = recipe.model[key]
    for key in ('batch_size', 'learning_rate', 'lr_schedule', 'warmup_steps'):
      config[key] = recipe[key]
    config.num_epochs = 1  # About 1,400 updates: 2 videos x 45 queries x ~120 windows of 256.
  return config

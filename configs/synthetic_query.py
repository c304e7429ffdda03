"""The synthetic benchmark's query-focused part: a '<colour> <shape>' query decides what matters.

The same videos as configs/synthetic.py, one example per (video, query); the query's CLIP
embedding is the text input. A model that ignores the query cannot do well here.
  python train.py --config configs/synthetic_query.py --workdir runs/synthetic_query
"""

from configs import synthetic


def get_config():
  config = synthetic.get_config()
  config.data.part = 'query'
  config.model.text_fusion = 'query'
  config.num_epochs = 20
  config.warmup_steps = 100  # 30 steps an epoch here, against 8 for the generic part.
  return config

"""Checks of a training config's values, light enough to run before the heavy imports.

`train.py` calls `check_config` right after parsing its flags, so a bad override
(`--config.batch_size=0`) is one line at once; `train.train_and_evaluate` calls it too.
"""

import math

import ml_collections


def _number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(lowest: int, optional: bool = False):
  return lambda v: (
    (optional and v is None) or (isinstance(v, int) and not isinstance(v, bool) and v >= lowest)
  )


# (field, what it must be, test): the values the training loop counts or divides by.
_CHECKS = (
  ('batch_size', 'an integer >= 1', _integer(1)),
  ('num_epochs', 'an integer >= 1', _integer(1)),
  ('microbatch_size', 'None or an integer >= 0 (0: the whole batch)', _integer(0, optional=True)),
  ('stop_after_epoch', 'None or an integer >= 1', _integer(1, optional=True)),
  ('warmup_steps', 'an integer >= 0', _integer(0)),
  ('learning_rate', 'a number > 0', lambda v: _number(v) and v > 0),
  ('weight_decay', 'a number >= 0', lambda v: _number(v) and v >= 0),
  ('model.window', 'an integer >= 1', _integer(1)),
  ('data.split', 'an integer >= 0', _integer(0)),
  ('data.validation_fraction', 'a number in [0, 1)', lambda v: _number(v) and 0 <= v < 1),
)


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first field whose value training cannot use."""
  for field, wanted, test in _CHECKS:
    value = config
    for part in field.split('.'):
      value = value.get(part) if isinstance(value, ml_collections.ConfigDict) else None
    if not test(value):
      raise ValueError(f'config.{field} must be {wanted}, got {value!r} (--config.{field})')

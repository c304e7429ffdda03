"""Checks of a config's values, light enough to run before the heavy imports.

`train.py` calls `check_config` right after parsing its flags, so a bad override
(`--config.batch_size=0`, `--config.loss=sup`) is one line at once, naming the valid
values; `train.train_and_evaluate` calls it too, and `checkpoints.load_config` on a
saved config.json (with `source`, the file, in the message).
"""

import math
from collections.abc import Callable
from typing import Any

import ml_collections

from clipit_jax.datasets import registry

# The choice fields' values. The metrics are those `evaluators` computes per protocol.
LOSSES = ('supervised', 'unsupervised')
TARGETS = ('keyframes', 'importance')
OPTIMIZERS = ('adam', 'adamw')
LR_SCHEDULES = ('constant', 'cosine')
PARALLELISMS = ('shard_map', 'pmap')
TEXT_FUSIONS = ('concat', 'tokens', 'query')
CROSS_MODALS = ('attention', 'mlp')
ATTENTIONS = ('einsum', 'dot_product_attention')
DTYPES = ('float32', 'bfloat16', 'float16')
MATMUL_DTYPES = ('float32', 'bfloat16')
DATASETS = tuple(registry.declared_names())  # Read from the dataset modules, not imported.
SETTINGS = ('standard', 'augment', 'transfer')
PARTS = ('generic', 'query')
KEYSHOT_METRICS = ('f1', 'kendall', 'spearman')
QFVS_METRICS = ('precision', 'recall', 'f1')
EVALUATORS = ('val', 'test')  # evaluators.EVALUATORS' names; 'val' picks the best checkpoint.
SPLITS_FILE_DATASETS = ('summe', 'tvsum')  # The split files of the field are SumMe/TVSum's.


def _number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(lowest: int, optional: bool = False) -> Callable[[Any], bool]:
  return lambda v: (
    (optional and v is None) or (isinstance(v, int) and not isinstance(v, bool) and v >= lowest)
  )


def _fraction(v) -> bool:
  return _number(v) and 0 <= v < 1


def _boolean(v) -> bool:
  return isinstance(v, bool)


_POSITIVE = ('an integer >= 1', _integer(1))

# (field, what it must be, test).
_CHECKS = (
  ('batch_size', *_POSITIVE),
  ('num_epochs', *_POSITIVE),
  ('microbatch_size', 'None or an integer >= 0 (0: the whole batch)', _integer(0, optional=True)),
  ('stop_after_epoch', 'None or an integer >= 1', _integer(1, optional=True)),
  ('warmup_steps', 'an integer >= 0', _integer(0)),
  ('learning_rate', 'a number > 0', lambda v: _number(v) and v > 0),
  ('weight_decay', 'a number >= 0', lambda v: _number(v) and v >= 0),
  ('seed', 'an integer', _integer(-(2**63))),
  ('summary_rate', 'None or a number in (0, 1)', lambda v: v is None or _number(v) and 0 < v < 1),
  ('loss_weights.classification', 'a number >= 0', lambda v: _number(v) and v >= 0),
  ('loss_weights.diversity', 'a number >= 0', lambda v: _number(v) and v >= 0),
  ('loss_weights.reconstruction', 'a number >= 0', lambda v: _number(v) and v >= 0),
  ('test_every_epoch', 'True or False', _boolean),
  ('progress', 'True or False', _boolean),
  *(
    (f'model.{k}', *_POSITIVE)
    for k in (
      'frame_dim',
      'text_dim',
      'width',
      'num_captions',
      'language_heads',
      'num_heads',
      'mlp_dim',
      'head_mlp_dim',
      'window',
    )
  ),
  ('model.num_encoder_layers', 'an integer >= 0', _integer(0)),
  ('model.num_decoder_layers', 'an integer >= 0', _integer(0)),
  ('model.dropout_rate', 'a number in [0, 1)', _fraction),
  ('model.attention_dropout_rate', 'a number in [0, 1)', _fraction),
  ('model.input_norm', 'True or False', _boolean),
  ('model.center_frames', 'True or False', _boolean),
  ('model.score_smoothing', 'an odd integer >= 1', lambda v: _integer(1)(v) and v % 2 == 1),
  ('model.null_text_token', 'True or False', _boolean),
  ('data.split', 'an integer >= 0', _integer(0)),
  ('data.validation_fraction', 'a number in [0, 1)', _fraction),
)

_CHOICES = (
  ('loss', LOSSES),
  ('target', TARGETS),
  ('optimizer', OPTIMIZERS),
  ('lr_schedule', LR_SCHEDULES),
  ('parallelism', PARALLELISMS),
  ('model.text_fusion', TEXT_FUSIONS),
  ('model.cross_modal', CROSS_MODALS),
  ('model.attention', ATTENTIONS),
  ('model.dtype', DTYPES),
  ('model.matmul_dtype', MATMUL_DTYPES),
  ('data.dataset', DATASETS),
  ('data.setting', SETTINGS),
  ('data.part', PARTS),
)


def _value(config: ml_collections.ConfigDict, field: str) -> Any:
  value = config
  for part in field.split('.'):
    value = value.get(part) if isinstance(value, ml_collections.ConfigDict) else None
  return value


def _problem(config: ml_collections.ConfigDict) -> tuple[str, str] | None:
  """(field, what is wrong) of the first field training cannot use, else None."""
  for field, wanted, test in _CHECKS:
    value = _value(config, field)
    if not test(value):
      return field, f'must be {wanted}, got {value!r}'
  for field, choices in _CHOICES + (('best_metric', best_metrics(config.data.dataset)),):
    value = _value(config, field)
    if value not in choices:
      return field, f'must be one of {", ".join(map(repr, choices))}, got {value!r}'
  return _combination(config)


def best_metrics(dataset: str) -> tuple[str, ...]:
  """The validation metrics of `dataset`'s protocol: what `best_metric` may name."""
  return QFVS_METRICS if dataset == 'qfvs' else KEYSHOT_METRICS


def _combination(config: ml_collections.ConfigDict) -> tuple[str, str] | None:
  """A field whose value does not fit the others' (heads that do not divide the width, an
  option that does not apply to the dataset), else None."""
  model, data = config.model, config.data
  names = config.evaluators
  if not isinstance(names, (tuple, list)) or 'val' not in names or set(names) - set(EVALUATORS):
    return 'evaluators', f"must list 'val' and maybe 'test' (of {EVALUATORS}), got {names!r}"
  if model.width % model.num_heads:
    return (
      'model.width',
      f'must be divisible by model.num_heads ({model.num_heads}), got {model.width}',
    )
  if model.cross_modal == 'attention' and model.width % model.language_heads:
    return (
      'model.width',
      f'must be divisible by model.language_heads ({model.language_heads}), got {model.width}',
    )
  if data.splits_file is not None and data.dataset not in SPLITS_FILE_DATASETS:
    return (
      'data.splits_file',
      f'does not apply to data.dataset={data.dataset!r} (split files are '
      f'{"/".join(SPLITS_FILE_DATASETS)} splits); remove it',
    )
  if data.setting != 'standard' and data.dataset not in SPLITS_FILE_DATASETS:
    return (
      'data.setting',
      f"{data.setting!r} does not apply to data.dataset={data.dataset!r} (only 'standard')",
    )
  return None


def check_config(config: ml_collections.ConfigDict, source: str | None = None) -> None:
  """Raises ValueError naming the first field whose value training cannot use.

  Without `source` the message names the override (`--config.FIELD`); with one (a saved
  config.json) it starts with that file.
  """
  problem = _problem(config)
  if problem is None:
    return
  field, what = problem
  if source:
    raise ValueError(f'{source}: {field} {what}')
  raise ValueError(f'config.{field} {what} (--config.{field})')

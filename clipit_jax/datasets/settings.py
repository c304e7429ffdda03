"""The field's data settings for SumMe and TVSum: Standard, Augment and Transfer.

- standard: 5 seeded random 80/20 splits of the target dataset;
- augment: the training part of the standard split plus all of the other three datasets;
- transfer: train on the other three datasets, test on the whole target.

These settings are the field's protocol for these four datasets: what each dataset is
(its builder, features, F1 over users, loader) is its spec in the registry (registry.py).

Splits depend only on the sorted video keys and fixed seeds, so they are the same on
every machine; `split_fingerprint` names a split in one short string for the records.
A validation subset (for choosing the best checkpoint) is carved from the training
videos only, so test videos never steer training.
"""

import hashlib
import json

import numpy as np

BENCHMARKS = ('summe', 'tvsum', 'youtube', 'ovp')
TARGETS = ('summe', 'tvsum')
SETTINGS = ('standard', 'augment', 'transfer')
NUM_STANDARD_SPLITS = 5
TRAIN_FRACTION = 0.8
SPLIT_SEED = 12345  # Part of the protocol: changing it changes every split.

VideoRef = tuple[str, str]  # (dataset, video key)


def standard_splits(
  keys: list[str],
  num_splits: int = NUM_STANDARD_SPLITS,
  train_fraction: float = TRAIN_FRACTION,
  seed: int = SPLIT_SEED,
) -> list[dict[str, list[str]]]:
  """`num_splits` random train/test partitions of `keys` (deterministic, sorted lists)."""
  keys = sorted(keys)
  if len(keys) < 2:
    raise ValueError(f'need at least 2 videos to split, got {len(keys)}')
  n_train = min(len(keys) - 1, max(1, int(round(train_fraction * len(keys)))))
  splits = []
  for i in range(num_splits):
    order = np.random.default_rng([seed, i]).permutation(len(keys))
    splits.append(
      dict(
        train=sorted(keys[j] for j in order[:n_train]),
        test=sorted(keys[j] for j in order[n_train:]),
      )
    )
  return splits


def hold_out_validation(
  train: list[VideoRef], fraction: float, seed: int = SPLIT_SEED
) -> tuple[list[VideoRef], list[VideoRef]]:
  """Splits training videos into (train, validation); at least one of each when possible."""
  train = sorted(train)
  if fraction <= 0 or len(train) < 2:
    return train, []
  n_val = min(len(train) - 1, max(1, int(round(fraction * len(train)))))
  order = np.random.default_rng([seed, len(train)]).permutation(len(train))
  val = {train[j] for j in order[:n_val]}
  return [v for v in train if v not in val], sorted(val)


def resolve_setting(
  target: str, setting: str, split: int, keys: dict[str, list[str]]
) -> dict[str, list[VideoRef]]:
  """Train and test videos of a setting.

  Args:
    target: 'summe' or 'tvsum' (the dataset evaluated on); any dataset in `keys` works
      for 'standard'.
    setting: 'standard', 'augment' or 'transfer'.
    split: which of the standard splits (0-4); ignored by 'transfer'.
    keys: the video keys of every dataset the setting reads.
  Returns:
    {'train': [...], 'test': [...]} of (dataset, key) pairs, sorted.
  """
  if setting not in SETTINGS:
    raise ValueError(f'unknown setting {setting!r}; expected one of {SETTINGS}')
  if target not in keys:
    raise ValueError(f'no videos of the target dataset {target!r}')
  others = [d for d in BENCHMARKS if d != target]
  if setting != 'standard':
    absent = [d for d in others if d not in keys]
    if absent:
      raise ValueError(f'the {setting} setting also needs {", ".join(absent)}')
  extra = [(d, k) for d in others for k in sorted(keys[d])] if setting != 'standard' else []
  if setting == 'transfer':
    return dict(train=sorted(extra), test=[(target, k) for k in sorted(keys[target])])
  if not 0 <= split < NUM_STANDARD_SPLITS:
    raise ValueError(f'split must be in [0, {NUM_STANDARD_SPLITS}), got {split}')
  chosen = standard_splits(keys[target])[split]
  return dict(
    train=sorted([(target, k) for k in chosen['train']] + extra),
    test=[(target, k) for k in chosen['test']],
  )


def split_fingerprint(videos: list[VideoRef]) -> str:
  """A short stable hash of a list of videos, to record which split was used."""
  return hashlib.sha256(json.dumps(sorted(videos)).encode()).hexdigest()[:16]

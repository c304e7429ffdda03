"""The field's split files: every format and key form, the videos they select, one-line errors."""

import hashlib
import os
import subprocess
import sys

import pytest

from clipit_jax.datasets import errors
from clipit_jax.datasets import loading
from clipit_jax.datasets import settings
from clipit_jax.datasets import split_files
from testutil import ROOT, TINY_MODEL, path_key, stem_key, tiny_config
from testutil import write_splits_file as write

# The stand-ins of the data_dir fixture: 6 videos of each benchmark.
VIDEOS = [f'video_{i}' for i in range(1, 7)]
KEYS = {d: VIDEOS for d in settings.BENCHMARKS}


@pytest.fixture
def data_dir(standin_data_dir):
  return standin_data_dir


def test_the_three_key_forms():
  assert split_files.parse_key('video_7', 'summe') == ('summe', 'video_7')
  assert split_files.parse_key(stem_key('ovp', 'video_3'), 'summe') == ('ovp', 'video_3')
  assert split_files.parse_key(path_key('youtube', 'video_41'), 'tvsum') == ('youtube', 'video_41')
  assert split_files.parse_key('/abs/eccv16_dataset_tvsum_google_pool5.h5/video_2', 'summe') == (
    'tvsum',
    'video_2',
  )


def test_json_in_either_key_order_and_yaml_read_alike(tmp_path):
  entries = [
    dict(train_keys=['video_1', 'video_2'], test_keys=['video_3']),
    dict(test_keys=['video_2'], train_keys=['video_1', 'video_3']),
  ]  # PGL-SUM's order.
  json_path = write(tmp_path / 'summe_splits.json', entries)
  yaml_path = write(tmp_path / 'summe.yml', entries)
  for path in (json_path, yaml_path):
    splits = split_files.read(path)
    assert splits.entries == [
      dict(train=['video_1', 'video_2'], test=['video_3']),
      dict(train=['video_1', 'video_3'], test=['video_2']),
    ]
    with open(path, 'rb') as f:
      assert splits.sha256 == hashlib.sha256(f.read()).hexdigest()
    assert splits.record(1) == dict(
      name=os.path.basename(path), path=path, sha256=splits.sha256, entry=1
    )


def test_an_augment_entry_maps_keys_through_the_file_stem(tmp_path):
  train_keys = (
    [stem_key('summe', v) for v in VIDEOS[:4]]
    + [stem_key('tvsum', 'video_1')]
    + [stem_key('ovp', 'video_6'), stem_key('youtube', 'video_2')]
  )
  path = write(
    tmp_path / 'summe_aug_splits.json',
    [dict(train_keys=train_keys, test_keys=[stem_key('summe', 'video_5')])],
  )
  splits = split_files.read(path)
  assert split_files.entry_datasets(splits, 0, 'summe') == ['ovp', 'summe', 'tvsum', 'youtube']
  chosen = split_files.split_videos(splits, 0, 'summe', 'augment', KEYS)
  assert chosen == dict(
    train=sorted(
      [('summe', v) for v in VIDEOS[:4]]
      + [('tvsum', 'video_1'), ('ovp', 'video_6'), ('youtube', 'video_2')]
    ),
    test=[('summe', 'video_5')],
  )


def _error(tmp_path, entries, setting='standard', target='summe', name='splits.json'):
  path = write(tmp_path / name, entries)
  with pytest.raises(errors.DatasetError) as e:
    splits = split_files.read(path)
    split_files.entry_datasets(splits, 0, target)
    split_files.split_videos(splits, 0, target, setting, KEYS)
  message = str(e.value)
  assert '\n' not in message
  return message


def test_bad_entries_are_one_line_errors_that_name_the_problem(tmp_path):
  message = _error(
    tmp_path, [dict(train_keys=['eccv16_dataset_foo_google_pool5/video_1'], test_keys=['video_2'])]
  )
  assert 'splits.json entry 0' in message and 'eccv16_dataset_foo_google_pool5' in message
  message = _error(tmp_path, [dict(train_keys=VIDEOS[:5], test_keys=['video_6', 'video_99'])])
  assert 'no such video: summe/video_99' in message
  message = _error(tmp_path, [dict(train_keys=VIDEOS, test_keys=[])])
  assert 'test set is empty' in message
  message = _error(tmp_path, [dict(train_keys=VIDEOS[:5], test_keys=['video_5', 'video_6'])])
  assert 'in both train and test: summe/video_5' in message
  message = _error(
    tmp_path, [dict(train_keys=VIDEOS[:5], test_keys=['video_6'])], setting='augment'
  )
  assert 'training on summe does not fit the augment setting of summe' in message
  message = _error(
    tmp_path,
    [dict(train_keys=[stem_key('tvsum', 'video_1')], test_keys=[stem_key('tvsum', 'video_2')])],
  )
  assert 'tests on tvsum videos, but the target dataset is summe' in message
  # Plain keys name no dataset: a file of another dataset must not pass unseen.
  message = _error(tmp_path, [dict(train_keys=VIDEOS[:3], test_keys=['video_4'])])
  assert 'cover 4 of the 6 summe videos (not video_5, video_6)' in message


@pytest.mark.parametrize(
  'name, text, expected',
  [
    ('s.txt', '[]', 'must be .json, .yml or .yaml'),
    ('s.json', '[{"train_keys": ["video_1"]', 'cannot be read as JSON'),
    ('s.yml', '- train_keys: [video_1\n', 'cannot be read as YAML'),
    ('s.json', '{"train_keys": []}', 'expected a list of splits'),
    (
      's.json',
      '[{"train_keys": ["video_1"], "test": ["video_2"]}]',
      's.json entry 0: needs "test_keys"',
    ),
  ],
)
def test_unreadable_files_are_one_line_errors(tmp_path, name, text, expected):
  (tmp_path / name).write_text(text)
  with pytest.raises(errors.DatasetError, match=expected) as e:
    split_files.read(str(tmp_path / name))
  assert '\n' not in str(e.value)


def test_an_entry_out_of_range_names_the_entries(tmp_path):
  path = write(tmp_path / 's.json', [dict(train_keys=VIDEOS[:5], test_keys=['video_6'])])
  with pytest.raises(errors.DatasetError, match='s.json has entries 0-0, got split=3'):
    split_files.entry_datasets(split_files.read(path), 3, 'summe')


@pytest.mark.parametrize(
  'setting, name, key',
  [
    ('standard', 'tvsum_splits.json', lambda d, v: v),
    ('augment', 'tvsum_aug_splits.json', stem_key),
    ('transfer', 'tvsum_trans.yml', path_key),
  ],
)
def test_loading_selects_exactly_the_listed_videos(data_dir, tmp_path, setting, name, key):
  others = [d for d in settings.BENCHMARKS if d != 'tvsum']
  train_refs = {
    'standard': [('tvsum', v) for v in VIDEOS[1:]],
    'augment': [('tvsum', v) for v in VIDEOS[1:4]] + [(d, 'video_2') for d in others],
    'transfer': [(d, v) for d in others for v in VIDEOS[:3]],
  }[setting]
  test_refs = [('tvsum', v) for v in VIDEOS] if setting == 'transfer' else [('tvsum', 'video_1')]
  if setting == 'augment':  # A test video that our seeded splits would train on.
    test_refs.append(('tvsum', 'video_6'))
  decoy = dict(
    train_keys=[key('tvsum', v) for v in VIDEOS[:5]], test_keys=[key('tvsum', 'video_6')]
  )
  if setting == 'transfer':
    decoy = dict(train_keys=[key('summe', 'video_1')], test_keys=[key('tvsum', 'video_1')])
  path = write(
    tmp_path / name,
    [
      decoy,
      dict(
        test_keys=[key(d, v) for d, v in test_refs], train_keys=[key(d, v) for d, v in train_refs]
      ),
    ],
  )
  config = tiny_config('tvsum_standard', data_dir)
  config.data.update(dict(setting=setting, split=1, splits_file=path, validation_fraction=0.25))
  data = loading.load_data(config)
  refs = {part: [v.ref for v in videos] for part, videos in data.items()}
  assert sorted(refs['train'] + refs['validation']) == sorted(train_refs)
  assert refs['test'] == sorted(test_refs)
  assert (refs['train'], refs['validation']) == settings.hold_out_validation(
    sorted(train_refs), 0.25
  )
  assert refs['validation'] and loading.num_splits(config.data) == 2


def test_train_py_names_a_bad_file_in_one_line(data_dir, tmp_path):
  path = write(
    tmp_path / 'tvsum_splits.json', [dict(train_keys=VIDEOS[:5], test_keys=['video_5', 'video_6'])]
  )
  out = subprocess.run(
    [
      sys.executable,
      str(ROOT / 'train.py'),
      '--config=configs/tvsum_standard.py',
      f'--workdir={tmp_path / "run"}',
      f'--config.data.data_dir={data_dir}',
      f'--config.data.splits_file={path}',
      *TINY_MODEL,
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  assert out.returncode == 1 and 'Traceback' not in out.stderr
  assert out.stderr.strip().splitlines()[-1] == (
    'train.py: error: tvsum_splits.json entry 0: in both train and test: tvsum/video_5'
  )

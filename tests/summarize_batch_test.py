"""Tests for many videos in one command: clipit_jax.summarize.batch and Summarizer.summarize_many."""

import contextlib
import csv
import io
import json
import os
import shutil

import pytest

from clipit_jax.summarize import batch
from clipit_jax.summarize import command
from clipit_jax.summarize import outputs
from clipit_jax.summarize import summarizer as summarize
from testutil import BLUES, REDS, scenes_video

# Its tests share module-scoped fixtures: one worker runs them all (pytest -n --dist loadgroup).
pytestmark = pytest.mark.xdist_group('summarize_batch')

SETTINGS = ['--query', 'a red square', '--proportion', '0.5']


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  """x/a.mp4 (3 s), y/a.mp4 (4 s), c.mkv (3 s), a corrupt broken.mp4, and files to pass over."""
  d = tmp_path_factory.mktemp('corpus')
  scenes_video(d / 'x' / 'a.mp4', REDS[:2] + BLUES[:1], seconds=1.0)
  scenes_video(d / 'y' / 'a.mp4', BLUES, seconds=1.0)
  scenes_video(d / 'c.mkv', REDS[:3], seconds=1.0)  # An mp4 by content; found by its name.
  (d / 'broken.mp4').write_text('not a video\n' * 20)
  (d / 'notes.txt').write_text('not a video either\n')
  shutil.copy(d / 'c.mkv', d / '.hidden.mp4')
  return d


def run_cli(args):
  """(exit status, stdout, stderr) of `clipit-summarize args`."""
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
      status = command.main(args)
    except SystemExit as e:
      status = e.code
  return status, out.getvalue(), err.getvalue()


def batch_args(corpus, *inputs):
  """The command line of a batch of `inputs` into corpus/out (inside a searched directory)."""
  return [
    *map(str, inputs),
    *SETTINGS,
    '--clip-model',
    'tiny',
    '--cache-dir',
    str(corpus.parent / f'{corpus.name}_features'),
    '--no-progress',
    '--out',
    str(corpus / 'out'),
  ]


def read_index(out):
  rows = json.loads((out / 'index.json').read_text())['videos']
  with open(out / 'index.csv', newline='') as f:
    assert [r['name'] for r in csv.DictReader(f)] == [r['name'] for r in rows]
  return rows


def output_mtimes(directory):
  """Modification times of the outputs (not the lock file, rewritten by each writer)."""
  return {p.name: p.stat().st_mtime_ns for p in directory.iterdir() if p.name != outputs.LOCK_FILE}


@pytest.fixture(scope='module')
def first_run(corpus):
  """The directory summarized in one command: (status, stdout, stderr, index rows)."""
  status, out, err = run_cli(batch_args(corpus, corpus))
  return status, out, err, read_index(corpus / 'out')


def test_a_directory_in_one_command_reports_the_corrupt_file(corpus, first_run):
  status, out, err, rows = first_run
  assert status == 1
  assert err.splitlines() == [
    f'clipit-summarize: failed: {corpus / "broken.mp4"}: not a readable video (corrupt, '
    'truncated or not a video: [Errno 1094995529] Invalid data found when processing input: '
    f"'{corpus / 'broken.mp4'}'); re-encode or re-download it."
  ]
  assert [(r['name'], r['video'], r['status']) for r in rows] == [
    ('broken', str(corpus / 'broken.mp4'), 'failed'),
    ('c', str(corpus / 'c.mkv'), 'ok'),
    ('a', str(corpus / 'x' / 'a.mp4'), 'ok'),
    ('a_2', str(corpus / 'y' / 'a.mp4'), 'ok'),
  ]
  assert 'not a readable video' in rows[0]['reason'] and rows[0]['duration'] is None
  for row, seconds in zip(rows[1:], (3.0, 3.0, 4.0)):
    data = json.loads((corpus / 'out' / row['name'] / 'summary.json').read_text())
    assert data['video'] == row['video'] and data['query'] == 'a red square'
    assert row['duration'] == pytest.approx(seconds) == data['duration']
    assert (row['selected_shots'], row['shots']) == (
      len(data['selected_shots']),
      len(data['shots']),
    )
    assert sorted(os.listdir(corpus / 'out' / row['name'])) == sorted(
      [*summarize.OUTPUT_FILES.values(), outputs.LOCK_FILE]
    )
  lines = out.splitlines()
  assert lines[0].split() == ['video', 'status', 'duration', '(s)', 'shots', 'selected', 'seconds']
  assert lines[1].split()[:4] == ['broken', 'failed', '-', '-']
  assert lines[2].split()[:6] == ['c', 'ok', '3.0', str(rows[1]['selected_shots']), 'of', '2']
  assert lines[-1].startswith('4 videos: 3 summarized, 0 skipped (already complete), 1 failed')


def test_running_again_finishes_an_interrupted_batch(corpus, first_run):
  del first_run  # Its outputs are in corpus/out.
  out = corpus / 'out'
  (out / 'c' / 'summary.json').unlink()  # Interrupted before c's summary.json was moved in.
  before = {name: output_mtimes(out / name) for name in ('a', 'a_2')}
  (out / 'a' / '.summary-killed').mkdir()  # A writer killed (-9) while staging a's files.
  status, _, err = run_cli(batch_args(corpus, corpus))
  assert status == 1 and len(err.splitlines()) == 1  # The corrupt file again.
  rows = read_index(out)
  assert [(r['name'], r['status']) for r in rows] == [
    ('broken', 'failed'),
    ('c', 'ok'),
    ('a', 'skipped'),
    ('a_2', 'skipped'),
  ]
  assert rows[2]['duration'] == 3.0 and rows[2]['shots'] is not None
  assert {name: output_mtimes(out / name) for name in ('a', 'a_2')} == before
  assert (out / 'c' / 'summary.json').is_file()
  assert sorted(os.listdir(out)) == sorted(  # Nothing else.
    ['a', 'a_2', 'c', 'index.csv', 'index.json', outputs.LOCK_FILE]
  )


def test_summarize_many_in_python(corpus, first_run, tmp_path):
  del first_run  # For its feature cache.
  summarizer = summarize.Summarizer.training_free(
    'tiny', proportion=0.5, cache_dir=corpus.parent / f'{corpus.name}_features', progress=False
  )
  video = str(corpus / 'x' / 'a.mp4')
  results = list(summarizer.summarize_many([video, corpus / 'broken.mp4'], query='a red square'))
  assert [(r.name, r.status, r.out) for r in results] == [
    ('a', 'ok', None),
    ('broken', 'failed', None),
  ]
  assert results[0].summary.query == 'a red square' and results[0].error is None
  assert results[1].summary is None and 'not a readable video' in results[1].error
  shutil.copytree(corpus / 'out' / 'a', tmp_path / 'a')  # Complete outputs of `video`.

  def again(query, path=video):
    return next(summarizer.summarize_many([path], query, out_dir=tmp_path))

  assert again('a red square').status == 'skipped'
  assert again('a blue square').status == 'ok'  # Another request: made again.
  assert json.loads((tmp_path / 'a' / 'summary.json').read_text())['query'] == 'a blue square'
  os.utime(video)  # Touched, the same bytes: still complete.
  assert again('a blue square').status == 'skipped'


def test_a_video_replaced_by_an_older_file_is_summarized_again(corpus, first_run, tmp_path):
  del first_run  # For its feature cache.
  summarizer = summarize.Summarizer.training_free(
    'tiny', proportion=0.5, cache_dir=corpus.parent / f'{corpus.name}_features', progress=False
  )
  video = tmp_path / 'in' / 'a.mp4'
  video.parent.mkdir()
  shutil.copy(corpus / 'x' / 'a.mp4', video)
  first = next(summarizer.summarize_many([video], 'red', out_dir=tmp_path / 'out'))
  assert first.status == 'ok' and first.summary.duration == 3.0
  os.utime(corpus / 'y' / 'a.mp4', (1e9, 1e9))  # Older than the summary.
  shutil.copy2(corpus / 'y' / 'a.mp4', video)  # `cp -p`: another video, an older mtime.
  second = next(summarizer.summarize_many([video], 'red', out_dir=tmp_path / 'out'))
  assert second.status == 'ok' and second.summary.duration == 4.0
  data = json.loads((tmp_path / 'out' / 'a' / 'summary.json').read_text())
  assert data['duration'] == 4.0 and data['video_sha256'] == outputs.content_sha256(video)
  third = next(summarizer.summarize_many([video], 'red', out_dir=tmp_path / 'out'))
  assert third.status == 'skipped'


def test_a_list_and_a_pattern_in_one_command(corpus, first_run, tmp_path):
  del first_run  # For its feature cache.
  listing = tmp_path / 'todo.txt'
  # Saved with a byte-order mark (as Windows' Notepad may): the first path is read as it is.
  listing.write_text(f'\ufeff{corpus / "y" / "a.mp4"}\n# videos to do\n\n{corpus / "c.mkv"}\n')
  args = batch_args(corpus, corpus / 'x' / '*.mp4', '--list', listing)
  args[-1] = str(tmp_path / 'out')
  status, out, err = run_cli(args)
  assert (status, err) == (0, '')
  rows = read_index(tmp_path / 'out')
  assert [(r['name'], r['video'], r['status']) for r in rows] == [
    ('a', str(corpus / 'x' / 'a.mp4'), 'ok'),
    ('a_2', str(corpus / 'y' / 'a.mp4'), 'ok'),
    ('c', str(corpus / 'c.mkv'), 'ok'),
  ]
  assert out.splitlines()[-1].startswith('3 videos: 3 summarized')


def test_find_videos(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  for name in ('d/b.MP4', 'd/sub/a.mkv', 'd/.hidden/x.mp4', 'd/._y.mp4', 'd/notes.txt'):
    os.makedirs(os.path.dirname(name), exist_ok=True)
    open(name, 'w').close()
  os.makedirs('d/out/a')
  open('d/out/a/summary.mp4', 'w').close()
  assert batch.find_videos(['d'], exclude='d/out') == ['d/b.MP4', 'd/sub/a.mkv']
  assert batch.find_videos(['d']) == ['d/b.MP4', 'd/out/a/summary.mp4', 'd/sub/a.mkv']
  with pytest.raises(ValueError, match='d/out/a: the input directory is inside --out .*d/out'):
    batch.find_videos(['d/out/a'], exclude='d/out')  # The outputs are never inputs.
  pattern = ['d/**/*.m*']  # Files as the shell would match them, the output left out.
  assert batch.find_videos(pattern, exclude='d/out') == ['d/sub/a.mkv']
  assert batch.find_videos(['d/su*']) == ['d/sub/a.mkv']  # A matched directory is searched.
  (tmp_path / 'list.txt').write_text('# comment\n\n  d/notes.txt  \nd/sub/a.mkv\nd/missing.mp4\n')
  assert batch.find_videos(['d/sub', 'd/./sub/a.mkv'], 'list.txt') == [
    'd/sub/a.mkv',  # Once, though reached three times.
    'd/notes.txt',  # Named: taken whatever its extension.
    'd/missing.mp4',  # Named: fails alone when summarized.
  ]


@pytest.mark.parametrize(
  'args, words',
  [
    (['d/none'], 'd/none: no video files in the directory (looked for .mp4 '),
    (['d/*.mov'], 'd/*.mov: the pattern matches no video file'),
    (['--list', 'nope.txt'], '--list nope.txt: cannot read it (No such file or directory)'),
    (['--list', 'empty.txt'], 'no videos given: pass video files, directories, patterns or'),
    (['a.mp4', 'b.mp4', '--captions', 'a.srt'], "--captions are one video's captions;"),
  ],
)
def test_batch_usage_errors_are_one_line_before_the_work(args, words, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  os.makedirs('d/none')
  open('d/none/notes.txt', 'w').close()
  open('empty.txt', 'w').close()
  status, out, err = run_cli([*args, '--query', 'red', '--out', 'out'])
  assert (status, out) == (1, '')
  assert err.startswith(f'clipit-summarize: error: {words}') and len(err.splitlines()) == 1, err
  assert not os.path.exists('out')


def test_out_equal_to_the_input_directory_says_so(corpus, capsys):
  status, out, err = run_cli([str(corpus / 'x'), '--query', 'red', '--out', str(corpus / 'x')])
  assert (status, out) == (1, '')
  assert err == (
    f'clipit-summarize: error: {corpus / "x"}: the input directory is --out itself, whose '
    f'contents are outputs, never inputs; pass another --out (e.g. {corpus / "x" / "summaries"})\n'
  )
  assert sorted(os.listdir(corpus / 'x')) == ['a.mp4']


def test_no_input_is_a_usage_error():
  status, _, err = run_cli(['--query', 'red', '--out', 'out'])
  assert status == 2 and 'give a video file (or several' in err


def test_output_names_are_unique_and_deterministic():
  paths = ['x/a.mp4', 'y/a.mp4', 'a_2.mkv', 'z/A.mov', 'b.mp4', 'index.json.mp4']
  names = ['a', 'a_2', 'a_2_2', 'A_3', 'b', 'index.json_2']
  assert batch.output_names(paths) == names
  assert batch.output_names(paths) == names  # The same command, the same names.


def test_is_batch(tmp_path):
  video = tmp_path / 'v.mp4'
  video.write_bytes(b'x')
  assert not batch.is_batch([str(video)], None)
  assert not batch.is_batch([str(tmp_path / 'missing.mp4')], None)  # Fails as one video.
  assert batch.is_batch([str(tmp_path)], None)
  assert batch.is_batch([str(tmp_path / '*.mp4')], None)
  assert batch.is_batch([str(video), str(video)], None)
  assert batch.is_batch([str(video)], 'list.txt')

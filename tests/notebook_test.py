"""notebooks/quickstart.ipynb runs top to bottom, offline (nbclient; a few tens of seconds)."""

import base64
import json

import pytest

from testutil import ROOT

nbclient = pytest.importorskip('nbclient', reason='needs the test extra: pip install -e ".[test]"')
nbformat = pytest.importorskip('nbformat', reason='needs the test extra: pip install -e ".[test]"')
pytest.importorskip('ipykernel', reason='needs the test extra: pip install -e ".[test]"')

NOTEBOOK = ROOT / 'notebooks' / 'quickstart.ipynb'


def _outputs(cell, kind):
  return [o for o in cell.outputs if o.output_type in kind]


def test_quickstart_runs_top_to_bottom(tmp_path):
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(
    notebook, timeout=600, kernel_name='python3', resources={'metadata': {'path': str(tmp_path)}}
  )
  client.execute()  # Raises CellExecutionError, with the cell and its traceback, on an error.
  code = [c for c in notebook.cells if c.cell_type == 'code']
  assert all(line.startswith('#') for line in code[0].source.splitlines())  # Install: commented.
  work = tmp_path / 'quickstart_work'
  epochs = [json.loads(line)['epoch'] for line in (work / 'run/metrics.jsonl').open()]
  assert epochs == list(range(1, 5))

  summary = json.loads((work / 'summary/summary.json').read_text())
  assert summary['method'] == 'CLIP-It checkpoint' and summary['mode'] == 'query'
  assert summary['settings']['clip_model'] == 'tiny'
  printed = ''.join(o.text for c in code for o in _outputs(c, ('stream',)))
  assert f'query {summary["query"]!r}: kept ' in printed
  assert 'mean: F1 ' in printed

  shown = [o.data for o in _outputs(code[-1], ('display_data',))]
  plot = (work / 'summary/scores.png').read_bytes()
  assert base64.b64decode(shown[0]['image/png']) == plot
  video = base64.b64encode((work / 'summary/summary.mp4').read_bytes()).decode('ascii')
  assert video in shown[1]['text/html'] and '<video' in shown[1]['text/html']

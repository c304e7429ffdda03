"""README.md and docs/: the README stays a front door, and every relative link resolves."""

import pathlib
import re

import pytest

from testutil import ROOT

PAGES = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
LINK = re.compile(r'\]\(([^)\s]+)\)')


def anchors(page: pathlib.Path) -> set[str]:
  """GitHub's heading anchors of a Markdown page (outside code blocks)."""
  text = re.sub(r'```.*?```', '', page.read_text(), flags=re.S)
  headings = re.findall(r'^#+ (.+)$', text, flags=re.M)
  return {re.sub(r'[^\w\- ]', '', h.strip().lower()).replace(' ', '-') for h in headings}


def links(page: pathlib.Path) -> list[str]:
  text = re.sub(r'```.*?```', '', page.read_text(), flags=re.S)
  return [t for t in LINK.findall(text) if not re.match(r'[a-z]+:', t)]


@pytest.mark.parametrize('page', PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
  broken = []
  for target in links(page):
    path, _, anchor = target.partition('#')
    file = (page.parent / path).resolve() if path else page
    if not file.exists() or (anchor and file.suffix == '.md' and anchor not in anchors(file)):
      broken.append(target)
  assert not broken, f'{page.name}: broken links {broken}'


def test_the_readme_is_a_front_door():
  text = (ROOT / 'README.md').read_text()
  assert len(text.splitlines()) <= 350
  assert not re.findall(r'\b20\d\d-\d\d-\d\d\b|\b\d\d:\d\d UTC\b', text)  # Dates live in docs/.

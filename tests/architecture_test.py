"""The package's architecture, read from its source: layers, import direction, function size.

Every module of clipit_jax/ is parsed (ast); its imports are every `import` and `from ...
import` statement anywhere in it (functions included; not under `if TYPE_CHECKING:`).
Importing `a.b.c` imports `a` and `a.b` too, so package `__init__` files are modules of
the graph. The layers (docs: README's layout):

  base:    files, cli, arrays
  media:   clipit_jax/media/ (video I/O, encoders, captions), above the base only
  core:    models, losses, training, datasets/, evaluation, inference
  product: clipit_jax/summarize/, through inference, never the trainer or dataset loaders
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = 'clipit_jax'
MAX_FUNCTION_LINES = 70

BASE = {'clipit_jax', 'clipit_jax.files', 'clipit_jax.cli', 'clipit_jax.arrays'}
TRAINER = {'clipit_jax.train', 'clipit_jax.train_step', 'clipit_jax.parallel', 'clipit_jax.run_dir'}
PRODUCT_PREFIX = 'clipit_jax.summarize'
# The core modules that must not reach up into the product (nor the demo, which is in it).
RESEARCH_CORE_PREFIXES = (
  'clipit_jax.datasets',
  'clipit_jax.models',
  'clipit_jax.losses',
  'clipit_jax.evaluat',  # evaluators (and any evaluation* module)
  'clipit_jax.protocol',
  'clipit_jax.input_pipeline',
)


def module_name(path: pathlib.Path) -> str:
  """`clipit_jax/datasets/loading.py` -> 'clipit_jax.datasets.loading'; a package's
  `__init__.py` is the package."""
  parts = list(path.relative_to(ROOT).with_suffix('').parts)
  if parts[-1] == '__init__':
    parts.pop()
  return '.'.join(parts)


def _modules() -> dict[str, pathlib.Path]:
  return {module_name(p): p for p in sorted((ROOT / PACKAGE).rglob('*.py'))}


MODULES = _modules()


def _prefixes(name: str) -> list[str]:
  """'a.b.c' -> ['a', 'a.b', 'a.b.c']: what importing it runs."""
  parts = name.split('.')
  return ['.'.join(parts[: i + 1]) for i in range(len(parts))]


def _type_checking_nodes(tree: ast.AST) -> set[int]:
  """ids of the nodes under `if TYPE_CHECKING:` (never run)."""
  skipped = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.If):
      test = node.test
      name = test.id if isinstance(test, ast.Name) else getattr(test, 'attr', None)
      if name == 'TYPE_CHECKING':
        skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
  return skipped


def _resolve_relative(module: str, is_package: bool, node: ast.ImportFrom) -> str:
  base = module.split('.') if is_package else module.split('.')[:-1]
  base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
  return '.'.join(base + ([node.module] if node.module else []))


def imports_of(module: str) -> set[str]:
  """The clipit_jax modules `module` imports (with their parent packages)."""
  path = MODULES[module]
  return imports_in(module, path.read_text(), is_package=path.name == '__init__.py')


def imports_in(module: str, source: str, *, is_package: bool = False) -> set[str]:
  """The clipit_jax modules the source of `module` imports (with their parent packages)."""
  tree = ast.parse(source, module)
  skipped = _type_checking_nodes(tree)
  found = set()
  for node in ast.walk(tree):
    if id(node) in skipped:
      continue
    if isinstance(node, ast.Import):
      for alias in node.names:
        found.update(_prefixes(alias.name))
    elif isinstance(node, ast.ImportFrom):
      base = _resolve_relative(module, is_package, node) if node.level else node.module
      found.update(_prefixes(base))
      found.update(f'{base}.{a.name}' for a in node.names if f'{base}.{a.name}' in MODULES)
  return {m for m in found if m in MODULES and m != module}


GRAPH = {m: imports_of(m) for m in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components of more than one module (Tarjan), sorted."""
  index, low, stack, on_stack, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        out.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return sorted(out)


def _violations(importers, forbidden) -> list[str]:
  return sorted(
    f'{m} imports {target}'
    for m in MODULES
    if importers(m)
    for target in GRAPH[m]
    if forbidden(target)
  )


# ------------------------------------------------------------------ the reader itself --


def test_the_reader_finds_imports_anywhere_with_their_parent_packages():
  source = (
    'import os\n'
    'from typing import TYPE_CHECKING\n'
    'from clipit_jax.datasets import registry\n'
    'if TYPE_CHECKING:\n'
    '  from clipit_jax import models\n'
    'def f():\n'
    '  import clipit_jax.media.video\n'
    '  from . import errors\n'
  )
  assert imports_in('clipit_jax.datasets.probe', source) == {
    'clipit_jax',
    'clipit_jax.datasets',
    'clipit_jax.datasets.registry',
    'clipit_jax.datasets.errors',
    'clipit_jax.media',
    'clipit_jax.media.video',
  }
  assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
  assert cycles({'a': {'b'}, 'b': set()}) == []


# ---------------------------------------------------------------------- the rules --


def test_no_import_cycle_between_modules():
  found = cycles(GRAPH)
  edges = [
    f'{m} -> {", ".join(sorted(t for t in GRAPH[m] if t in cycle))}'
    for cycle in found
    for m in cycle
  ]
  assert not found, 'import cycles:\n' + '\n'.join(edges)


def test_media_imports_only_the_base_layer():
  assert (
    _violations(
      lambda m: m.startswith('clipit_jax.media'),
      lambda t: not (t in BASE or t.startswith('clipit_jax.media')),
    )
    == []
  )


def test_the_research_core_does_not_import_the_product():
  assert (
    _violations(
      lambda m: m.startswith(RESEARCH_CORE_PREFIXES), lambda t: t.startswith(PRODUCT_PREFIX)
    )
    == []
  )


def _dataset_loaders() -> set[str]:
  """datasets.loading and every module of datasets/ that defines a TFDS builder."""
  return {'clipit_jax.datasets.loading'} | {
    m
    for m, path in MODULES.items()
    if m.startswith('clipit_jax.datasets.') and 'tensorflow_datasets' in path.read_text()
  }


def test_the_product_imports_neither_the_trainer_nor_the_dataset_loaders():
  loaders = _dataset_loaders()
  assert {'clipit_jax.datasets.summe_tvsum', 'clipit_jax.datasets.synthetic'} <= loaders
  assert (
    _violations(lambda m: m.startswith(PRODUCT_PREFIX), lambda t: t in TRAINER or t in loaders)
    == []
  )


def test_no_function_over_70_lines():
  long = [
    f'{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines'
    for module, path in MODULES.items()
    for node in ast.walk(ast.parse(path.read_text()))
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
  ]
  assert long == []

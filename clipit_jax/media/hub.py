"""Models from the Hugging Face hub or a local directory: files, weights, tokenizers; no torch.

`resolve(name)` finds a checkpoint's directory: a local directory as it is, a hub name in the
local cache first (`huggingface_hub`, `HF_HOME`), downloaded only when not `HF_HUB_OFFLINE` and
the hub is reachable. `load_params` reads `model.safetensors` (PyTorch layout, NumPy arrays) and
converts it to a Flax tree by name (`torch_to_flax`); a `flax_model.msgpack` loads as it is.
Every failure is one line (`ModelLoadError`) saying how to fix it.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import threading
import urllib.parse
from collections.abc import Callable, Sequence

import numpy as np

from clipit_jax import cli
from clipit_jax import files

WEIGHTS = 'model.safetensors'
FLAX_WEIGHTS = 'flax_model.msgpack'
TORCH_WEIGHTS = 'pytorch_model.bin'
# What a checkpoint directory needs besides its weights (what exists is downloaded).
SIDE_FILES = (
  'config.json',
  'generation_config.json',
  'preprocessor_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'vocab.json',
  'merges.txt',
)


class ModelLoadError(cli.UserError, RuntimeError):
  """Weights or tokenizer could not be loaded; the message says how to fix."""


def _env_true(name: str) -> bool:
  return os.environ.get(name, '').strip().upper() in {'1', 'ON', 'YES', 'TRUE'}


def is_offline() -> bool:
  """Whether `HF_HUB_OFFLINE` or `TRANSFORMERS_OFFLINE` is set (read now)."""
  return _env_true('HF_HUB_OFFLINE') or _env_true('TRANSFORMERS_OFFLINE')


def hub_reachable(timeout: float = 3.0) -> bool:
  """Whether a TCP connection to the hub endpoint opens within `timeout`.

  Avoids the hub client's minute of retries when there is no network. With a
  proxy configured the answer cannot be known here, so it says yes.
  """
  if any(os.environ.get(v) for v in ('HTTPS_PROXY', 'https_proxy', 'ALL_PROXY', 'all_proxy')):
    return True
  from huggingface_hub import constants  # pylint: disable=g-import-not-at-top

  url = urllib.parse.urlparse(constants.ENDPOINT)
  host = url.hostname or 'huggingface.co'
  port = url.port or (443 if url.scheme == 'https' else 80)
  result = []

  def connect():
    try:
      socket.create_connection((host, port), timeout=timeout).close()
      result.append(True)
    except OSError:
      pass

  thread = threading.Thread(target=connect, daemon=True)
  thread.start()
  thread.join(timeout)
  return bool(result)


def looks_like_path(name: str) -> bool:
  return (
    name.startswith(('/', '.', '~'))
    or name.count('/') > 1
    or os.sep != '/'
    and os.sep in name
    or pathlib.Path(name).expanduser().exists()
  )


def weight_files(directory: pathlib.Path) -> list[pathlib.Path]:
  """The checkpoint's safetensors files (one, or the shards an index names), else its msgpack."""
  index = directory / f'{WEIGHTS}.index.json'
  if index.is_file():
    shards = sorted(set(json.loads(index.read_text())['weight_map'].values()))
    return [directory / s for s in shards]
  for name in (WEIGHTS, FLAX_WEIGHTS):
    if (directory / name).is_file():
      return [directory / name]
  return []


def _no_weights(
  directory: pathlib.Path, what: str, source: str, flag: str, torch_only: bool | None = None
) -> ModelLoadError:
  """The error for a checkpoint without loadable weights; one with only a PyTorch pickle is told
  how to convert it (in place, where torch and transformers are installed)."""
  if torch_only is None:
    torch_only = (directory / TORCH_WEIGHTS).is_file()
  if torch_only:
    local = looks_like_path(source)
    get = '' if local else f'`hf download {source} --local-dir DIR`, then '
    target = source if local else 'DIR'
    return ModelLoadError(
      f'could not load {what} {source}: it has only {TORCH_WEIGHTS} (a PyTorch pickle); convert '
      f'it to model.safetensors once where torch is installed: {get}`python -c "from transformers '
      f"import AutoModel as M; M.from_pretrained('{target}').save_pretrained('{target}')\"`, "
      f'then pass `{flag} {target}`.'
    )
  return ModelLoadError(
    f'could not load {what} {source}: no {WEIGHTS} or {FLAX_WEIGHTS} in {directory}; pass a '
    f'directory written by save_pretrained, a hub name, or `{flag} tiny`.'
  )


def _snapshot(name: str, cache_dir, local: bool, patterns: Sequence[str]) -> pathlib.Path:
  from huggingface_hub import snapshot_download  # pylint: disable=g-import-not-at-top

  return pathlib.Path(
    snapshot_download(
      name, cache_dir=cache_dir, local_files_only=local, allow_patterns=list(patterns)
    )
  )


def _hub_patterns(name: str) -> tuple[list[str], bool]:
  """(The files to download: side files and the loadable weights, whether only a pickle is there)."""
  from huggingface_hub import list_repo_files  # pylint: disable=g-import-not-at-top

  names = set(list_repo_files(name))
  if WEIGHTS in names or f'{WEIGHTS}.index.json' in names:
    return [*SIDE_FILES, 'model*.safetensors', f'{WEIGHTS}.index.json'], False
  if FLAX_WEIGHTS in names:
    return [*SIDE_FILES, FLAX_WEIGHTS], False
  return list(SIDE_FILES), TORCH_WEIGHTS in names


def resolve(
  name_or_path: str,
  *,
  what: str,
  flag: str,
  hf_cache_dir: files.PathLike | None = None,
  weights: bool = True,
) -> tuple[pathlib.Path, str]:
  """(The checkpoint's directory, an id of its weights) for a local directory or a hub name.

  A hub name is looked up in the local cache first; the hub is only contacted when not
  offline and reachable. The id is `name@commit` for the hub, and the resolved path plus the
  weights' sizes and times for a directory (changed weights change it). With `weights` False
  only config.json is needed (and downloaded): a quick check that the name exists.

  Raises:
    ModelLoadError: the checkpoint cannot be found or has no loadable weights.
  """
  if looks_like_path(name_or_path):
    path = pathlib.Path(name_or_path).expanduser()
    if not path.is_dir():
      raise ModelLoadError(
        f'{what} directory {name_or_path} not found; pass a directory written by '
        f'save_pretrained, a hub name, or `{flag} tiny`.'
      )
    if weights and not weight_files(path):
      raise _no_weights(path, what, str(path), flag)
    return path, local_model_id(path)
  fix = (
    f'download it on a machine with network (`hf download {name_or_path}`) into HF_HOME, '
    f'pass a local directory with `{flag} PATH`, or use `{flag} tiny` for the offline demo'
  )
  cache = str(hf_cache_dir) if hf_cache_dir else None
  patterns = [*SIDE_FILES, 'model*.safetensors', f'{WEIGHTS}.index.json', FLAX_WEIGHTS]
  try:
    path = _snapshot(name_or_path, cache, True, patterns)
    if weight_files(path) or not weights and (path / 'config.json').is_file():
      return path, f'{name_or_path}@{path.name}'
    local_error = f'no weights for {name_or_path} in the local cache'
  except Exception as e:  # pylint: disable=broad-except
    local_error = cli.first_line(e)
  if is_offline() or not hub_reachable():
    why = 'HF_HUB_OFFLINE is set' if is_offline() else 'the hub is unreachable (no network)'
    raise ModelLoadError(
      f'could not load {what} {name_or_path!r}: not in the local Hugging Face cache and {why}; '
      f'{fix}.'
    ) from None
  try:
    wanted, torch_only = _hub_patterns(name_or_path) if weights else (['config.json'], False)
    path = _snapshot(name_or_path, cache, False, wanted)
  except Exception as e:  # pylint: disable=broad-except
    raise ModelLoadError(
      f'could not load {what} {name_or_path!r} ({cli.first_line(e)}; locally: {local_error}); '
      f'{fix}.'
    ) from None
  if weights and not weight_files(path):
    raise _no_weights(path, what, name_or_path, flag, torch_only)
  return path, f'{name_or_path}@{path.name}'


def local_model_id(directory: pathlib.Path) -> str:
  """Path plus size and mtime of the weights, so changed weights change it."""
  stats = []
  for name in (FLAX_WEIGHTS, WEIGHTS):
    f = directory / name
    if f.is_file():
      st = f.stat()
      stats.append(f'{name}:{st.st_size}:{st.st_mtime_ns}')
  return f'{directory.resolve()}|{"|".join(stats)}'


def read_json(directory: pathlib.Path, name: str) -> dict | None:
  """A JSON file of the checkpoint, or None when it has none."""
  path = directory / name
  return json.loads(path.read_text(encoding='utf-8')) if path.is_file() else None


# ----------------------------------------------------------------- weights --


def read_tensors(directory: pathlib.Path) -> dict[str, np.ndarray]:
  """Every tensor of the checkpoint's safetensors files, floats as float32 NumPy arrays."""
  import ml_dtypes  # pylint: disable=g-import-not-at-top,unused-import  # NumPy's bfloat16.
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top

  tensors = {}
  for path in weight_files(directory):
    try:
      with safe_open(str(path), framework='numpy') as f:
        for key in f.keys():
          value = f.get_tensor(key)
          floating = value.dtype.kind == 'f' or value.dtype == ml_dtypes.bfloat16
          tensors[key] = value.astype(np.float32) if floating else value
    except Exception as e:  # pylint: disable=broad-except  # SafetensorError: a truncated file.
      raise ModelLoadError(
        f'{path} is unreadable ({cli.first_line(e)}); download it again'
      ) from None
  return tensors


def _torch_leaf(flax_key: tuple[str, ...], conv1d: Callable[[tuple[str, ...]], bool]):
  """(PyTorch name, array -> Flax array) for one Flax parameter path."""
  *path, leaf = flax_key
  name = '.'.join(path)
  if leaf == 'kernel':
    if conv1d(flax_key):  # GPT-2's Conv1D stores [in, out] like Flax.
      return f'{name}.weight', lambda w: w
    return f'{name}.weight', lambda w: w.T if w.ndim == 2 else w.transpose(2, 3, 1, 0)
  if leaf in ('scale', 'embedding'):
    return f'{name}.weight', lambda w: w
  return '.'.join(flax_key), lambda w: w


def torch_to_flax(
  shapes: dict,
  tensors: dict[str, np.ndarray],
  *,
  prefix: str = '',
  conv1d: Callable[[tuple[str, ...]], bool] = lambda key: False,
  tied: dict[str, str] | None = None,
  source: str = 'checkpoint',
) -> dict:
  """The Flax tree of `shapes` filled from PyTorch-named `tensors`.

  Names follow the module paths (`a/b/kernel` <- `a.b.weight`, transposed; `scale` and
  `embedding` <- `weight`); `tied` maps a PyTorch name that may be absent to the one it is
  tied to (GPT-2's lm_head to wte). Tensors the model does not use (a pooler) are ignored.

  Raises:
    ModelLoadError: a parameter is missing or has the wrong shape.
  """
  from flax import traverse_util  # pylint: disable=g-import-not-at-top

  flat, params = traverse_util.flatten_dict(shapes), {}
  for key, shape in flat.items():
    name, convert = _torch_leaf(key, conv1d)
    name = prefix + name
    if name not in tensors and tied and name in tied:
      name = tied[name]
    if name not in tensors:
      raise ModelLoadError(f'{source}: no tensor {name} (is it the right kind of model?)')
    value = convert(tensors[name])
    if value.shape != tuple(shape.shape):
      raise ModelLoadError(
        f'{source}: {name} has shape {tensors[name].shape}, expected {tuple(shape.shape)} '
        'for its config.json'
      )
    params[key] = np.array(value, np.float32, order='C')
  return traverse_util.unflatten_dict(params)


def flax_to_torch(params: dict, *, conv1d: Callable[[tuple[str, ...]], bool] = lambda k: False):
  """The inverse of `torch_to_flax`: PyTorch-named NumPy arrays (to save as model.safetensors)."""
  from flax import traverse_util  # pylint: disable=g-import-not-at-top

  out = {}
  for key, value in traverse_util.flatten_dict(params).items():
    name, _ = _torch_leaf(key, conv1d)
    value = np.asarray(value, np.float32)
    if key[-1] == 'kernel' and not conv1d(key):
      value = value.T if value.ndim == 2 else value.transpose(3, 2, 0, 1)
    out[name] = np.array(value, order='C')
  return out


def read_flax_msgpack(path: pathlib.Path) -> dict:
  """The parameter tree of a `flax_model.msgpack` (transformers 4's Flax checkpoints)."""
  from flax import serialization  # pylint: disable=g-import-not-at-top

  try:
    return serialization.msgpack_restore(path.read_bytes())
  except Exception as e:  # pylint: disable=broad-except  # msgpack's errors: a truncated file.
    raise ModelLoadError(f'{path} is unreadable ({cli.first_line(e)}); download it again') from None


def check_shapes(shapes: dict, params: dict, source: str) -> dict:
  """`params` as float32 NumPy arrays when every leaf of `shapes` is there with its shape."""
  from flax import traverse_util  # pylint: disable=g-import-not-at-top

  flat = traverse_util.flatten_dict(params)
  out = {}
  for key, shape in traverse_util.flatten_dict(shapes).items():
    if key not in flat or tuple(np.shape(flat[key])) != tuple(shape.shape):
      got = np.shape(flat[key]) if key in flat else 'nothing'
      raise ModelLoadError(f'{source}: {"/".join(key)} is {got}, expected {tuple(shape.shape)}')
    out[key] = np.asarray(flat[key], np.float32)
  return traverse_util.unflatten_dict(out)


def save_safetensors(tensors: dict[str, np.ndarray], path: pathlib.Path) -> None:
  """Writes `model.safetensors` with the hub's metadata (format: pt), as transformers does."""
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top

  save_file(tensors, str(path), metadata={'format': 'pt'})

"""CLIP image and text encoders (our Flax CLIP, `clip_model`, on the hub's weights), feature cache.

`load_clip("openai/clip-vit-base-patch32")` loads the real model's `model.safetensors` from the
local Hugging Face cache (or the hub when it is reachable), or a local directory written by
`save_pretrained`; `load_clip("tiny")` builds a small deterministic random CLIP in code, saves it
under the cache directory once in the hub's layout, and loads it back through the same path, for
tests and offline demos.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import pathlib
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from clipit_jax import cli
from clipit_jax import files
from clipit_jax import arrays
from clipit_jax.media import clip_model
from clipit_jax.media import hub
from clipit_jax.media import tokenizer as tokenizer_lib
from clipit_jax.media import video

_log = logging.getLogger(__name__)

DEFAULT_CLIP = 'openai/clip-vit-base-patch32'
TINY = 'tiny'
TINY_CLIP_ID = 'tiny-clip-v2'  # Bump when the tiny model's build changes.

# CLIP's pixel normalisation, used when a model directory has no processor
# config.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

ModelLoadError = hub.ModelLoadError
is_offline = hub.is_offline


# ----------------------------------------------------------------- loading --


def build_once(directory: files.PathLike, build: Callable[[pathlib.Path], None]) -> pathlib.Path:
  """Runs `build(tmp)` and renames tmp to `directory`, unless it exists.

  The rename is atomic, so a present `directory` is always complete, and
  concurrent builders are harmless (the loser's copy is discarded).
  """
  directory = pathlib.Path(directory)
  if directory.is_dir():
    return directory
  directory.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f'.{directory.name}.', dir=directory.parent))
  try:
    build(tmp)
    tmp.chmod(0o755)
    os.rename(tmp, directory)
  except OSError:
    if not directory.is_dir():
      raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return directory


def byte_level_alphabet() -> list[str]:
  """The 256 printable stand-ins for bytes used by GPT-2 and CLIP BPE vocabs, sorted."""
  from tokenizers import pre_tokenizers  # pylint: disable=g-import-not-at-top

  return sorted(pre_tokenizers.ByteLevel.alphabet())


def random_params(shapes: dict, *, seed: int, constants: dict[str, float] | None = None) -> dict:
  """Seeded NumPy values for a parameter tree of `jax.ShapeDtypeStruct`s.

  NumPy's generator gives the same values on every machine and JAX version.
  Kernels and embeddings are normal with std 1/sqrt(prod(shape[:-1])) (1 for
  1-d embeddings), biases 0, LayerNorm scales 1; a leaf named in `constants`
  is filled with that value.
  """
  from flax import traverse_util  # pylint: disable=g-import-not-at-top

  shapes = traverse_util.flatten_dict(shapes)
  constants = constants or {}
  rng = np.random.default_rng(seed)
  params = {}
  for key in sorted(shapes):
    shape, name = shapes[key].shape, key[-1]
    if name in constants:
      value = np.full(shape, constants[name])
    elif name == 'bias':
      value = np.zeros(shape)
    elif name == 'scale':
      value = np.ones(shape)
    else:
      fan_in = math.prod(shape[:-1]) if len(shape) > 1 else 1
      value = rng.standard_normal(shape) / math.sqrt(fan_in)
    params[key] = value.astype(np.float32)
  return traverse_util.unflatten_dict(params)


def write_tiny_clip_tokenizer(directory: pathlib.Path) -> None:
  """Writes a character-level CLIP BPE tokenizer (514 tokens, no merges).

  Like OpenAI CLIP's vocab: the byte alphabet, the same with the end-of-word
  marker, then <|startoftext|> and <|endoftext|> last (highest id).
  """
  chars = byte_level_alphabet()
  tokens = chars + [c + '</w>' for c in chars] + ['<|startoftext|>', '<|endoftext|>']
  vocab = {t: i for i, t in enumerate(tokens)}
  (directory / 'vocab.json').write_text(json.dumps(vocab), encoding='utf-8')
  (directory / 'merges.txt').write_text('#version: 0.2\n', encoding='utf-8')
  special = dict(bos_token='<|startoftext|>', eos_token='<|endoftext|>', pad_token='<|endoftext|>')
  backend = tokenizer_lib.clip_pipeline(vocab, [], special['bos_token'], special['eos_token'])
  tokenizer_lib.save(backend, directory, {**special, 'unk_token': '<|endoftext|>'})


def save_clip(directory: pathlib.Path, config: clip_model.ClipConfig, params: dict) -> None:
  """Writes config.json, model.safetensors (the hub's PyTorch layout) and preprocessor_config.json."""
  size = config.vision.image_size
  (directory / 'config.json').write_text(json.dumps(config.to_dict(), indent=2), encoding='utf-8')
  hub.save_safetensors(hub.flax_to_torch(params), directory / hub.WEIGHTS)
  processor = {
    'image_processor_type': 'CLIPImageProcessor',
    'do_resize': True,
    'size': {'shortest_edge': size},
    'resample': 3,
    'do_center_crop': True,
    'crop_size': {'height': size, 'width': size},
    'do_rescale': True,
    'rescale_factor': 1 / 255,
    'do_normalize': True,
    'image_mean': list(OPENAI_CLIP_MEAN),
    'image_std': list(OPENAI_CLIP_STD),
    'do_convert_rgb': True,
  }
  (directory / 'preprocessor_config.json').write_text(json.dumps(processor, indent=2))


def save_random_clip(directory: pathlib.Path, config: clip_model.ClipConfig) -> None:
  """Saves a CLIP of `config` with seeded random weights and the tiny CLIP's tokenizer."""
  write_tiny_clip_tokenizer(directory)
  params = random_params(
    clip_model.param_shapes(config),
    seed=0,
    constants={'logit_scale': config.logit_scale_init_value},
  )
  save_clip(directory, config, params)


def tiny_clip_config(projection_dim: int = 512) -> clip_model.ClipConfig:
  """Text and vision towers of width 64, 2 layers, 2 heads; 32x32 images in 8x8 patches."""
  tower = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2)
  text = dict(tower, vocab_size=514, max_position_embeddings=77, eos_token_id=513)
  return clip_model.ClipConfig.from_dict(
    dict(
      text_config=text,
      vision_config=dict(tower, image_size=32, patch_size=8),
      projection_dim=projection_dim,
    )
  )


def build_tiny_clip(directory: pathlib.Path) -> None:
  """Saves a small random CLIP (seed 0, 512-d projections) and its tokenizer."""
  save_random_clip(directory, tiny_clip_config())


def tiny_clip_dir(cache_dir: files.PathLike | None = None) -> pathlib.Path:
  """The tiny CLIP's directory in `cache_dir` or `cache_root()`, built once."""
  root = pathlib.Path(cache_dir) if cache_dir else files.cache_root()
  return build_once(root / TINY_CLIP_ID, build_tiny_clip)


def clip_crop(image: np.ndarray, size: int, crop: int | None = None) -> np.ndarray:
  """`CLIPImageProcessor`'s pixels before normalisation: uint8 [H, W, 3] -> [crop, crop, 3].

  The shorter side is resized to `size` (PIL bicubic, the longer side truncated as
  transformers does), then the centre `crop` (default `size`) is cut.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top

  crop = crop or size
  h, w = image.shape[:2]
  short, long = (h, w) if h <= w else (w, h)
  new_long = int(size * long / short)
  new_h, new_w = (size, new_long) if h <= w else (new_long, size)
  resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BICUBIC))
  top, left = (new_h - crop) // 2, (new_w - crop) // 2
  return resized[top : top + crop, left : left + crop]


# ----------------------------------------------------------------- encoder --


def _bucket(n: int, batch_size: int) -> int:
  """Padded batch size: the next power of two >= n, at most batch_size (few distinct shapes)."""
  return min(batch_size, 1 << max(0, n - 1).bit_length())


def _l2_normalize(x: jax.Array) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclasses.dataclass(eq=False)
class ClipEncoder:
  """A loaded CLIP: jit-compiled, batched, L2-normalised image/text encoders.

  Attributes:
    model_id: identifies the weights (for feature cache keys).
    image_size: side of the square RGB crops `encode_images` takes.
    embed_dim: width of the joint embedding (512 for ViT-B/32 and tiny).
    context_length: text tokens per caption (longer texts are truncated).
    model: the Flax `clip_model.CLIP` (its `dtype` is the compute dtype).
  """

  model_id: str
  image_size: int
  embed_dim: int
  context_length: int
  model: clip_model.CLIP
  params: dict
  tokenizer: Any
  mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
  std: tuple[float, float, float] = OPENAI_CLIP_STD
  image_batch_size: int = 64
  text_batch_size: int = 16

  @functools.cached_property
  def _image_fn(self) -> Callable[[dict, jax.Array], jax.Array]:
    mean = jnp.asarray(self.mean, jnp.float32)
    std = jnp.asarray(self.std, jnp.float32)

    def fn(params, frames):
      x = (frames.astype(jnp.float32) / 255.0 - mean) / std
      features = self.model.apply({'params': params}, x, method=clip_model.CLIP.image_features)
      return _l2_normalize(features)

    return jax.jit(fn)

  @functools.cached_property
  def _text_fn(self) -> Callable[[dict, jax.Array, jax.Array], jax.Array]:
    def fn(params, input_ids, attention_mask):
      features = self.model.apply(
        {'params': params}, input_ids, attention_mask, method=clip_model.CLIP.text_features
      )
      return _l2_normalize(features)

    return jax.jit(fn)

  def encode_images(self, frames: np.ndarray) -> np.ndarray:
    """uint8 [n, image_size, image_size, 3] RGB -> float32 [n, embed_dim]."""
    frames = np.asarray(frames)
    s = self.image_size
    if frames.ndim != 4 or frames.shape[1:] != (s, s, 3):
      raise ValueError(
        f'expected frames of shape [n, {s}, {s}, 3], got '
        f'{frames.shape}; decode with size=encoder.image_size'
      )
    if frames.dtype != np.uint8:
      raise ValueError(f'expected uint8 frames, got {frames.dtype}')
    return self._batched(lambda x: self._image_fn(self.params, x), [frames], self.image_batch_size)

  def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
    """[n] strings -> float32 [n, embed_dim]."""
    if isinstance(texts, str):
      raise TypeError('encode_texts takes a list of strings, not a string')
    if not texts:
      return np.zeros((0, self.embed_dim), np.float32)
    tokens = self.tokenizer(
      list(texts),
      padding='max_length',
      truncation=True,
      max_length=self.context_length,
      return_tensors='np',
    )
    ids = tokens['input_ids'].astype(np.int32)
    mask = tokens['attention_mask'].astype(np.int32)
    return self._batched(
      lambda i, m: self._text_fn(self.params, i, m), [ids, mask], self.text_batch_size
    )

  def _batched(
    self, fn: Callable[..., jax.Array], inputs: list[np.ndarray], batch_size: int
  ) -> np.ndarray:
    """Runs `fn` over padded batches of `inputs` (same leading size n)."""
    n = len(inputs[0])
    if n == 0:
      return np.zeros((0, self.embed_dim), np.float32)
    outs = [
      fn(*parts)[:real]
      for parts, real in arrays.fixed_shape_batches(
        inputs, batch_size, bucket=lambda real: _bucket(real, batch_size)
      )
    ]
    return np.asarray(jnp.concatenate(outs), np.float32)


def load_clip_params(directory: pathlib.Path, config: clip_model.ClipConfig, source: str) -> dict:
  """The CLIP's parameters from model.safetensors (PyTorch names) or flax_model.msgpack."""
  shapes = clip_model.param_shapes(config)
  weights = hub.weight_files(directory)
  if weights and weights[0].name == hub.FLAX_WEIGHTS:
    return hub.check_shapes(shapes, hub.read_flax_msgpack(weights[0]), source)
  return hub.torch_to_flax(shapes, hub.read_tensors(directory), source=source)


def load_clip(
  name_or_path: str = DEFAULT_CLIP,
  *,
  image_batch_size: int = 64,
  text_batch_size: int = 16,
  hf_cache_dir: files.PathLike | None = None,
  cache_dir: files.PathLike | None = None,
  dtype: Any = jnp.float32,
) -> ClipEncoder:
  """Loads CLIP weights, tokenizer and pixel statistics into a `ClipEncoder`.

  Args:
    name_or_path: hub name, local directory, or "tiny".
    image_batch_size: largest image batch per jit call.
    text_batch_size: largest text batch per jit call.
    hf_cache_dir: Hugging Face cache directory (default: HF_HOME's).
    cache_dir: where the tiny model is built (default `cache_root()`).
    dtype: compute dtype (parameters stay float32; bfloat16 is faster on some CPUs and TPUs).

  Raises:
    ModelLoadError: the model cannot be loaded; the message says how to fix.
  """
  source = str(tiny_clip_dir(cache_dir)) if name_or_path == TINY else name_or_path
  directory, model_id = hub.resolve(
    source, what='CLIP model', flag='--clip-model', hf_cache_dir=hf_cache_dir
  )
  if name_or_path == TINY:
    model_id = TINY_CLIP_ID
  try:
    config = clip_model.ClipConfig.from_dict(hub.read_json(directory, 'config.json') or {})
    params = load_clip_params(directory, config, str(directory))
    tokenizer = tokenizer_lib.load(directory, tokenizer_lib.CLIP)
  except ModelLoadError as e:
    raise ModelLoadError(f'could not load CLIP model: {e}; pass a CLIP checkpoint.') from None
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ModelLoadError(
      f'could not load CLIP model from {directory} ({cli.first_line(e)}); pass a directory '
      'written by save_pretrained, or `--clip-model tiny`.'
    ) from None
  processor = hub.read_json(directory, 'preprocessor_config.json') or {}
  return ClipEncoder(
    model_id=model_id,
    image_size=int(config.vision.image_size),
    embed_dim=int(config.projection_dim),
    context_length=int(config.text.max_position_embeddings),
    model=clip_model.CLIP(config, dtype=dtype),
    params=jax.device_put(params),
    tokenizer=tokenizer,
    mean=tuple(processor.get('image_mean', OPENAI_CLIP_MEAN)),
    std=tuple(processor.get('image_std', OPENAI_CLIP_STD)),
    image_batch_size=image_batch_size,
    text_batch_size=text_batch_size,
  )


# ----------------------------------------------------------- feature cache --


def file_sha256(path: files.PathLike, block: int = 1 << 20) -> str:
  """Hex sha256 of a file's bytes, read in blocks."""
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    while chunk := f.read(block):
      h.update(chunk)
  return h.hexdigest()


def feature_cache_key(content_sha256: str, model_id: str, fps: float, image_size: int) -> str:
  """The cache file stem for one (video bytes, model, rate, crop size)."""
  key = json.dumps(
    {
      'v': 2,  # 2: frames upright (rotation metadata applied).
      'video': content_sha256,
      'model': model_id,
      'fps': float(fps),
      'size': int(image_size),
    },
    sort_keys=True,
  )
  return hashlib.sha256(key.encode()).hexdigest()[:40]


def feature_cache_file(
  path: files.PathLike, encoder: ClipEncoder, fps: float, cache_dir: files.PathLike
) -> pathlib.Path:
  """`<cache_dir>/<key>.npz`, where the features of the video file `path` are kept.

  The key (`feature_cache_key`) is the sha256 of the file's bytes, `encoder.model_id`,
  `fps` and the crop size, so a renamed copy hits and an edited file misses.
  """
  stem = feature_cache_key(file_sha256(path), encoder.model_id, fps, encoder.image_size)
  return pathlib.Path(cache_dir) / f'{stem}.npz'


def write_cached_features(
  cache_file: files.PathLike, features: np.ndarray, timestamps: np.ndarray
) -> bool:
  """Writes a cache file atomically; on failure (a full disk) warns and returns False."""
  try:
    with files.atomic_path(cache_file, suffix='.npz') as tmp:
      np.savez(tmp, features=features, timestamps=timestamps)
  except OSError as e:
    _log.warning(
      'could not write the feature cache file %s (%s); continuing without it',
      cache_file,
      e.strerror or e,
    )
    return False
  return True


def cache_damage(features: np.ndarray, timestamps: np.ndarray, embed_dim: int | None) -> str:
  """What is wrong with cached (features [n, embed_dim], timestamps [n]); '' when nothing."""
  if features.ndim != 2 or timestamps.ndim != 1 or len(features) != len(timestamps):
    return f'features of shape {features.shape} with timestamps of shape {timestamps.shape}'
  if not len(features):
    return 'no frames'
  if embed_dim is not None and features.shape[1] != embed_dim:
    return f'{features.shape[1]}-d features where the model gives {embed_dim}-d ones'
  if features.dtype.kind != 'f' or timestamps.dtype.kind not in 'fiu':
    return f'features of type {features.dtype}, timestamps of type {timestamps.dtype}'
  if not (np.isfinite(features).all() and np.isfinite(timestamps).all()):
    return 'NaN or infinite values'
  if timestamps[0] < 0 or np.any(np.diff(timestamps) <= 0):
    return 'timestamps that are negative or not increasing'
  return ''


def read_cached_features(
  cache_file: files.PathLike, embed_dim: int | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
  """(features, timestamps) from a cache file; None if it is absent, unreadable (truncated)
  or holds wrong data (`cache_damage`: shape, width `embed_dim`, NaN, timestamps): those
  are logged as a warning naming the file, to be recomputed."""
  if not os.path.isfile(cache_file):
    return None
  try:
    with np.load(cache_file, allow_pickle=False) as data:
      features, timestamps = data['features'], data['timestamps']
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
    damage = f'unreadable ({cli.first_line(e)})'
  else:
    damage = cache_damage(features, timestamps, embed_dim)
  if damage:
    _log.warning('damaged feature cache file %s: %s; recomputing it', cache_file, damage)
    return None
  return features, timestamps


def video_features(
  path: files.PathLike,
  encoder: ClipEncoder,
  fps: float,
  *,
  chunk_size: int = 64,
  progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
  """Decodes `path` at `fps` and encodes it: ([n, embed_dim], [n] seconds)."""
  info = video.probe(path)
  # A source slower than `fps` gives each of its frames once: fewer than duration * fps.
  rate = min(fps, info.fps) if info.fps > 0 else fps
  features, timestamps = [], []
  with tqdm.tqdm(
    total=max(1, math.ceil(info.duration * rate)),
    unit='frame',
    disable=not progress,
    desc=f'encoding {pathlib.Path(path).name}',
  ) as bar:
    for frames, times in video.decode_frames(
      path, fps=fps, size=encoder.image_size, chunk_size=chunk_size
    ):
      features.append(encoder.encode_images(frames))
      timestamps.append(times)
      bar.update(len(times))
    bar.total = bar.n  # Ends at 100 % whatever the estimate.
    bar.refresh()
  return (
    np.concatenate(features).astype(np.float32),
    np.concatenate(timestamps).astype(np.float64),
  )


def cached_video_features(
  path: files.PathLike,
  encoder: ClipEncoder,
  fps: float,
  cache_dir: files.PathLike,
  *,
  chunk_size: int = 64,
  progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
  """`video_features`, stored once per (file content, model, rate) as .npz.

  The file is `feature_cache_file(path, encoder, fps, cache_dir)`, keyed by the
  file's bytes, the model, `fps` and the crop size. Files are written
  atomically; an unreadable cache file (truncated, corrupt) or one holding
  wrong data (shape, NaN, timestamps) is a miss, logged as a warning naming
  it, recomputed and replaced; a cache that cannot be written (a full disk)
  is a warning.

  Returns:
    (features float32 [n, embed_dim], timestamps float64 [n] seconds).

  Raises:
    VideoError: the video is missing or cannot be decoded.
  """
  features, timestamps, _, _ = cache_video_features(
    path, encoder, fps, cache_dir, chunk_size=chunk_size, progress=progress
  )
  return features, timestamps


def cache_video_features(
  path: files.PathLike,
  encoder: ClipEncoder,
  fps: float,
  cache_dir: files.PathLike,
  *,
  chunk_size: int = 64,
  progress: bool = False,
  must_write: bool = False,
) -> tuple[np.ndarray, np.ndarray, pathlib.Path, bool]:
  """`cached_video_features`, also returning the cache file and whether it was a hit.

  With `must_write`, a cache file that cannot be written is an OSError, not a warning.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise video.VideoError(f'{path}: file not found; check the path.')
  cache_file = feature_cache_file(path, encoder, fps, cache_dir)
  cached = read_cached_features(cache_file, encoder.embed_dim)
  if cached is not None:
    return (*cached, cache_file, True)
  features, timestamps = video_features(
    path, encoder, fps, chunk_size=chunk_size, progress=progress
  )
  if not write_cached_features(cache_file, features, timestamps) and must_write:
    raise OSError(f'{cache_file}: cannot write the feature cache file; check --cache-dir')
  return features, timestamps, cache_file, False

"""CLIP image and text encoders (Hugging Face Flax CLIP), video feature cache.

`load_clip("openai/clip-vit-base-patch32")` loads the real model from the local
Hugging Face cache (or the hub when it is reachable); `load_clip("tiny")` builds
a small deterministic random CLIP in code, saves it under the cache directory
once, and loads it back through the same `from_pretrained` path, for tests and
offline demos.
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
import socket
import tempfile
import threading
import urllib.parse
import zipfile
import zlib
from collections.abc import Callable, Sequence
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from clipit_jax import cli
from clipit_jax import files
from clipit_jax import arrays
from clipit_jax.media import video

T = TypeVar("T")
_log = logging.getLogger(__name__)

DEFAULT_CLIP = "openai/clip-vit-base-patch32"
TINY = "tiny"
TINY_CLIP_ID = "tiny-clip-v1"  # Bump when the tiny model's build changes.

# CLIP's pixel normalisation, used when a model directory has no processor
# config.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ModelLoadError(cli.UserError, RuntimeError):
  """Weights or tokenizer could not be loaded; the message says how to fix."""


# ----------------------------------------------------------------- loading --


def _env_true(name: str) -> bool:
  return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def is_offline() -> bool:
  """Whether `HF_HUB_OFFLINE` or `TRANSFORMERS_OFFLINE` is set (read now)."""
  return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")


def _hub_reachable(timeout: float = 3.0) -> bool:
  """Whether a TCP connection to the hub endpoint opens within `timeout`.

  Avoids the hub client's minute of retries when there is no network. With a
  proxy configured the answer cannot be known here, so it says yes.
  """
  if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
    return True
  from huggingface_hub import constants  # pylint: disable=g-import-not-at-top

  url = urllib.parse.urlparse(constants.ENDPOINT)
  host = url.hostname or "huggingface.co"
  port = url.port or (443 if url.scheme == "https" else 80)
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


def _looks_like_path(name: str) -> bool:
  return (
    name.startswith(("/", ".", "~"))
    or name.count("/") > 1
    or os.sep != "/"
    and os.sep in name
    or pathlib.Path(name).expanduser().exists()
  )


def load_pretrained(
  load: Callable[..., T],
  name_or_path: str,
  *,
  what: str,
  flag: str,
  hf_cache_dir: files.PathLike | None = None,
) -> T:
  """Calls `load(name_or_path, ...)` (a `from_pretrained`), failing fast.

  A local directory is loaded as is. A hub name is tried in the local
  Hugging Face cache first; the hub is only contacted when not offline and
  reachable. Every failure becomes a one-line `ModelLoadError`.

  Args:
    load: e.g. `FlaxCLIPModel.from_pretrained`.
    name_or_path: hub name or local directory.
    what: what is loaded, for messages (e.g. "CLIP model").
    flag: the CLI flag that picks the model (e.g. "--clip-model").
    hf_cache_dir: Hugging Face cache directory (default: HF_HOME's).

  Returns:
    What `load` returns.

  Raises:
    ModelLoadError: the model cannot be loaded.
  """
  fix = (
    f"download it on a machine with network (`huggingface-cli download "
    f"{name_or_path}`) into HF_HOME, pass a local directory with "
    f"`{flag} PATH`, or use `{flag} tiny` for the offline demo"
  )
  if _looks_like_path(name_or_path):
    path = pathlib.Path(name_or_path).expanduser()
    if not path.is_dir():
      raise ModelLoadError(
        f"{what} directory {name_or_path} not found; pass a directory "
        "written by "
        f"save_pretrained, a hub name, or `{flag} tiny`."
      )
    try:
      return load(str(path), local_files_only=True)
    except Exception as e:  # pylint: disable=broad-except
      raise ModelLoadError(
        f"could not load {what} from {path} ({cli.first_line(e)}); pass a "
        f"directory written by save_pretrained, or `{flag} tiny`."
      ) from None
  kwargs = {"cache_dir": str(hf_cache_dir)} if hf_cache_dir else {}
  try:
    return load(name_or_path, local_files_only=True, **kwargs)
  except Exception as e:  # pylint: disable=broad-except
    local_error = e
  if is_offline():
    raise ModelLoadError(
      f"could not load {what} {name_or_path!r}: not in the local Hugging "
      f"Face cache and HF_HUB_OFFLINE is set; {fix}."
    ) from None
  if not _hub_reachable():
    raise ModelLoadError(
      f"could not load {what} {name_or_path!r}: not in the local Hugging "
      f"Face cache and the hub is unreachable (no network); {fix}."
    ) from None
  try:
    return load(name_or_path, **kwargs)
  except Exception as e:  # pylint: disable=broad-except
    raise ModelLoadError(
      f"could not load {what} {name_or_path!r} ({cli.first_line(e)}; locally: "
      f"{cli.first_line(local_error)}); {fix}."
    ) from None


def build_once(directory: files.PathLike, build: Callable[[pathlib.Path], None]) -> pathlib.Path:
  """Runs `build(tmp)` and renames tmp to `directory`, unless it exists.

  The rename is atomic, so a present `directory` is always complete, and
  concurrent builders are harmless (the loser's copy is discarded).
  """
  directory = pathlib.Path(directory)
  if directory.is_dir():
    return directory
  directory.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
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
  """The 256 printable stand-ins for bytes used by GPT-2 and CLIP BPE vocabs."""
  # pylint: disable-next=g-import-not-at-top
  from transformers.models.gpt2 import tokenization_gpt2

  return list(tokenization_gpt2.bytes_to_unicode().values())


def random_params(
  model, input_shape, *, seed: int, constants: dict[str, float] | None = None
) -> dict:
  """Seeded NumPy initialisation of a Flax HF model's parameters.

  Shapes come from `jax.eval_shape` (no compile, unlike a jitted init), and
  NumPy's generator gives the same values on every machine and JAX version.
  Kernels and embeddings are normal with std 1/sqrt(prod(shape[:-1])) (1 for
  1-d embeddings), biases 0, LayerNorm scales 1; a leaf named in `constants`
  is filled with that value.

  Args:
    model: a `FlaxPreTrainedModel` built with `_do_init=False`.
    input_shape: what its `init_weights` takes.
    seed: NumPy seed.
    constants: leaf name -> value.

  Returns:
    The nested params dict of float32 NumPy arrays.
  """
  from flax import traverse_util  # pylint: disable=g-import-not-at-top

  shapes = jax.eval_shape(lambda rng: model.init_weights(rng, input_shape), jax.random.PRNGKey(0))
  shapes = traverse_util.flatten_dict(shapes.get("params", shapes))
  constants = constants or {}
  rng = np.random.default_rng(seed)
  params = {}
  for key in sorted(shapes):
    shape, name = shapes[key].shape, key[-1]
    if name in constants:
      value = np.full(shape, constants[name])
    elif name == "bias":
      value = np.zeros(shape)
    elif name == "scale":
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
  from transformers import CLIPTokenizer  # pylint: disable=g-import-not-at-top

  chars = byte_level_alphabet()
  tokens = chars + [c + "</w>" for c in chars]
  tokens += ["<|startoftext|>", "<|endoftext|>"]
  vocab = {t: i for i, t in enumerate(tokens)}
  (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
  (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
  tokenizer = CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"))
  tokenizer.save_pretrained(str(directory))


def save_random_clip(directory: pathlib.Path, config, image_size: int) -> None:
  """Saves a CLIP of `config` (a `CLIPConfig`) with seeded random weights, the tiny CLIP's
  character-level tokenizer and an image processor for `image_size` pixels, for `load_clip`."""
  # pylint: disable=g-import-not-at-top
  from transformers import CLIPImageProcessor, FlaxCLIPModel

  write_tiny_clip_tokenizer(directory)
  model = FlaxCLIPModel(config, _do_init=False)
  params = random_params(
    model,
    ((1, 1), (1, image_size, image_size, 3)),
    seed=0,
    constants={"logit_scale": config.logit_scale_init_value},
  )
  model.save_pretrained(str(directory), params=params)
  CLIPImageProcessor(
    size={"shortest_edge": image_size},
    crop_size={"height": image_size, "width": image_size},
    image_mean=list(OPENAI_CLIP_MEAN),
    image_std=list(OPENAI_CLIP_STD),
  ).save_pretrained(str(directory))


def build_tiny_clip(directory: pathlib.Path) -> None:
  """Saves a small random CLIP (seed 0, 512-d projections) and its tokenizer.

  Text and vision towers: width 64, 2 layers, 2 heads; 32x32 images in 8x8
  patches; 77-token context.
  """
  from transformers import CLIPConfig  # pylint: disable=g-import-not-at-top

  tower = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2)
  config = CLIPConfig(
    text_config=dict(
      tower,
      vocab_size=514,
      max_position_embeddings=77,
      bos_token_id=512,
      eos_token_id=513,
      pad_token_id=513,
    ),
    vision_config=dict(tower, image_size=32, patch_size=8),
    projection_dim=512,
  )
  save_random_clip(directory, config, 32)


def tiny_clip_dir(cache_dir: files.PathLike | None = None) -> pathlib.Path:
  """The tiny CLIP's directory in `cache_dir` or `cache_root()`, built once."""
  root = pathlib.Path(cache_dir) if cache_dir else files.cache_root()
  return build_once(root / TINY_CLIP_ID, build_tiny_clip)


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
  """

  model_id: str
  image_size: int
  embed_dim: int
  context_length: int
  model: object
  params: dict
  tokenizer: object
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
      x = jnp.transpose(x, (0, 3, 1, 2))  # The HF API takes NCHW.
      return _l2_normalize(self.model.get_image_features(x, params=params))

    return jax.jit(fn)

  @functools.cached_property
  def _text_fn(self) -> Callable[[dict, jax.Array, jax.Array], jax.Array]:
    def fn(params, input_ids, attention_mask):
      return _l2_normalize(self.model.get_text_features(input_ids, attention_mask, params=params))

    return jax.jit(fn)

  def encode_images(self, frames: np.ndarray) -> np.ndarray:
    """uint8 [n, image_size, image_size, 3] RGB -> float32 [n, embed_dim]."""
    frames = np.asarray(frames)
    s = self.image_size
    if frames.ndim != 4 or frames.shape[1:] != (s, s, 3):
      raise ValueError(
        f"expected frames of shape [n, {s}, {s}, 3], got "
        f"{frames.shape}; decode with size=encoder.image_size"
      )
    if frames.dtype != np.uint8:
      raise ValueError(f"expected uint8 frames, got {frames.dtype}")
    return self._batched(lambda x: self._image_fn(self.params, x), [frames], self.image_batch_size)

  def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
    """[n] strings -> float32 [n, embed_dim]."""
    if isinstance(texts, str):
      raise TypeError("encode_texts takes a list of strings, not a string")
    if not texts:
      return np.zeros((0, self.embed_dim), np.float32)
    tokens = self.tokenizer(
      list(texts),
      padding="max_length",
      truncation=True,
      max_length=self.context_length,
      return_tensors="np",
    )
    ids = tokens["input_ids"].astype(np.int32)
    mask = tokens["attention_mask"].astype(np.int32)
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


def _local_model_id(directory: pathlib.Path) -> str:
  """Path plus size and mtime of the weights, so changed weights change it."""
  stats = []
  for name in ("flax_model.msgpack", "model.safetensors"):
    f = directory / name
    if f.is_file():
      st = f.stat()
      stats.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
  return f"{directory.resolve()}|{'|'.join(stats)}"


def load_clip(
  name_or_path: str = DEFAULT_CLIP,
  *,
  image_batch_size: int = 64,
  text_batch_size: int = 16,
  hf_cache_dir: files.PathLike | None = None,
  cache_dir: files.PathLike | None = None,
) -> ClipEncoder:
  """Loads CLIP weights, tokenizer and pixel statistics into a `ClipEncoder`.

  Args:
    name_or_path: hub name, local directory, or "tiny".
    image_batch_size: largest image batch per jit call.
    text_batch_size: largest text batch per jit call.
    hf_cache_dir: Hugging Face cache directory (default: HF_HOME's).
    cache_dir: where the tiny model is built (default `cache_root()`).

  Raises:
    ModelLoadError: the model cannot be loaded; the message says how to fix.
  """
  # pylint: disable=g-import-not-at-top
  from transformers import CLIPImageProcessor, CLIPTokenizer, FlaxCLIPModel

  if name_or_path == TINY:
    source, model_id = str(tiny_clip_dir(cache_dir)), TINY_CLIP_ID
  else:
    source = name_or_path
    model_id = None
  kw = dict(what="CLIP model", flag="--clip-model", hf_cache_dir=hf_cache_dir)
  model, params = load_pretrained(
    functools.partial(FlaxCLIPModel.from_pretrained, _do_init=False), source, **kw
  )
  tokenizer = load_pretrained(CLIPTokenizer.from_pretrained, source, **kw)
  try:
    processor = load_pretrained(CLIPImageProcessor.from_pretrained, source, **kw)
    mean, std = tuple(processor.image_mean), tuple(processor.image_std)
  except ModelLoadError:  # No preprocessor config: CLIP's statistics.
    mean, std = OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
  config = model.config
  if model_id is None:
    path = pathlib.Path(source).expanduser()
    if path.is_dir():
      model_id = _local_model_id(path)
    else:
      commit = getattr(config, "_commit_hash", None)
      model_id = f"{source}@{commit}" if commit else source
  return ClipEncoder(
    model_id=model_id,
    image_size=int(config.vision_config.image_size),
    embed_dim=int(config.projection_dim),
    context_length=int(config.text_config.max_position_embeddings),
    model=model,
    params=jax.device_put(params),
    tokenizer=tokenizer,
    mean=mean,
    std=std,
    image_batch_size=image_batch_size,
    text_batch_size=text_batch_size,
  )


# ----------------------------------------------------------- feature cache --


def file_sha256(path: files.PathLike, block: int = 1 << 20) -> str:
  """Hex sha256 of a file's bytes, read in blocks."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    while chunk := f.read(block):
      h.update(chunk)
  return h.hexdigest()


def feature_cache_key(content_sha256: str, model_id: str, fps: float, image_size: int) -> str:
  """The cache file stem for one (video bytes, model, rate, crop size)."""
  key = json.dumps(
    {
      "v": 2,  # 2: frames upright (rotation metadata applied).
      "video": content_sha256,
      "model": model_id,
      "fps": float(fps),
      "size": int(image_size),
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
  return pathlib.Path(cache_dir) / f"{stem}.npz"


def write_cached_features(
  cache_file: files.PathLike, features: np.ndarray, timestamps: np.ndarray
) -> bool:
  """Writes a cache file atomically; on failure (a full disk) warns and returns False."""
  try:
    with files.atomic_path(cache_file, suffix=".npz") as tmp:
      np.savez(tmp, features=features, timestamps=timestamps)
  except OSError as e:
    _log.warning(
      "could not write the feature cache file %s (%s); continuing without it",
      cache_file,
      e.strerror or e,
    )
    return False
  return True


def cache_damage(features: np.ndarray, timestamps: np.ndarray, embed_dim: int | None) -> str:
  """What is wrong with cached (features [n, embed_dim], timestamps [n]); '' when nothing."""
  if features.ndim != 2 or timestamps.ndim != 1 or len(features) != len(timestamps):
    return f"features of shape {features.shape} with timestamps of shape {timestamps.shape}"
  if not len(features):
    return "no frames"
  if embed_dim is not None and features.shape[1] != embed_dim:
    return f"{features.shape[1]}-d features where the model gives {embed_dim}-d ones"
  if features.dtype.kind != "f" or timestamps.dtype.kind not in "fiu":
    return f"features of type {features.dtype}, timestamps of type {timestamps.dtype}"
  if not (np.isfinite(features).all() and np.isfinite(timestamps).all()):
    return "NaN or infinite values"
  if timestamps[0] < 0 or np.any(np.diff(timestamps) <= 0):
    return "timestamps that are negative or not increasing"
  return ""


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
      features, timestamps = data["features"], data["timestamps"]
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
    damage = f"unreadable ({cli.first_line(e)})"
  else:
    damage = cache_damage(features, timestamps, embed_dim)
  if damage:
    _log.warning("damaged feature cache file %s: %s; recomputing it", cache_file, damage)
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
    unit="frame",
    disable=not progress,
    desc=f"encoding {pathlib.Path(path).name}",
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
    raise video.VideoError(f"{path}: file not found; check the path.")
  cache_file = feature_cache_file(path, encoder, fps, cache_dir)
  cached = read_cached_features(cache_file, encoder.embed_dim)
  if cached is not None:
    return (*cached, cache_file, True)
  features, timestamps = video_features(
    path, encoder, fps, chunk_size=chunk_size, progress=progress
  )
  if not write_cached_features(cache_file, features, timestamps) and must_write:
    raise OSError(f"{cache_file}: cannot write the feature cache file; check --cache-dir")
  return features, timestamps, cache_file, False

"""Language for generic summaries: caption files, uniform sampling, captioning.

CLIP-It's generic summaries condition on M captions of the video sampled
uniformly over time (M = 7, or 15 for videos over 30 minutes). Captions come
from a subtitle/transcript file (`parse_captions`) or from an image-captioning
model run on frames sampled over the video (`generate_captions`), which stands
in for the paper's dense video captioner.
"""

from __future__ import annotations

import dataclasses
import functools
import html
import json
import logging
import pathlib
import re
from collections.abc import Callable, Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import srt
import webvtt

from clipit_jax import cli
from clipit_jax import files
from clipit_jax import arrays
from clipit_jax.media import captioner_model
from clipit_jax.media import encoders
from clipit_jax.media import hub
from clipit_jax.media import tokenizer as tokenizer_lib

_log = logging.getLogger(__name__)


DEFAULT_CAPTIONER = 'nlpconnect/vit-gpt2-image-captioning'
TINY = encoders.TINY
TINY_CAPTIONER_ID = 'tiny-vit-gpt2-v2'  # Bump when the construction changes.
LONG_VIDEO_S = 30 * 60  # Videos longer than this get more captions.


ModelLoadError = encoders.ModelLoadError


class CaptionError(ValueError):
  """A caption file is missing or malformed; the message names the file, and the line where known."""


@dataclasses.dataclass(frozen=True)
class Caption:
  """One caption: seconds from the start of the video, and its text."""

  start: float
  end: float
  text: str


# ----------------------------------------------------------------- parsing --

_TAG = re.compile(r'<[^>]*>|\{[^}]*\}')  # HTML-ish and {\an8}-style tags.
_TIME = r'(?:\d+:)?\d{1,2}:\d{2}(?:[.,]\d+)?|\d+(?:\.\d+)?'
_PLAIN_LINE = re.compile(
  rf'^\s*(?:\[\s*(?P<bts>{_TIME})\s*\]|(?P<ts>{_TIME})(?=\s|[-|]))'
  r'\s*(?:[-|\u2013\u2014]\s*)?(?P<text>.*?)\s*$'
)


def parse_timestamp(text: str) -> float:
  """Seconds from `[[H:]M:]S[.frac]` (a comma is also a decimal mark)."""
  text = text.strip().replace(',', '.')
  if not re.fullmatch(r'(?:\d+:){0,2}\d+(?:\.\d+)?', text):
    raise ValueError(f'not a timestamp: {text!r}')
  seconds = 0.0
  for part in text.split(':'):
    seconds = seconds * 60 + float(part)
  parts = text.split(':')
  if len(parts) > 1 and any(float(p) >= 60 for p in parts[1:]):
    raise ValueError(f'minutes/seconds out of range in {text!r}')
  return seconds


def clean_text(text: str) -> str:
  """Strips markup tags and entities, and collapses whitespace."""
  return ' '.join(html.unescape(_TAG.sub('', text)).split())


def _timing_lines(text: str) -> list[int]:
  """Line numbers (from 1) of the lines holding `-->`: cue k's timing line is the k-th.

  Only a cue text holding `-->` (which WebVTT forbids) would shift the numbers after it.
  """
  return [number for number, line in enumerate(text.splitlines(), 1) if '-->' in line]


def _captions(cues, text: str, path: str) -> list[Caption]:
  """Captions from (start s, end s, raw text) cues in file order; empty ones are dropped."""
  lines, out = _timing_lines(text), []
  for k, (start, end, raw) in enumerate(cues):
    if end < start:
      where = f'{path}:{lines[k]}' if k < len(lines) else path
      raise CaptionError(f'{where}: caption ends ({end:.3f} s) before it starts ({start:.3f} s)')
    if caption_text := clean_text(raw):
      out.append(Caption(start, end, caption_text))
  return out


def _unparsed_srt(text: str, offset: int, path: str) -> CaptionError:
  """The error for SubRip text that `srt` could not read from char `offset` on."""
  number = text.count('\n', 0, offset) + 1
  block = text[offset:].splitlines()
  while block and not block[0].strip():
    block, number = block[1:], number + 1
  if len(block) > 1 and block[1].strip() and '-->' not in block[0]:
    block, number = block[1:], number + 1  # The cue number, then the timing line.
  got = block[0].strip() if block else ''
  return CaptionError(
    f"{path}:{number}: expected a 'start --> end' timing line (HH:MM:SS,mmm --> HH:MM:SS,mmm), "
    f'got {got!r}'
  )


def parse_srt(text: str, path: str = '<srt>') -> list[Caption]:
  """Captions from SubRip text, read by the `srt` library."""
  try:
    subtitles = list(srt.parse(text))
  except srt.SRTParseError as e:
    raise _unparsed_srt(text, e.expected_start, path) from None
  except srt.TimestampParseError as e:
    raise CaptionError(f'{path}: bad timestamp ({cli.first_line(e)})') from None
  cues = [(s.start.total_seconds(), s.end.total_seconds(), s.content) for s in subtitles]
  return _captions(cues, text, path)


def parse_vtt(text: str, path: str = '<vtt>') -> list[Caption]:
  """Captions from WebVTT text, read by `webvtt-py` (NOTE, STYLE and REGION blocks are skipped)."""
  try:
    cues = webvtt.from_string(text.lstrip(), strict=True).captions
  except webvtt.errors.MalformedFileError:
    line = text.count('\n', 0, len(text) - len(text.lstrip())) + 1
    raise CaptionError(f"{path}:{line}: a WebVTT file must start with 'WEBVTT'") from None
  except webvtt.errors.MalformedCaptionError as e:  # Timestamps are 'mm:ss.ttt' or 'hh:mm:ss.ttt'.
    raise CaptionError(f'{path}: malformed WebVTT ({cli.first_line(e)})') from None
  ms = [(c.start_time.in_milliseconds(), c.end_time.in_milliseconds(), c.raw_text) for c in cues]
  return _captions([(s / 1000, e / 1000, t) for s, e, t in ms], text, path)


def parse_plain(text: str, path: str = '<text>') -> list[Caption]:
  """Captions from lines `TIME text`: `00:01:23 a`, `83.5 a`, `[01:23.5] a`.

  Blank lines and lines starting with '#' are skipped. Each caption ends where
  the next one starts; the last one ends where it starts.
  """
  starts = []
  for number, line in enumerate(text.splitlines(), 1):
    if not line.strip() or line.lstrip().startswith('#'):
      continue
    match = _PLAIN_LINE.match(line)
    if not match:
      raise CaptionError(
        f"{path}:{number}: expected 'TIME text' (e.g. '00:01:23 a dog "
        f"runs', '83.5 a dog runs', '[00:01:23.500] a dog runs'), got "
        f'{line.strip()[:60]!r}'
      )
    try:
      start = parse_timestamp(match['bts'] or match['ts'])
    except ValueError as e:
      raise CaptionError(f'{path}:{number}: bad timestamp ({e})') from None
    caption_text = clean_text(match['text'])
    if not caption_text:
      raise CaptionError(f'{path}:{number}: a timestamp with no caption text')
    starts.append((start, caption_text))
  starts.sort(key=lambda s: s[0])
  return [
    Caption(s, starts[i + 1][0] if i + 1 < len(starts) else s, t) for i, (s, t) in enumerate(starts)
  ]


def parse_captions(path: files.PathLike) -> list[Caption]:
  """Reads `.srt`, `.vtt` (or any file starting with WEBVTT), or plain text.

  Returns:
    Non-empty captions sorted by start time, markup stripped.

  Raises:
    CaptionError (a ValueError): missing file, malformed line (with its number, but a
      malformed WebVTT cue is named by its text), or no captions.
  """
  path = pathlib.Path(path)
  try:
    text = path.read_text(encoding='utf-8-sig')
  except FileNotFoundError:
    raise CaptionError(f'{path}: caption file not found; check the path.') from None
  except (OSError, UnicodeDecodeError) as e:
    raise CaptionError(
      f'{path}: cannot read captions ({e}); pass a UTF-8 .srt, .vtt or timestamped text file.'
    ) from None
  suffix = path.suffix.lower()
  if suffix == '.vtt' or text.lstrip().startswith('WEBVTT'):
    captions = parse_vtt(text, str(path))
  elif suffix == '.srt':
    captions = parse_srt(text, str(path))
  else:
    captions = parse_plain(text, str(path))
  if not captions:
    raise CaptionError(f'{path}: no captions found; the file is empty or has only blank cues.')
  return sorted(captions, key=lambda c: (c.start, c.end))


def drop_after(
  captions: Sequence[Caption], duration: float, source: str = 'captions'
) -> list[Caption]:
  """The captions that start within the video's `duration` seconds.

  Cues past the end (a subtitle file of a longer cut, or of another video) would be
  sampled as if they described the video; they are dropped with a warning, and a file
  with none inside the video is an error.

  Raises:
    CaptionError: no caption starts before `duration`.
  """
  kept = [c for c in captions if c.start < duration]
  if not kept:
    raise CaptionError(
      f'{source}: all {len(captions)} captions start after the video ends '
      f"({duration:.1f} s); are they this video's?"
    )
  if len(kept) < len(captions):
    _log.warning(
      '%s: dropped %d of %d captions that start after the video ends (%.1f s)',
      source,
      len(captions) - len(kept),
      len(captions),
      duration,
    )
  return kept


# ---------------------------------------------------------------- sampling --


def default_num_captions(duration_s: float) -> int:
  """The paper's M: 7 captions, 15 for videos over 30 minutes."""
  return 15 if duration_s > LONG_VIDEO_S else 7


def sample_uniform(captions: Sequence[Caption], m: int, duration: float | None = None) -> list[str]:
  """M caption texts spread uniformly over the video's time.

  The video [0, duration) is cut into m equal bins; each bin takes the
  caption nearest its centre (a caption containing the centre is at distance
  0; ties go to the caption whose middle is nearer, then the earlier one).
  Exactly m texts come back in time order. When captions are fewer than m, or
  sparse, a caption fills every bin it is nearest to, so texts repeat
  (deterministically) rather than being padded.

  Args:
    captions: at least one caption.
    m: how many texts to return.
    duration: video length in seconds (default: the last caption's end).

  Returns:
    m strings.
  """
  if m <= 0:
    raise ValueError(f'm must be positive, got {m}')
  if not captions:
    raise ValueError('no captions to sample from')
  starts = np.array([c.start for c in captions], np.float64)
  ends = np.array([max(c.end, c.start) for c in captions], np.float64)
  if duration is None or duration <= 0:
    duration = float(ends.max()) or float(starts.max()) or 1.0
  centres = (np.arange(m) + 0.5) * duration / m
  gap = np.maximum(starts[None] - centres[:, None], centres[:, None] - ends[None]).clip(
    min=0
  )  # [m, n]
  middle = np.abs((starts + ends)[None] / 2 - centres[:, None])
  index = np.arange(len(captions))[None].repeat(m, 0)
  order = np.lexsort((index, middle, gap), axis=-1)  # Last key is primary.
  return [captions[i].text for i in order[:, 0]]


# -------------------------------------------------------------- captioning --


# Words the tiny captioner's vocabulary spells whole, so its random captions
# read as (nonsense) word sequences rather than byte soup.
TINY_WORDS = (
  'a',
  'an',
  'the',
  'man',
  'woman',
  'person',
  'people',
  'boy',
  'girl',
  'child',
  'group',
  'dog',
  'cat',
  'horse',
  'bird',
  'car',
  'bus',
  'train',
  'bike',
  'bicycle',
  'street',
  'road',
  'city',
  'building',
  'room',
  'kitchen',
  'table',
  'food',
  'plate',
  'field',
  'grass',
  'tree',
  'water',
  'beach',
  'snow',
  'mountain',
  'sky',
  'ball',
  'phone',
  'camera',
  'sign',
  'shirt',
  'hat',
  'riding',
  'walking',
  'running',
  'standing',
  'sitting',
  'playing',
  'holding',
  'eating',
  'looking',
  'with',
  'on',
  'in',
  'of',
  'and',
  'near',
  'at',
  'next',
  'to',
  'red',
  'blue',
  'green',
  'white',
  'black',
  'young',
  'large',
  'small',
  'two',
)


def _tiny_gpt2_vocab() -> tuple[list[str], list[tuple[str, str]], set[str]]:
  """(tokens, merges, whole-word tokens) for the tiny byte-level BPE.

  Tokens: 'Ġ' (space), a-z, every space-prefixed prefix of `TINY_WORDS` (so
  BPE can build them) and <|endoftext|> last. Other bytes are unknown.
  """
  tokens = ['\u0120'] + [chr(c) for c in range(ord('a'), ord('z') + 1)]
  merges, words = [], set()
  for word in TINY_WORDS:
    prefix = '\u0120'
    for char in word:
      if prefix + char not in tokens:
        merges.append((prefix, char))
        tokens.append(prefix + char)
      prefix += char
    words.add(prefix)
  return tokens + ['<|endoftext|>'], merges, words


def write_tiny_gpt2_tokenizer(directory: pathlib.Path) -> None:
  """Writes the tiny byte-level GPT-2 tokenizer (`_tiny_gpt2_vocab`): tokenizer.json, vocab, merges."""
  tokens, merges, _ = _tiny_gpt2_vocab()
  vocab = {t: i for i, t in enumerate(tokens)}
  (directory / 'vocab.json').write_text(json.dumps(vocab), encoding='utf-8')
  (directory / 'merges.txt').write_text(
    '#version: 0.2\n' + ''.join(f'{a} {b}\n' for a, b in merges), encoding='utf-8'
  )
  eos = '<|endoftext|>'
  backend = tokenizer_lib.gpt2_pipeline(vocab, merges, eos)
  tokenizer_lib.save(backend, directory, dict(bos_token=eos, eos_token=eos, unk_token=eos))


def tiny_captioner_config(vocab_size: int) -> captioner_model.CaptionerConfig:
  """ViT: 32x32 images, 8x8 patches, width 64, 2 layers. GPT-2: width 64, 2 layers, 64 positions."""
  eos = vocab_size - 1
  return captioner_model.CaptionerConfig(
    encoder=captioner_model.VitConfig(
      image_size=32,
      patch_size=8,
      hidden_size=64,
      num_hidden_layers=2,
      num_attention_heads=2,
      intermediate_size=128,
    ),
    decoder=captioner_model.Gpt2Config(
      vocab_size=vocab_size, n_positions=64, n_embd=64, n_layer=2, n_head=2
    ),
    decoder_start_token_id=eos,
    eos_token_id=eos,
    pad_token_id=eos,
  )


def save_captioner(
  directory: pathlib.Path,
  config: captioner_model.CaptionerConfig,
  params: dict,
  mean: Sequence[float] = (0.5, 0.5, 0.5),
  std: Sequence[float] = (0.5, 0.5, 0.5),
  max_length: int = 20,
) -> None:
  """Writes config.json, generation_config.json, model.safetensors (the hub's PyTorch layout)
  and preprocessor_config.json, as `VisionEncoderDecoderModel.save_pretrained` would."""
  (directory / 'config.json').write_text(json.dumps(config.to_dict(), indent=2), encoding='utf-8')
  generation = dict(
    decoder_start_token_id=config.decoder_start_token_id,
    eos_token_id=config.eos_token_id,
    pad_token_id=config.pad_token_id,
    bos_token_id=config.eos_token_id,
    max_length=max_length,
  )
  (directory / 'generation_config.json').write_text(json.dumps(generation, indent=2))
  tensors = hub.flax_to_torch(params, conv1d=captioner_model.is_conv1d)
  tensors['decoder.lm_head.weight'] = tensors['decoder.transformer.wte.weight']
  hub.save_safetensors(tensors, directory / hub.WEIGHTS)
  size = config.encoder.image_size
  processor = {
    'image_processor_type': 'ViTImageProcessor',
    'do_resize': True,
    'size': {'height': size, 'width': size},
    'resample': 2,
    'do_rescale': True,
    'rescale_factor': 1 / 255,
    'do_normalize': True,
    'image_mean': list(mean),
    'image_std': list(std),
  }
  (directory / 'preprocessor_config.json').write_text(json.dumps(processor, indent=2))


def build_tiny_captioner(directory: pathlib.Path) -> None:
  """Saves a small random ViT-GPT2 captioner (NumPy seed 0) and tokenizer.

  `tiny_captioner_config` with the `_tiny_gpt2_vocab` tokens. The embeddings of tokens that
  are not whole words are scaled down so greedy decoding emits (repetitive, meaningless) words
  rather than byte soup.
  """
  write_tiny_gpt2_tokenizer(directory)
  tokens, _, words = _tiny_gpt2_vocab()
  config = tiny_captioner_config(len(tokens))
  params = encoders.random_params(captioner_model.param_shapes(config), seed=0)
  wte = params['decoder']['transformer']['wte']['embedding']
  wte[np.array([t not in words for t in tokens])] *= 0.1
  save_captioner(directory, config, params)


def tiny_captioner_dir(cache_dir: files.PathLike | None = None) -> pathlib.Path:
  """The tiny captioner's directory (or under `cache_root()`), built once."""
  root = pathlib.Path(cache_dir) if cache_dir else files.cache_root()
  return encoders.build_once(root / TINY_CAPTIONER_ID, build_tiny_captioner)


@dataclasses.dataclass(eq=False)
class Captioner:
  """A loaded image captioner with jit-compiled greedy (or beam) decoding.

  Attributes:
    model_id: identifies the weights.
    image_size: side of the square images the vision encoder takes.
    max_length: most generated tokens per caption (including the start token).
    num_beams: 1 for greedy decoding, more for beam search.
  """

  model_id: str
  image_size: int
  model: captioner_model.Captioner
  params: dict
  tokenizer: Any
  mean: tuple[float, ...] = (0.5, 0.5, 0.5)
  std: tuple[float, ...] = (0.5, 0.5, 0.5)
  max_length: int = 20
  batch_size: int = 8
  num_beams: int = 1

  @functools.cached_property
  def _generate(self) -> Callable[[dict, jax.Array], jax.Array]:
    mean = jnp.asarray(self.mean, jnp.float32)
    std = jnp.asarray(self.std, jnp.float32)
    s = self.image_size

    def fn(params, frames):
      x = frames.astype(jnp.float32) / 255.0
      if x.shape[1:3] != (s, s):
        x = jax.image.resize(x, (x.shape[0], s, s, 3), 'bilinear')
      x = (x - mean) / std
      if self.num_beams > 1:
        return captioner_model.beam_search(self.model, params, x, self.max_length, self.num_beams)
      return captioner_model.greedy(self.model, params, x, self.max_length)

    return jax.jit(fn)

  def token_ids(self, frames: np.ndarray) -> np.ndarray:
    """uint8 [n, H, W, 3] RGB frames -> int [n, max_length] (start token, caption, padding)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
      raise ValueError(f'expected uint8 frames [n, H, W, 3], got {frames.dtype} {frames.shape}')
    rows = [
      np.asarray(self._generate(self.params, batch))[:real]
      for (batch,), real in arrays.fixed_shape_batches([frames], self.batch_size)
    ]
    return np.concatenate(rows) if rows else np.zeros((0, self.max_length), np.int32)

  def caption(self, frames: np.ndarray) -> list[str]:
    """uint8 [n, H, W, 3] RGB frames -> n captions."""
    ids = self.token_ids(frames)
    return [' '.join(t.split()) for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]


def load_captioner_params(
  directory: pathlib.Path, config: captioner_model.CaptionerConfig, source: str
) -> dict:
  """The parameters from model.safetensors (PyTorch names) or flax_model.msgpack."""
  shapes = captioner_model.param_shapes(config)
  weights = hub.weight_files(directory)
  if weights and weights[0].name == hub.FLAX_WEIGHTS:
    tree = flax.traverse_util.flatten_dict(hub.read_flax_msgpack(weights[0]))
    tree = {
      k: v.T if captioner_model.is_conv1d(k) and k[-1] == 'kernel' else v for k, v in tree.items()
    }
    return hub.check_shapes(shapes, flax.traverse_util.unflatten_dict(tree), source)
  tied = {'decoder.lm_head.weight': 'decoder.transformer.wte.weight'}
  return hub.torch_to_flax(
    shapes, hub.read_tensors(directory), conv1d=captioner_model.is_conv1d, tied=tied, source=source
  )


def load_captioner(
  name_or_path: str = DEFAULT_CAPTIONER,
  *,
  max_length: int = 20,
  batch_size: int = 8,
  num_beams: int = 1,
  hf_cache_dir: files.PathLike | None = None,
  cache_dir: files.PathLike | None = None,
) -> Captioner:
  """Loads a ViT-GPT2 captioner (the hub's VisionEncoderDecoderModel), its tokenizer and pixels.

  Args:
    name_or_path: hub name, local directory, or "tiny".
    max_length: most tokens per generated caption.
    batch_size: frames per jit call.
    num_beams: 1 for greedy decoding, more for beam search.
    hf_cache_dir: Hugging Face cache directory (default: HF_HOME's).
    cache_dir: where the tiny model is built (default `cache_root()`).

  Raises:
    ModelLoadError: the model cannot be loaded; the message says how to fix.
  """
  source = str(tiny_captioner_dir(cache_dir)) if name_or_path == TINY else name_or_path
  flag = '--caption-model'
  directory, model_id = hub.resolve(
    source, what='captioning model', flag=flag, hf_cache_dir=hf_cache_dir
  )
  model_id = TINY_CAPTIONER_ID if name_or_path == TINY else name_or_path
  try:
    config = captioner_model.CaptionerConfig.from_dict(
      hub.read_json(directory, 'config.json') or {},
      hub.read_json(directory, 'generation_config.json'),
    )
    params = load_captioner_params(directory, config, str(directory))
    tokenizer = tokenizer_lib.load(directory, tokenizer_lib.GPT2)
  except ModelLoadError as e:
    raise ModelLoadError(
      f'could not load captioning model: {e}; pass a ViT-GPT2 checkpoint.'
    ) from None
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ModelLoadError(
      f'could not load captioning model from {directory} ({cli.first_line(e)}); pass a ViT-GPT2 '
      f'directory written by save_pretrained, or `{flag} tiny`.'
    ) from None
  processor = hub.read_json(directory, 'preprocessor_config.json') or {}
  return Captioner(
    model_id=model_id,
    image_size=int(config.encoder.image_size),
    model=captioner_model.Captioner(config),
    params=jax.device_put(params),
    tokenizer=tokenizer,
    mean=tuple(processor.get('image_mean', (0.5, 0.5, 0.5))),
    std=tuple(processor.get('image_std', (0.5, 0.5, 0.5))),
    max_length=max_length,
    batch_size=batch_size,
    num_beams=num_beams,
  )


def generate_captions(
  frames: np.ndarray,
  timestamps: np.ndarray,
  model: str | Captioner = TINY,
  *,
  num_frames: int | None = None,
  duration: float | None = None,
  **load_kwargs,
) -> list[Caption]:
  """Captions frames sampled uniformly over the video with an image captioner.

  Args:
    frames: uint8 [n, H, W, 3] RGB frames in time order (any square size).
    timestamps: [n] seconds of the frames.
    model: a `Captioner`, or a name/path/"tiny" for `load_captioner`.
    num_frames: caption this many frames evenly spaced by index (default: all).
    duration: video length, for the last caption's end (default: the last
      frame's time plus the median frame spacing).
    **load_kwargs: passed to `load_captioner` when `model` is a name.

  Returns:
    One `Caption` per captioned frame, from its time to the next one's.
  """
  frames, timestamps = np.asarray(frames), np.asarray(timestamps, np.float64)
  if len(frames) != len(timestamps):
    raise ValueError(f'{len(frames)} frames but {len(timestamps)} timestamps')
  if not len(frames):
    return []
  if num_frames is not None and num_frames < len(frames):
    if num_frames <= 0:
      raise ValueError(f'num_frames must be positive, got {num_frames}')
    keep = arrays.uniform_indices(len(frames), num_frames)
    frames, timestamps = frames[keep], timestamps[keep]
  captioner = model if isinstance(model, Captioner) else load_captioner(model, **load_kwargs)
  texts = captioner.caption(frames)
  if duration is None:
    step = float(np.median(np.diff(timestamps))) if len(timestamps) > 1 else 0
    duration = float(timestamps[-1]) + step
  ends = np.append(timestamps[1:], max(duration, float(timestamps[-1])))
  return [Caption(float(s), float(e), t) for s, e, t in zip(timestamps, ends, texts)]

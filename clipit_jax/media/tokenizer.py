"""Tokenizers of hub checkpoints with the `tokenizers` library: CLIP's and GPT-2's byte-level BPE.

`load(directory, kind)` reads the checkpoint's `tokenizer.json`, or builds the same pipeline as
transformers' `CLIPTokenizer` / `GPT2Tokenizer` from `vocab.json` and `merges.txt`.
`Tokenizer.__call__` and `decode` / `batch_decode` take the arguments transformers' tokenizers
take, for the few uses here.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

import numpy as np

CLIP = 'clip'
GPT2 = 'gpt2'
_CLIP_SPLIT = (
  r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)
_END_OF_WORD = '</w>'


def _token(value, default: str) -> str:
  """A special token from tokenizer_config.json ("<|endoftext|>" or {"content": ...})."""
  if isinstance(value, dict):
    value = value.get('content')
  return value if isinstance(value, str) else default


def clip_pipeline(vocab: dict[str, int], merges: list[tuple[str, str]], bos: str, eos: str):
  """CLIP's BPE (end-of-word suffix, lower case, RoBERTa-style BOS/EOS), as transformers builds it."""
  # pylint: disable-next=g-import-not-at-top
  from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

  tok = Tokenizer(
    models.BPE(
      vocab=vocab,
      merges=merges,
      continuing_subword_prefix='',
      end_of_word_suffix=_END_OF_WORD,
      fuse_unk=False,
      unk_token=eos,
    )
  )
  tok.normalizer = normalizers.Sequence(
    [normalizers.NFC(), normalizers.Replace(Regex(r'\s+'), ' '), normalizers.Lowercase()]
  )
  tok.pre_tokenizer = pre_tokenizers.Sequence(
    [
      pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior='removed', invert=True),
      pre_tokenizers.ByteLevel(add_prefix_space=False),
    ]
  )
  tok.decoder = decoders.ByteLevel()
  tok.post_processor = processors.RobertaProcessing(
    (eos, vocab[eos]), (bos, vocab[bos]), trim_offsets=False, add_prefix_space=False
  )
  tok.add_special_tokens([bos, eos])
  return tok


def gpt2_pipeline(vocab: dict[str, int], merges: list[tuple[str, str]], eos: str):
  """GPT-2's byte-level BPE, no special tokens added."""
  # pylint: disable-next=g-import-not-at-top
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers

  tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.add_special_tokens([eos])
  return tok


def _read_merges(path: pathlib.Path) -> list[tuple[str, str]]:
  lines = path.read_text(encoding='utf-8').splitlines()
  return [tuple(line.split()) for line in lines if line and not line.startswith('#version')]


class Tokenizer:
  """A `tokenizers.Tokenizer` with its pad token, called like transformers' tokenizers."""

  def __init__(self, backend, pad_token: str, kind: str):
    self.backend, self.kind = backend, kind
    self.pad_token = pad_token
    self.pad_token_id = backend.token_to_id(pad_token)
    self.backend.no_padding()
    self.backend.no_truncation()

  def __call__(
    self,
    texts: str | Sequence[str],
    *,
    truncation: bool = False,
    max_length: int | None = None,
    padding: str | bool = False,
    return_tensors: str | None = None,
  ) -> dict:
    """{"input_ids", "attention_mask"}: lists (one text), lists of lists, or int arrays ("np")."""
    single = isinstance(texts, str)
    encodings = self.backend.encode_batch([texts] if single else list(texts))
    ids = [e.ids for e in encodings]
    if truncation and max_length:
      ids = [self._truncate(i, max_length) for i in ids]
    width = max_length if padding == 'max_length' else max(map(len, ids), default=0)
    mask = [[1] * len(i) + [0] * (width - len(i)) if padding else [1] * len(i) for i in ids]
    if padding:
      ids = [i + [self.pad_token_id] * (width - len(i)) for i in ids]
    if return_tensors == 'np':
      return {'input_ids': np.asarray(ids, np.int64), 'attention_mask': np.asarray(mask, np.int64)}
    if single:
      return {'input_ids': ids[0], 'attention_mask': mask[0]}
    return {'input_ids': ids, 'attention_mask': mask}

  def _truncate(self, ids: list[int], max_length: int) -> list[int]:
    """Cut to `max_length`, keeping CLIP's final EOS as transformers does."""
    if len(ids) <= max_length:
      return ids
    if self.kind == CLIP:
      return ids[: max_length - 1] + ids[-1:]
    return ids[:max_length]

  def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
    text = self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
    if self.kind == CLIP:
      text = text.replace(_END_OF_WORD, ' ').strip()
    return text

  def batch_decode(self, rows, skip_special_tokens: bool = False) -> list[str]:
    return [self.decode(row, skip_special_tokens) for row in rows]


def load(directory: pathlib.Path, kind: str) -> Tokenizer:
  """The checkpoint's tokenizer (`kind` CLIP or GPT2), from tokenizer.json or vocab + merges.

  Raises:
    FileNotFoundError: the directory has neither.
  """
  directory = pathlib.Path(directory)
  config_path = directory / 'tokenizer_config.json'
  config = json.loads(config_path.read_text(encoding='utf-8')) if config_path.is_file() else {}
  eos = _token(config.get('eos_token'), '<|endoftext|>')
  pad = _token(config.get('pad_token'), eos)
  if (directory / 'tokenizer.json').is_file():
    from tokenizers import Tokenizer as Backend  # pylint: disable=g-import-not-at-top

    backend = Backend.from_file(str(directory / 'tokenizer.json'))
  elif (directory / 'vocab.json').is_file() and (directory / 'merges.txt').is_file():
    vocab = json.loads((directory / 'vocab.json').read_text(encoding='utf-8'))
    merges = _read_merges(directory / 'merges.txt')
    if kind == CLIP:
      bos = _token(config.get('bos_token'), '<|startoftext|>')
      backend = clip_pipeline(vocab, merges, bos, eos)
    else:
      backend = gpt2_pipeline(vocab, merges, eos)
  else:
    raise FileNotFoundError(f'no tokenizer.json (or vocab.json and merges.txt) in {directory}')
  if backend.token_to_id(pad) is None:
    pad = eos
  return Tokenizer(backend, pad, kind)


def save(backend, directory: pathlib.Path, special: dict[str, str]) -> None:
  """Writes tokenizer.json and a tokenizer_config.json naming the special tokens."""
  backend.save(str(directory / 'tokenizer.json'))
  (directory / 'tokenizer_config.json').write_text(json.dumps(special, indent=2), encoding='utf-8')

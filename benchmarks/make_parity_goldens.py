"""Writes tests/data/parity/: tiny random checkpoints saved by transformers 5 (PyTorch) and outputs.

Run with the `bench` extra (torch and transformers 5), never at test time:

  python benchmarks/make_parity_goldens.py            # writes tests/data/parity/

  clip/       a `CLIPModel.save_pretrained` (model.safetensors, config.json) with its
              `CLIPTokenizer` and `CLIPImageProcessor` (PIL backend) files.
  captioner/  a `VisionEncoderDecoderModel` (ViT + GPT-2 with cross-attention) with its
              `GPT2Tokenizer` and `ViTImageProcessor` files.
  outputs.npz the inputs (uint8 images of odd sizes, texts) and PyTorch's outputs on them:
              the tokenizer's ids, image and text embeddings (processor + model), the
              captioner's greedy token ids.

tests/clip_parity_test.py loads the checkpoints with clipit_jax's own Flax modules (no torch)
and compares. Weights are random (seeded), the widths tiny, so the files stay small.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil

import numpy as np
import torch
import transformers
from transformers import (
  CLIPConfig,
  CLIPModel,
  CLIPTokenizer,
  GPT2Config,
  GPT2Tokenizer,
  VisionEncoderDecoderConfig,
  VisionEncoderDecoderModel,
  ViTConfig,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEXTS = [
  'a photo of a dog',
  'Two   CATS, on a mat!',
  'the dog ' * 30,  # Longer than the 77-token context: cut, EOS kept.
  '',
]
IMAGE_SHAPES = [(40, 52), (52, 40), (32, 32), (33, 70)]  # Cropped to 32x32 by the processor.
CAPTION_LENGTH = 12
EOS_SCALE = 0.6


def byte_alphabet() -> list[str]:
  from tokenizers import pre_tokenizers

  return sorted(pre_tokenizers.ByteLevel.alphabet())


def clip_vocab(directory: pathlib.Path) -> None:
  """Characters, characters + </w>, a few merged words, then BOS and EOS (highest ids)."""
  chars = byte_alphabet()
  merges = [('d', 'o'), ('do', 'g</w>'), ('c', 'a'), ('ca', 't'), ('cat', 's</w>')]
  tokens = chars + [c + '</w>' for c in chars] + ['do', 'dog</w>', 'ca', 'cat', 'cats</w>']
  tokens += ['<|startoftext|>', '<|endoftext|>']
  (directory / 'vocab.json').write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
  (directory / 'merges.txt').write_text(
    '#version: 0.2\n' + ''.join(f'{a} {b}\n' for a, b in merges)
  )


def make_clip(directory: pathlib.Path, images: list[np.ndarray]) -> dict:
  from transformers import CLIPImageProcessor

  clip_vocab(directory)
  tokenizer = CLIPTokenizer(
    vocab=str(directory / 'vocab.json'), merges=str(directory / 'merges.txt')
  )
  for name in ('vocab.json', 'merges.txt'):
    (directory / name).unlink()
  tokenizer.save_pretrained(directory)
  tower = dict(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2)
  eos = tokenizer.convert_tokens_to_ids('<|endoftext|>')
  config = CLIPConfig(
    text_config=dict(
      tower,
      vocab_size=len(tokenizer),
      max_position_embeddings=77,
      bos_token_id=eos - 1,
      eos_token_id=eos,
      pad_token_id=eos,
    ),
    vision_config=dict(tower, image_size=32, patch_size=8),
    projection_dim=16,
    initializer_factor=4.0,
  )
  torch.manual_seed(0)
  model = CLIPModel(config).eval()
  model.save_pretrained(directory)
  processor = CLIPImageProcessor(size={'shortest_edge': 32}, crop_size={'height': 32, 'width': 32})
  processor.save_pretrained(directory)
  tokens = tokenizer(
    TEXTS, padding='max_length', truncation=True, max_length=77, return_tensors='pt'
  )
  pixels = processor(images=images, return_tensors='pt')['pixel_values']
  with torch.inference_mode():
    image = model.get_image_features(pixel_values=pixels).pooler_output
    text = model.get_text_features(**tokens).pooler_output
  return {
    'clip_input_ids': tokens['input_ids'].numpy(),
    'clip_attention_mask': tokens['attention_mask'].numpy(),
    'clip_image_embeds': image.numpy(),
    'clip_text_embeds': text.numpy(),
  }


def make_captioner(directory: pathlib.Path, images: list[np.ndarray]) -> dict:
  from transformers import ViTImageProcessor

  words = ['a', 'dog', 'cat', 'man', 'on', 'the', 'grass', 'with', 'red', 'ball']
  chars = [chr(c) for c in range(ord('a'), ord('z') + 1)]
  tokens, merges = ['\u0120'] + chars, []
  for word in words:
    prefix = '\u0120'
    for char in word:
      if prefix + char not in tokens:
        merges.append((prefix, char))
        tokens.append(prefix + char)
      prefix += char
  tokens.append('<|endoftext|>')
  (directory / 'vocab.json').write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
  (directory / 'merges.txt').write_text(
    '#version: 0.2\n' + ''.join(f'{a} {b}\n' for a, b in merges)
  )
  tokenizer = GPT2Tokenizer(
    vocab=str(directory / 'vocab.json'), merges=str(directory / 'merges.txt')
  )
  for name in ('vocab.json', 'merges.txt'):
    (directory / name).unlink()
  tokenizer.save_pretrained(directory)
  eos = len(tokens) - 1
  encoder = ViTConfig(
    image_size=32,
    patch_size=8,
    hidden_size=24,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=48,
    initializer_range=0.3,
  )
  decoder = GPT2Config(
    vocab_size=len(tokens),
    n_positions=32,
    n_embd=24,
    n_layer=2,
    n_head=2,
    bos_token_id=eos,
    eos_token_id=eos,
    add_cross_attention=True,
    is_decoder=True,
    initializer_range=0.3,
  )
  config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
  config.decoder_start_token_id = config.pad_token_id = config.eos_token_id = eos
  torch.manual_seed(0)
  model = VisionEncoderDecoderModel(config).eval()
  with (
    torch.no_grad()
  ):  # A random model's EOS would win at once: weaken it (captions of ~5-11 tokens).
    model.decoder.transformer.wte.weight[eos] *= EOS_SCALE
  model.generation_config.update(
    decoder_start_token_id=eos, pad_token_id=eos, eos_token_id=eos, bos_token_id=eos
  )
  model.save_pretrained(directory)
  processor = ViTImageProcessor(
    size={'height': 32, 'width': 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3
  )
  processor.save_pretrained(directory)
  square = [img[:32, :32] for img in images]  # Already the model's size: no resize to match.
  pixels = processor(images=square, return_tensors='pt')['pixel_values']
  out = {}
  with torch.inference_mode():
    ids = model.generate(
      pixel_values=pixels, max_length=CAPTION_LENGTH, num_beams=1, do_sample=False
    )
    out['caption_ids'] = ids.numpy()
    logits = model(pixel_values=pixels, decoder_input_ids=ids).logits
  top2 = torch.topk(logits, 2, dim=-1).values
  print(
    'captioner: smallest greedy top-1/top-2 logit margin',
    float((top2[..., 0] - top2[..., 1]).min()),
  )
  out['caption_images'] = np.stack(square)
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', type=pathlib.Path, default=ROOT / 'tests' / 'data' / 'parity')
  args = parser.parse_args()
  shutil.rmtree(args.out, ignore_errors=True)
  (args.out / 'clip').mkdir(parents=True)
  (args.out / 'captioner').mkdir(parents=True)
  rng = np.random.default_rng(0)
  images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in IMAGE_SHAPES]
  outputs = make_clip(args.out / 'clip', images)
  outputs.update(make_captioner(args.out / 'captioner', images))
  for i, img in enumerate(images):
    outputs[f'image_{i}'] = img
  outputs['texts'] = np.array(TEXTS)
  np.savez_compressed(args.out / 'outputs.npz', **outputs)
  (args.out / 'VERSIONS').write_text(
    f'transformers {transformers.__version__}\ntorch {torch.__version__}\n'
  )
  total = sum(f.stat().st_size for f in args.out.rglob('*') if f.is_file())
  print(f'wrote {args.out} ({total / 1024:.0f} KiB)')


if __name__ == '__main__':
  main()

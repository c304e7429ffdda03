"""Our Flax CLIP and captioner against transformers 5's PyTorch models (no torch here).

tests/data/parity/ holds tiny random checkpoints written by `CLIPModel.save_pretrained` and
`VisionEncoderDecoderModel.save_pretrained` (transformers 5) and their outputs on fixed inputs
(benchmarks/make_parity_goldens.py, run with the `bench` extra, writes them).
"""

import dataclasses
import pathlib

import jax
import numpy as np
import pytest

from clipit_jax.media import captioner_model
from clipit_jax.media import captions
from clipit_jax.media import encoders

PARITY = pathlib.Path(__file__).parent / 'data' / 'parity'


@pytest.fixture(scope='module')
def golden():
  with np.load(PARITY / 'outputs.npz') as data:
    return dict(data)


@pytest.fixture(scope='module')
def clip():
  return encoders.load_clip(str(PARITY / 'clip'))


def _cosines(a, b):
  b = b / np.linalg.norm(b, axis=-1, keepdims=True)
  return np.sum(a * b, axis=-1)


def test_clip_tokenizer_matches_transformers(clip, golden):
  texts = [str(t) for t in golden['texts']]
  tokens = clip.tokenizer(
    texts, padding='max_length', truncation=True, max_length=77, return_tensors='np'
  )
  np.testing.assert_array_equal(tokens['input_ids'], golden['clip_input_ids'])
  np.testing.assert_array_equal(tokens['attention_mask'], golden['clip_attention_mask'])


def test_clip_text_embeddings_match_pytorch(clip, golden):
  ours = clip.encode_texts([str(t) for t in golden['texts']])
  assert ours.shape == golden['clip_text_embeds'].shape == (4, 16)
  assert _cosines(ours, golden['clip_text_embeds']).min() >= 0.99999


def test_clip_image_embeddings_match_pytorch_with_its_preprocessing(clip, golden):
  """Odd-sized images through `clip_crop` (CLIPImageProcessor's resize and crop) and our model."""
  crops = np.stack([encoders.clip_crop(golden[f'image_{i}'], clip.image_size) for i in range(4)])
  ours = clip.encode_images(crops)
  assert _cosines(ours, golden['clip_image_embeds']).min() >= 0.99999


def test_a_save_pretrained_clip_keeps_its_identity(clip):
  assert clip.model_id.startswith(str((PARITY / 'clip').resolve()) + '|')
  assert 'model.safetensors:' in clip.model_id
  assert (clip.image_size, clip.embed_dim, clip.context_length) == (32, 16, 77)


@pytest.fixture(scope='module')
def captioner(golden):
  length = golden['caption_ids'].shape[1]
  return captions.load_captioner(str(PARITY / 'captioner'), max_length=length, batch_size=4)


def test_captioner_greedy_tokens_match_pytorch_generate(captioner, golden):
  np.testing.assert_array_equal(
    captioner.token_ids(golden['caption_images']), golden['caption_ids']
  )


def _log_likelihood(captioner, pixels, ids):
  """Sum of log p(token) over each row's tokens up to and including its first EOS."""
  logits = captioner.model.apply({'params': captioner.params}, pixels, ids)
  logp = np.asarray(jax.nn.log_softmax(logits[:, :-1]))
  picked = np.take_along_axis(logp, ids[:, 1:, None], axis=-1)[..., 0]
  eos = captioner.model.config.eos_token_id
  after_eos = np.cumsum(np.cumsum(ids[:, 1:] == eos, axis=1), axis=1) > 1
  return np.where(after_eos, 0, picked).sum(1), (~after_eos).sum(1)


def test_beam_search_of_one_beam_is_greedy_and_more_beams_score_higher(captioner, golden):
  frames = golden['caption_images']
  greedy = captioner.token_ids(frames)
  pixels = (frames.astype(np.float32) / 255 - 0.5) / 0.5
  search = jax.jit(captioner_model.beam_search, static_argnums=(0, 3, 4))
  one = search(captioner.model, captioner.params, pixels, greedy.shape[1], 1)
  np.testing.assert_array_equal(one, greedy)
  wide = dataclasses.replace(captioner, num_beams=3).token_ids(frames)
  both = np.concatenate([greedy, wide])
  ll, n = _log_likelihood(captioner, np.concatenate([pixels, pixels]), both)
  (greedy_ll, wide_ll), (greedy_n, wide_n) = np.split(ll, 2), np.split(n, 2)
  assert np.all(wide_ll / wide_n >= greedy_ll / greedy_n - 1e-5)
  assert np.any(wide != greedy)

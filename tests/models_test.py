"""Tests of the CLIP-It network: shapes, masks, windows and the language path."""

import functools

import flax.linen as nn
import jax
import numpy as np
import pytest

from clipit_jax import evaluators
from clipit_jax import input_pipeline
from clipit_jax import mixed_precision
from clipit_jax import models
from testutil import random_batch, small_config


def _model_and_params(**overrides):
  config = small_config(**overrides).model
  params = models.init_params(config, jax.random.PRNGKey(0))
  return config, models.CLIPIt(config), params


def _apply(model, params, frames, frame_mask, text, text_mask):
  """`model.apply`, jitted: one compile of the whole model, not one per operation."""
  return jax.jit(model.apply)({'params': params}, frames, frame_mask, text, text_mask)


@pytest.mark.parametrize('fusion', models.TEXT_FUSIONS)
def test_shapes_and_score_range(fusion):
  config, model, params = _model_and_params(text_fusion=fusion)
  rng = np.random.default_rng(0)
  text_len = 1 if fusion == 'query' else config.num_captions
  frames = rng.normal(size=(3, 16, config.frame_dim)).astype(np.float32)
  text = rng.normal(size=(3, text_len, config.text_dim)).astype(np.float32)
  out = _apply(model, params, frames, np.ones((3, 16), bool), text, np.ones((3, text_len), bool))
  assert out['scores'].shape == (3, 16)
  assert out['logits'].shape == (3, 16)
  assert out['reconstruction'].shape == (3, 16, config.frame_dim)
  scores = np.asarray(out['scores'])
  assert np.all(scores > 0) and np.all(scores < 1)
  np.testing.assert_allclose(scores, 1 / (1 + np.exp(-np.asarray(out['logits']))), rtol=1e-6)


def test_padded_frames_do_not_change_real_scores():
  config, model, params = _model_and_params()
  rng = np.random.default_rng(1)
  real = rng.normal(size=(2, 10, config.frame_dim)).astype(np.float32)
  junk = 100 * rng.normal(size=(2, 6, config.frame_dim)).astype(np.float32)
  text = rng.normal(size=(2, config.num_captions, config.text_dim)).astype(np.float32)
  text_mask = np.ones((2, config.num_captions), bool)
  unpadded = _apply(model, params, real, np.ones((2, 10), bool), text, text_mask)
  padded_mask = np.arange(16)[None] < 10
  padded = _apply(
    model, params, np.concatenate([real, junk], 1), np.repeat(padded_mask, 2, 0), text, text_mask
  )
  np.testing.assert_allclose(padded['scores'][:, :10], unpadded['scores'], atol=1e-5)
  np.testing.assert_allclose(
    padded['reconstruction'][:, :10], unpadded['reconstruction'], atol=1e-4
  )


def test_center_frames_subtracts_the_mean_of_real_frames_only():
  frames = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
  mask = np.array([[True, True, True, False], [True, False, False, False]])
  centered = np.asarray(models.center_frames(frames, mask))
  np.testing.assert_allclose(centered[0, :3], frames[0, :3] - frames[0, :3].mean(0), atol=1e-6)
  np.testing.assert_array_equal(centered[0, 3], 0.0)  # Padding stays zero.
  np.testing.assert_array_equal(centered[1], 0.0)  # One real frame: itself is the mean.


def test_centered_model_ignores_what_all_frames_share():
  """With center_frames a vector added to every real frame (a video's background) and junk
  in the padding change no score."""
  config, model, params = _model_and_params(center_frames=True)
  rng = np.random.default_rng(3)
  frames = rng.normal(size=(2, 12, config.frame_dim)).astype(np.float32)
  mask = np.arange(12)[None].repeat(2, 0) < np.array([[12], [9]])
  text = rng.normal(size=(2, config.num_captions, config.text_dim)).astype(np.float32)
  text_mask = np.ones((2, config.num_captions), bool)
  offset = 5 * rng.normal(size=(2, 1, config.frame_dim)).astype(np.float32)
  shifted = np.where(mask[..., None], frames + offset, 100.0)
  a = _apply(model, params, frames, mask, text, text_mask)['scores']
  b = _apply(model, params, shifted, mask, text, text_mask)['scores']
  np.testing.assert_allclose(np.asarray(b)[mask], np.asarray(a)[mask], atol=1e-4)
  _, plain, plain_params = _model_and_params()  # Not so without it.
  c = _apply(plain, plain_params, frames, mask, text, text_mask)['scores']
  d = _apply(plain, plain_params, shifted, mask, text, text_mask)['scores']
  assert np.max(np.abs(np.asarray(d) - np.asarray(c))[mask]) > 1e-3


def test_smooth_logits_averages_the_real_steps_within_reach():
  logits = np.array([[1.0, 2.0, 4.0, 8.0, 16.0], [3.0, 5.0, 7.0, -50.0, -50.0]], np.float32)
  mask = np.array([[True] * 5, [True, True, True, False, False]])
  smoothed = np.asarray(models.smooth_logits(logits, mask, 3))
  expected_0 = [(1 + 2) / 2, (1 + 2 + 4) / 3, (2 + 4 + 8) / 3, (4 + 8 + 16) / 3, (8 + 16) / 2]
  np.testing.assert_allclose(smoothed[0], expected_0, rtol=1e-6)
  np.testing.assert_allclose(smoothed[1, :3], [4.0, 5.0, 6.0], rtol=1e-6)  # Padding not used.
  np.testing.assert_array_equal(smoothed[1, 3:], -50.0)  # Padding left as it was.
  np.testing.assert_array_equal(models.smooth_logits(logits, mask, 1), logits)


def test_smoothed_model_outputs_smoothed_logits_and_ignores_padding():
  """score_smoothing=3 is the plain model's scorer with its logits averaged over 3 steps (the
  decoder then weighs by the smoothed scores, so only the logits are compared)."""
  config, model, params = _model_and_params(score_smoothing=3)
  plain = models.CLIPIt(small_config().model)  # The same parameters: smoothing adds none.
  rng = np.random.default_rng(4)
  frames = rng.normal(size=(2, 12, config.frame_dim)).astype(np.float32)
  mask = np.arange(12)[None].repeat(2, 0) < np.array([[12], [9]])
  text = rng.normal(size=(2, config.num_captions, config.text_dim)).astype(np.float32)
  text_mask = np.ones((2, config.num_captions), bool)
  raw = np.asarray(_apply(plain, params, frames, mask, text, text_mask)['logits'])
  out = _apply(model, params, frames, mask, text, text_mask)
  expected = np.asarray(models.smooth_logits(raw, mask, 3))
  np.testing.assert_allclose(np.asarray(out['logits'])[mask], expected[mask], atol=1e-5)
  junk = np.where(mask[..., None], frames, 100.0).astype(np.float32)
  again = _apply(model, params, junk, mask, text, text_mask)
  np.testing.assert_allclose(
    np.asarray(again['scores'])[mask], np.asarray(out['scores'])[mask], atol=1e-5
  )


@pytest.mark.parametrize('fusion', ['concat', 'tokens'])
def test_masked_captions_are_ignored(fusion):
  config, model, params = _model_and_params(text_fusion=fusion)
  rng = np.random.default_rng(2)
  frames = rng.normal(size=(1, 16, config.frame_dim)).astype(np.float32)
  text = rng.normal(size=(1, config.num_captions, config.text_dim)).astype(np.float32)
  text_mask = np.array([[True, True, False]])
  other = text.copy()
  other[0, 2] = 50.0
  mask = np.ones((1, 16), bool)
  a = _apply(model, params, frames, mask, text, text_mask)['scores']
  b = _apply(model, params, frames, mask, other, text_mask)['scores']
  np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize('fusion', models.TEXT_FUSIONS)
def test_language_changes_scores(fusion):
  config, model, params = _model_and_params(text_fusion=fusion)
  rng = np.random.default_rng(3)
  text_len = 1 if fusion == 'query' else config.num_captions
  frames = rng.normal(size=(1, 16, config.frame_dim)).astype(np.float32)
  mask = np.ones((1, 16), bool)
  text_mask = np.ones((1, text_len), bool)
  a = _apply(
    model,
    params,
    frames,
    mask,
    rng.normal(size=(1, text_len, config.text_dim)).astype(np.float32),
    text_mask,
  )
  b = _apply(
    model,
    params,
    frames,
    mask,
    rng.normal(size=(1, text_len, config.text_dim)).astype(np.float32),
    text_mask,
  )
  assert np.max(np.abs(np.asarray(a['scores']) - np.asarray(b['scores']))) > 1e-3


def test_mlp_cross_modal_block():
  """Table 3's variant: an MLP on [frame, mean text]; text-dependent, no text -> no contribution."""
  config, model, params = _model_and_params(cross_modal='mlp', text_fusion='tokens')
  assert 'language_mlp' in params and 'language_attention' not in params
  rng = np.random.default_rng(4)
  frames = rng.normal(size=(1, 16, config.frame_dim)).astype(np.float32)
  mask = np.ones((1, 16), bool)
  text = rng.normal(size=(2, 1, config.num_captions, config.text_dim)).astype(np.float32)
  text_mask = np.ones((1, config.num_captions), bool)
  a, b = (np.asarray(_apply(model, params, frames, mask, t, text_mask)['scores']) for t in text)
  assert np.max(np.abs(a - b)) > 1e-3
  # Without text, the block is LayerNorm(frames): its MLP and the text do not matter.
  no_text = np.zeros((1, config.num_captions), bool)
  zeroed = jax.tree_util.tree_map_with_path(
    lambda path, x: 0 * x if 'language_mlp' in str(path) and 'mlp' in str(path[1]) else x, params
  )
  c, d = (
    np.asarray(_apply(model, p, frames, mask, text[0], no_text)['scores']) for p in (params, zeroed)
  )
  np.testing.assert_allclose(c, d, atol=1e-6)
  with pytest.raises(ValueError, match="unknown cross_modal 'gru'"):
    _model_and_params(cross_modal='gru')


def test_concat_fusion_rejects_wrong_caption_count():
  config, model, params = _model_and_params()
  frames = np.zeros((1, 16, config.frame_dim), np.float32)
  with pytest.raises(ValueError, match='expects 3 caption embeddings'):
    _apply(
      model,
      params,
      frames,
      np.ones((1, 16), bool),
      np.zeros((1, 5, config.text_dim), np.float32),
      np.ones((1, 5), bool),
    )


def test_split_and_stitch_round_trip():
  x = np.arange(37 * 2).reshape(37, 2)
  windows, mask = input_pipeline.split_into_windows(x, 16)
  assert windows.shape == (3, 16, 2)
  assert mask.sum() == 37 and mask[2].sum() == 5 and not mask[2, 5:].any()
  np.testing.assert_array_equal(windows[1, 0], x[16])
  np.testing.assert_array_equal(windows[2, 5:], 0)
  np.testing.assert_array_equal(input_pipeline.stitch_windows(windows, 37), x)
  empty, empty_mask = input_pipeline.split_into_windows(np.zeros((0, 4)), 16)
  assert empty.shape == (0, 16, 4) and empty_mask.shape == (0, 16)


def test_score_video_equals_per_window_scoring():
  config, model, params = _model_and_params()
  rng = np.random.default_rng(4)
  frames = rng.normal(size=(37, config.frame_dim)).astype(np.float32)
  text = rng.normal(size=(config.num_captions, config.text_dim)).astype(np.float32)
  text_mask = np.ones(config.num_captions, bool)
  scores = evaluators.score_video(
    jax.jit(model.apply), params, frames, text, text_mask, window=16, batch_size=2
  )
  assert scores.shape == (37,)
  expected = []
  for start in range(0, 37, 16):
    chunk = frames[start : start + 16][None]
    out = _apply(model, params, chunk, np.ones(chunk.shape[:2], bool), text[None], text_mask[None])
    expected.append(np.asarray(out['scores'])[0])
  np.testing.assert_allclose(scores, np.concatenate(expected), atol=1e-5)


def test_sinusoidal_positions():
  table = np.asarray(models.sinusoidal_positions(5, 4))
  pos = np.arange(5)
  np.testing.assert_allclose(table[:, 0], np.sin(pos), atol=1e-6)
  np.testing.assert_allclose(table[:, 1], np.cos(pos), atol=1e-6)
  np.testing.assert_allclose(table[:, 2], np.sin(pos / 100.0), atol=1e-6)
  np.testing.assert_allclose(table[:, 3], np.cos(pos / 100.0), atol=1e-6)


def _bf16_round(x):
  return np.asarray(jax.numpy.asarray(x).astype(jax.numpy.bfloat16).astype(np.float32))


@pytest.mark.parametrize(
  'x_shape,w_shape,k',
  [
    ((3, 5, 8), (8, 6), 1),  # Dense: [B, T, in] . [in, out]
    ((3, 5, 8), (8, 2, 4), 1),  # DenseGeneral q/k/v: [B, T, in] . [in, heads, head_dim]
    ((3, 5, 2, 4), (2, 4, 7), 2),  # DenseGeneral out: [B, T, heads, head_dim] . [heads, ..., out]
  ],
)
def test_bf16_dot_general_forward_and_gradients(x_shape, w_shape, k):
  """Mixed precision = float32 arithmetic on bfloat16-rounded operands (and cotangents)."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=x_shape).astype(np.float32)
  w = rng.normal(size=w_shape).astype(np.float32)
  g = rng.normal(size=x_shape[:-k] + w_shape[k:]).astype(np.float32)
  dims = ((tuple(range(x.ndim - k, x.ndim)), tuple(range(k))), ((), ()))
  out, vjp = jax.vjp(lambda a, b: mixed_precision.bf16_dot_general(a, b, dims), x, w)
  dx, dw = vjp(g)
  xr, wr, gr = _bf16_round(x), _bf16_round(w), _bf16_round(g)
  contract = list(range(x.ndim - k, x.ndim))
  np.testing.assert_allclose(
    out, np.tensordot(xr, wr, (contract, list(range(k)))), rtol=1e-5, atol=1e-5
  )
  np.testing.assert_allclose(  # dx = g . w^T over w's output dims.
    dx,
    np.tensordot(gr, wr, (list(range(x.ndim - k, gr.ndim)), list(range(k, w.ndim)))),
    rtol=1e-5,
    atol=1e-5,
  )
  np.testing.assert_allclose(  # dw = x^T . g over the batch dims.
    dw,
    np.tensordot(xr, gr, (list(range(x.ndim - k)), list(range(x.ndim - k)))),
    rtol=1e-5,
    atol=1e-4,
  )
  assert out.dtype == dx.dtype == dw.dtype == np.float32
  # Not the float32 product: the operands really were rounded.
  assert not np.allclose(out, np.tensordot(x, w, (contract, list(range(k)))), rtol=1e-6, atol=0)


def test_bf16_dot_general_other_forms_stay_float32():
  rng = np.random.default_rng(1)
  a = rng.normal(size=(2, 3, 4)).astype(np.float32)
  b = rng.normal(size=(2, 4, 5)).astype(np.float32)
  batched = (((2,), (1,)), ((0,), (0,)))  # A batched matmul is not a Dense kernel.
  np.testing.assert_allclose(
    mixed_precision.bf16_dot_general(a, b, batched), np.einsum('bij,bjk->bik', a, b), rtol=1e-6
  )


def test_bf16_matmuls_match_float32_model():
  config = small_config()
  params = models.init_params(config.model, jax.random.PRNGKey(0))
  mixed = config.model.copy_and_resolve_references()
  mixed.matmul_dtype = 'bfloat16'
  mixed_params = jax.eval_shape(lambda: models.init_params(mixed, jax.random.PRNGKey(0)))
  assert jax.tree.structure(mixed_params) == jax.tree.structure(params)
  batch = random_batch(config, 2, [16, 9], seed=3)
  args = (batch['frames'], batch['frame_mask'], batch['text'], batch['text_mask'])
  f32 = _apply(models.CLIPIt(config.model), params, *args)
  b16 = _apply(models.CLIPIt(mixed), params, *args)
  for key in ('scores', 'reconstruction'):
    a, b = np.asarray(f32[key]), np.asarray(b16[key])
    rel = np.linalg.norm(a - b) / np.linalg.norm(a)
    assert 1e-6 < rel < 1e-2, (key, rel)
  mixed.matmul_dtype = 'float16'
  with pytest.raises(ValueError, match="unknown matmul_dtype 'float16'"):
    models.init_params(mixed, jax.random.PRNGKey(0))


def test_jax_nn_attention_matches_flax_einsum_attention():
  """`attention='dot_product_attention'`: the same outputs and gradients, padding included."""
  _, model, params = _model_and_params()
  fused = models.CLIPIt(small_config(attention='dot_product_attention').model)
  batch = random_batch(small_config(), 3, [16, 9, 4], seed=5)
  batch['text_mask'][2, 1:] = False
  args = (batch['frames'], batch['frame_mask'], batch['text'], batch['text_mask'])
  mask = batch['frame_mask']

  def loss(m, p):
    out = m.apply({'params': p}, *args)
    return jax.numpy.sum(out['logits'] * mask), out

  (ga, a), (gb, b) = (
    jax.jit(jax.grad(functools.partial(loss, m), has_aux=True))(params) for m in (model, fused)
  )
  np.testing.assert_allclose(b['scores'][mask], a['scores'][mask], atol=1e-6)
  np.testing.assert_allclose(b['reconstruction'][mask], a['reconstruction'][mask], atol=1e-5)
  assert np.all(np.isfinite(b['reconstruction']))  # Padding rows too.
  for x, y in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
    np.testing.assert_allclose(y, x, atol=1e-5)
  with pytest.raises(ValueError, match="unknown attention 'flash'"):
    models.attention_fn(small_config(attention='flash').model)


def test_jax_nn_attention_draws_flax_attention_dropout():
  """Where attention dropout is drawn, the weights are dropped exactly as Flax drops them."""
  q, k, v = np.random.default_rng(0).normal(size=(3, 2, 5, 4, 8)).astype(np.float32)
  mask = np.tril(np.ones((2, 1, 5, 5), bool))
  rng = jax.random.PRNGKey(0)
  kwargs = dict(mask=mask, dropout_rng=rng, dropout_rate=0.5, deterministic=False)
  expected = nn.dot_product_attention(q, k, v, **kwargs)
  np.testing.assert_array_equal(models.dot_product_attention(q, k, v, **kwargs), expected)
  assert not np.allclose(expected, nn.dot_product_attention(q, k, v, mask=mask))

"""An image captioner in Flax: a ViT encoder and a GPT-2 decoder with cross-attention.

This is the hub's `VisionEncoderDecoderModel` of a ViT and a GPT-2 (what
`nlpconnect/vit-gpt2-image-captioning` is). The parameter tree follows the hub's PyTorch names
(`encoder/encoder/layer/0/attention/attention/query`, `decoder/transformer/h/0/crossattention/q_attn`,
...), so `hub.torch_to_flax` converts its `model.safetensors` by name. Decoding keeps the
decoder's keys and values in a fixed-size cache; `greedy` and `beam_search` are jittable.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from clipit_jax.media import clip_model

Dtype = Any


@dataclasses.dataclass(frozen=True)
class VitConfig:
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = 'gelu'
  layer_norm_eps: float = 1e-12
  image_size: int = 224
  patch_size: int = 16
  qkv_bias: bool = True


@dataclasses.dataclass(frozen=True)
class Gpt2Config:
  vocab_size: int = 50257
  n_positions: int = 1024
  n_embd: int = 768
  n_layer: int = 12
  n_head: int = 12
  n_inner: int | None = None
  activation_function: str = 'gelu_new'
  layer_norm_epsilon: float = 1e-5
  scale_attn_weights: bool = True
  scale_attn_by_inverse_layer_idx: bool = False


@dataclasses.dataclass(frozen=True)
class CaptionerConfig:
  """A hub `VisionEncoderDecoderConfig` of a ViT and a GPT-2, and its generation tokens."""

  encoder: VitConfig
  decoder: Gpt2Config
  decoder_start_token_id: int
  eos_token_id: int
  pad_token_id: int

  @classmethod
  def from_dict(cls, d: dict, generation: dict | None = None) -> CaptionerConfig:
    """From a hub config.json's dict (and its generation_config.json, which wins)."""
    enc, dec = d.get('encoder', {}), d.get('decoder', {})
    if enc.get('model_type', 'vit') != 'vit' or dec.get('model_type', 'gpt2') != 'gpt2':
      raise ValueError(
        f'a {enc.get("model_type")}-{dec.get("model_type")} encoder-decoder; this captioner is '
        'a ViT encoder with a GPT-2 decoder'
      )
    pick = lambda klass, src: klass(
      **{f.name: src[f.name] for f in dataclasses.fields(klass) if f.name in src}
    )
    tokens = {**dec, **d, **(generation or {})}
    eos = tokens.get('eos_token_id')
    eos = eos[0] if isinstance(eos, list) else eos
    start = tokens.get('decoder_start_token_id')
    start = tokens.get('bos_token_id', eos) if start is None else start
    pad = tokens.get('pad_token_id')
    return cls(
      encoder=pick(VitConfig, enc),
      decoder=pick(Gpt2Config, dec),
      decoder_start_token_id=int(start),
      eos_token_id=int(eos),
      pad_token_id=int(eos if pad is None else pad),
    )

  def to_dict(self) -> dict:
    """The hub config.json (`VisionEncoderDecoderModel.from_pretrained` reads it)."""
    tokens = dict(
      decoder_start_token_id=self.decoder_start_token_id,
      eos_token_id=self.eos_token_id,
      pad_token_id=self.pad_token_id,
      bos_token_id=self.eos_token_id,
    )
    return {
      'architectures': ['VisionEncoderDecoderModel'],
      'model_type': 'vision-encoder-decoder',
      'is_encoder_decoder': True,
      'encoder': {**dataclasses.asdict(self.encoder), 'model_type': 'vit'},
      'decoder': {
        **dataclasses.asdict(self.decoder),
        'model_type': 'gpt2',
        'add_cross_attention': True,
        'is_decoder': True,
        **tokens,
      },
      **tokens,
    }


# ------------------------------------------------------------------- ViT --


class VitSelfAttention(nn.Module):
  """Under `attention/attention`: query, key, value."""

  config: VitConfig
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = self.config
    b, t, width = x.shape
    heads = lambda name: nn.Dense(width, use_bias=c.qkv_bias, dtype=self.dtype, name=name)(
      x
    ).reshape(b, t, c.num_attention_heads, -1)
    return clip_model.attend(heads('query'), heads('key'), heads('value'), None).reshape(
      b, t, width
    )


class Dense(nn.Module):
  """A module holding one Dense named `dense` (the hub's `output.dense`, `intermediate.dense`)."""

  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.features, dtype=self.dtype, name='dense')(x)


class VitAttention(nn.Module):
  config: VitConfig
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    y = VitSelfAttention(self.config, self.dtype, name='attention')(x)
    return Dense(self.config.hidden_size, self.dtype, name='output')(y)


class VitLayer(nn.Module):
  config: VitConfig
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = self.config
    norm = lambda name: nn.LayerNorm(c.layer_norm_eps, dtype=self.dtype, name=name)
    x = x + VitAttention(c, self.dtype, name='attention')(norm('layernorm_before')(x))
    y = Dense(c.intermediate_size, self.dtype, name='intermediate')(norm('layernorm_after')(x))
    return x + Dense(c.hidden_size, self.dtype, name='output')(
      clip_model.activation(c.hidden_act)(y)
    )


class VitLayers(nn.Module):
  config: VitConfig
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    for i in range(self.config.num_hidden_layers):
      x = VitLayer(self.config, self.dtype, name=str(i))(x)
    return x


class VitStack(nn.Module):
  """The hub's `encoder.encoder`: `layer.N`."""

  config: VitConfig
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    return VitLayers(self.config, self.dtype, name='layer')(x)


class PatchEmbeddings(nn.Module):
  config: VitConfig
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, pixels):
    c, p = self.config, self.config.patch_size
    x = nn.Conv(c.hidden_size, (p, p), (p, p), 'VALID', dtype=self.dtype, name='projection')(pixels)
    return x.reshape(x.shape[0], -1, c.hidden_size)


class VitEmbeddings(nn.Module):
  config: VitConfig
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, pixels):
    c = self.config
    x = PatchEmbeddings(c, self.dtype, name='patch_embeddings')(pixels)
    n = x.shape[1] + 1
    cls = self.param('cls_token', nn.initializers.normal(0.02), (1, 1, c.hidden_size))
    positions = self.param(
      'position_embeddings', nn.initializers.normal(0.02), (1, n, c.hidden_size)
    )
    cls = jnp.broadcast_to(cls.astype(x.dtype), (x.shape[0], 1, c.hidden_size))
    return jnp.concatenate([cls, x], axis=1) + positions.astype(x.dtype)


class Vit(nn.Module):
  """pixels [b, size, size, 3], normalised -> hidden states [b, patches + 1, hidden]."""

  config: VitConfig
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, pixels):
    c = self.config
    x = VitEmbeddings(c, self.dtype, name='embeddings')(pixels)
    x = VitStack(c, self.dtype, name='encoder')(x)
    return nn.LayerNorm(c.layer_norm_eps, dtype=self.dtype, name='layernorm')(x)


# ----------------------------------------------------------------- GPT-2 --


def _scaling(c: Gpt2Config, layer: int) -> float:
  scale = (c.n_embd // c.n_head) ** -0.5 if c.scale_attn_weights else 1.0
  return scale / (layer + 1) if c.scale_attn_by_inverse_layer_idx else scale


def _attend(q, k, v, mask, scale: float):
  """`clip_model.attend` with GPT-2's scale (q is pre-multiplied to undo attend's own)."""
  return clip_model.attend(q * (scale * q.shape[-1] ** 0.5), k, v, mask)


class SelfAttention(nn.Module):
  """Causal self-attention reading and writing a key/value cache [b, length, heads, d]."""

  config: Gpt2Config
  layer: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, cache, index):
    c = self.config
    b, t, width = x.shape
    qkv = nn.Dense(3 * width, dtype=self.dtype, name='c_attn')(x)
    q, k, v = (y.reshape(b, t, c.n_head, -1) for y in jnp.split(qkv, 3, axis=-1))
    keys = jax.lax.dynamic_update_slice(cache[0], k.astype(cache[0].dtype), (0, index, 0, 0))
    values = jax.lax.dynamic_update_slice(cache[1], v.astype(cache[1].dtype), (0, index, 0, 0))
    length = keys.shape[1]
    mask = jnp.arange(length)[None, :] <= index + jnp.arange(t)[:, None]  # [t, length]
    y = _attend(q, keys, values, mask[None, None], _scaling(c, self.layer)).reshape(b, t, width)
    return nn.Dense(width, dtype=self.dtype, name='c_proj')(y), (keys, values)


class CrossAttention(nn.Module):
  """Attention of the tokens to the encoder's states: q_attn on x, c_attn (keys, values) on them."""

  config: Gpt2Config
  layer: int
  dtype: Dtype = jnp.float32

  def setup(self):
    width = self.config.n_embd
    self.q_attn = nn.Dense(width, dtype=self.dtype)
    self.c_attn = nn.Dense(2 * width, dtype=self.dtype)
    self.c_proj = nn.Dense(width, dtype=self.dtype)

  def keys_values(self, encoded):
    b, s, _ = encoded.shape
    k, v = jnp.split(self.c_attn(encoded), 2, axis=-1)
    return k.reshape(b, s, self.config.n_head, -1), v.reshape(b, s, self.config.n_head, -1)

  def __call__(self, x, keys_values):
    b, t, width = x.shape
    q = self.q_attn(x).reshape(b, t, self.config.n_head, -1)
    y = _attend(q, *keys_values, None, _scaling(self.config, self.layer)).reshape(b, t, width)
    return self.c_proj(y)


class Mlp(nn.Module):
  config: Gpt2Config
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = self.config
    y = nn.Dense(c.n_inner or 4 * c.n_embd, dtype=self.dtype, name='c_fc')(x)
    return nn.Dense(c.n_embd, dtype=self.dtype, name='c_proj')(
      clip_model.activation(c.activation_function)(y)
    )


class Block(nn.Module):
  config: Gpt2Config
  layer: int
  dtype: Dtype = jnp.float32

  def setup(self):
    c, eps = self.config, self.config.layer_norm_epsilon
    self.ln_1 = nn.LayerNorm(eps, dtype=self.dtype)
    self.attn = SelfAttention(c, self.layer, self.dtype)
    self.ln_cross_attn = nn.LayerNorm(eps, dtype=self.dtype)
    self.crossattention = CrossAttention(c, self.layer, self.dtype)
    self.ln_2 = nn.LayerNorm(eps, dtype=self.dtype)
    self.mlp = Mlp(c, self.dtype)

  def __call__(self, x, cache, index, cross_kv):
    y, cache = self.attn(self.ln_1(x), cache, index)
    x = x + y
    x = x + self.crossattention(self.ln_cross_attn(x), cross_kv)
    return x + self.mlp(self.ln_2(x)), cache


class Blocks(nn.Module):
  """GPT-2's `h`: the blocks, named "0", "1", ..."""

  config: Gpt2Config
  dtype: Dtype = jnp.float32

  def setup(self):
    c = self.config
    self.blocks = [Block(c, i, self.dtype, name=str(i)) for i in range(c.n_layer)]

  def cross_keys_values(self, encoded):
    return [block.crossattention.keys_values(encoded) for block in self.blocks]

  def __call__(self, x, caches, index, cross_kvs):
    new = []
    for block, cache, kv in zip(self.blocks, caches, cross_kvs):
      x, cache = block(x, cache, index, kv)
      new.append(cache)
    return x, new


class Transformer(nn.Module):
  """GPT-2's `transformer`: wte, wpe, h.N, ln_f."""

  config: Gpt2Config
  dtype: Dtype = jnp.float32

  def setup(self):
    c = self.config
    self.wte = nn.Embed(c.vocab_size, c.n_embd, dtype=self.dtype)
    self.wpe = nn.Embed(c.n_positions, c.n_embd, dtype=self.dtype)
    self.h = Blocks(c, self.dtype)
    self.ln_f = nn.LayerNorm(c.layer_norm_epsilon, dtype=self.dtype)

  def cross_keys_values(self, encoded):
    return self.h.cross_keys_values(encoded)

  def __call__(self, ids, caches, index, cross_kvs):
    """ids [b, t] at positions index..index+t -> logits [b, t, vocab], updated caches."""
    x = self.wte(ids) + self.wpe(index + jnp.arange(ids.shape[1])[None])
    x, caches = self.h(x, caches, index, cross_kvs)
    return self.wte.attend(self.ln_f(x)).astype(jnp.float32), caches


class Gpt2(nn.Module):
  """The hub's `decoder` (GPT2LMHeadModel): its `transformer`; the LM head is tied to wte."""

  config: Gpt2Config
  dtype: Dtype = jnp.float32

  def setup(self):
    self.transformer = Transformer(self.config, self.dtype)

  def cross_keys_values(self, encoded):
    return self.transformer.cross_keys_values(encoded)

  def __call__(self, ids, caches, index, cross_kvs):
    return self.transformer(ids, caches, index, cross_kvs)


class Captioner(nn.Module):
  """ViT `encoder`, optional `enc_to_dec_proj`, GPT-2 `decoder`."""

  config: CaptionerConfig
  dtype: Dtype = jnp.float32

  def setup(self):
    c = self.config
    self.encoder = Vit(c.encoder, self.dtype)
    if c.encoder.hidden_size != c.decoder.n_embd:
      self.enc_to_dec_proj = nn.Dense(c.decoder.n_embd, dtype=self.dtype)
    self.decoder = Gpt2(c.decoder, self.dtype)

  def encode(self, pixels):
    """pixels [b, size, size, 3] -> the decoder's cross-attention keys/values, one per layer."""
    x = self.encoder(pixels)
    if self.config.encoder.hidden_size != self.config.decoder.n_embd:
      x = self.enc_to_dec_proj(x)
    return self.decoder.cross_keys_values(x)

  def decode(self, ids, caches, index, cross_kvs):
    return self.decoder(ids, caches, index, cross_kvs)

  def __call__(self, pixels, ids):
    """Teacher-forced logits [b, t, vocab] (for initialisation and tests)."""
    cross = self.encode(pixels)
    return self.decode(
      ids, empty_caches(self.config.decoder, ids.shape[0], ids.shape[1]), 0, cross
    )[0]


def empty_caches(c: Gpt2Config, batch: int, length: int, dtype=jnp.float32):
  shape = (batch, length, c.n_head, c.n_embd // c.n_head)
  return [(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(c.n_layer)]


def param_shapes(config: CaptionerConfig) -> dict:
  size = config.encoder.image_size
  shapes = jax.eval_shape(
    Captioner(config).init,
    jax.random.PRNGKey(0),
    jnp.zeros((1, size, size, 3)),
    jnp.zeros((1, 1), jnp.int32),
  )
  return shapes['params']


def is_conv1d(key: tuple[str, ...]) -> bool:
  """GPT-2's Conv1D layers (PyTorch weight [in, out], like a Flax kernel)."""
  return key[0] == 'decoder' and key[-2] in ('c_attn', 'c_proj', 'c_fc', 'q_attn')


# -------------------------------------------------------------- decoding --


def greedy(model: Captioner, params, pixels, max_length: int):
  """Greedy decoding: int32 [b, max_length], the start token first, padding after EOS.

  What the hub's `generate(num_beams=1, do_sample=False, max_length=...)` returns.
  """
  c = model.config
  b = pixels.shape[0]
  cross = model.apply({'params': params}, pixels, method=Captioner.encode)
  caches = empty_caches(c.decoder, b, max_length, cross[0][0].dtype)
  ids = jnp.full((b, max_length), c.pad_token_id, jnp.int32).at[:, 0].set(c.decoder_start_token_id)

  def step(carry, index):
    ids, caches, done = carry
    token = jax.lax.dynamic_slice_in_dim(ids, index, 1, axis=1)
    logits, caches = model.apply(
      {'params': params}, token, caches, index, cross, method=Captioner.decode
    )
    nxt = jnp.where(done, c.pad_token_id, jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32))
    ids = jax.lax.dynamic_update_slice_in_dim(ids, nxt[:, None], index + 1, axis=1)
    return (ids, caches, done | (nxt == c.eos_token_id)), None

  done = jnp.zeros((b,), bool)
  (ids, _, _), _ = jax.lax.scan(step, (ids, caches, done), jnp.arange(max_length - 1))
  return ids


def beam_search(
  model: Captioner, params, pixels, max_length: int, num_beams: int, length_penalty=1.0
):
  """Beam search: int32 [b, max_length], the best beam by sum of log-probabilities / length**penalty.

  A beam that emits EOS is finished and keeps its slot and score; the others go on to
  `max_length`. (transformers moves finished beams out of the slots, so its beams can differ.)
  """
  c = model.config
  b, k = pixels.shape[0], num_beams
  cross = model.apply({'params': params}, pixels, method=Captioner.encode)
  cross = jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), cross)
  caches = empty_caches(c.decoder, b * k, max_length, cross[0][0].dtype)
  ids = (
    jnp.full((b, k, max_length), c.pad_token_id, jnp.int32)
    .at[:, :, 0]
    .set(c.decoder_start_token_id)
  )
  scores = jnp.tile(jnp.array([0.0] + [-1e9] * (k - 1)), (b, 1))  # One live beam at first.
  done = jnp.zeros((b, k), bool)
  lengths = jnp.zeros((b, k), jnp.int32)  # Tokens after the start token, EOS included.

  def step(carry, index):
    ids, caches, scores, done, lengths = carry
    token = ids[:, :, index].reshape(b * k, 1)
    logits, caches = model.apply(
      {'params': params}, token, caches, index, cross, method=Captioner.decode
    )
    logp = jax.nn.log_softmax(logits[:, -1]).reshape(b, k, -1)
    vocab = logp.shape[-1]
    # A finished beam continues only with padding, at no cost.
    pad_only = jnp.full((vocab,), -jnp.inf).at[c.pad_token_id].set(0.0)
    logp = jnp.where(done[..., None], pad_only, logp)
    total = (scores[..., None] + logp).reshape(b, k * vocab)
    scores, flat = jax.lax.top_k(total, k)
    parent, token = flat // vocab, (flat % vocab).astype(jnp.int32)
    gather = lambda x: jnp.take_along_axis(x, parent, axis=1)
    ids = jnp.take_along_axis(ids, parent[..., None], axis=1).at[:, :, index + 1].set(token)
    was_done = gather(done)
    lengths = gather(lengths) + (~was_done).astype(jnp.int32)
    done = was_done | (token == c.eos_token_id)
    rows = (jnp.arange(b)[:, None] * k + parent).reshape(-1)
    caches = jax.tree.map(lambda x: x[rows], caches)
    return (ids, caches, scores, done, lengths), None

  carry = (ids, caches, scores, done, lengths)
  (ids, _, scores, _, lengths), _ = jax.lax.scan(step, carry, jnp.arange(max_length - 1))
  best = jnp.argmax(scores / jnp.maximum(lengths, 1).astype(jnp.float32) ** length_penalty, axis=1)
  return jnp.take_along_axis(ids, best[:, None, None], axis=1)[:, 0]

"""CLIP in Flax: the vision and text transformers and their projections, for any hub `CLIPModel`.

The parameter tree mirrors the hub's names (`vision_model/encoder/layers/0/self_attn/q_proj`,
`text_projection`, ...), so `hub.torch_to_flax` converts a `model.safetensors` by name, and the
`flax_model.msgpack` of older checkpoints loads as it is. `ClipConfig.from_dict` reads a hub
`config.json` (ViT-B/32, B/16, L/14, L/14-336, ...), with the hub's defaults for missing fields.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

_TEXT_DEFAULTS = dict(
  vocab_size=49408,
  hidden_size=512,
  intermediate_size=2048,
  num_hidden_layers=12,
  num_attention_heads=8,
  max_position_embeddings=77,
  hidden_act='quick_gelu',
  layer_norm_eps=1e-5,
  eos_token_id=49407,
)
_VISION_DEFAULTS = dict(
  hidden_size=768,
  intermediate_size=3072,
  num_hidden_layers=12,
  num_attention_heads=12,
  image_size=224,
  patch_size=32,
  hidden_act='quick_gelu',
  layer_norm_eps=1e-5,
)


@dataclasses.dataclass(frozen=True)
class TowerConfig:
  """One transformer tower (text or vision) of a CLIP."""

  hidden_size: int
  intermediate_size: int
  num_hidden_layers: int
  num_attention_heads: int
  hidden_act: str
  layer_norm_eps: float
  vocab_size: int = 0  # Text only.
  max_position_embeddings: int = 0  # Text only.
  eos_token_id: int = 0  # Text only.
  image_size: int = 0  # Vision only.
  patch_size: int = 0  # Vision only.

  @classmethod
  def from_dict(cls, d: dict | None, defaults: dict) -> TowerConfig:
    fields = {f.name for f in dataclasses.fields(cls)}
    merged = {**defaults, **{k: v for k, v in (d or {}).items() if k in fields}}
    return cls(**{k: v for k, v in merged.items() if k in fields})


@dataclasses.dataclass(frozen=True)
class ClipConfig:
  """A hub `CLIPConfig`'s shapes: the two towers and the joint embedding width."""

  text: TowerConfig
  vision: TowerConfig
  projection_dim: int = 512
  logit_scale_init_value: float = 2.6592

  @classmethod
  def from_dict(cls, d: dict) -> ClipConfig:
    """From a hub config.json's dict (`text_config`, `vision_config`, `projection_dim`)."""
    return cls(
      text=TowerConfig.from_dict(d.get('text_config'), _TEXT_DEFAULTS),
      vision=TowerConfig.from_dict(d.get('vision_config'), _VISION_DEFAULTS),
      projection_dim=int(d.get('projection_dim', 512)),
      logit_scale_init_value=float(d.get('logit_scale_init_value', 2.6592)),
    )

  def to_dict(self) -> dict:
    """The hub config.json's fields (`CLIPModel.from_pretrained` reads it)."""
    text = {
      k: v
      for k, v in dataclasses.asdict(self.text).items()
      if k not in ('image_size', 'patch_size')
    }
    vision = {
      k: v
      for k, v in dataclasses.asdict(self.vision).items()
      if k not in ('vocab_size', 'max_position_embeddings', 'eos_token_id')
    }
    return {
      'architectures': ['CLIPModel'],
      'model_type': 'clip',
      'text_config': {**text, 'model_type': 'clip_text_model'},
      'vision_config': {**vision, 'model_type': 'clip_vision_model'},
      'projection_dim': self.projection_dim,
      'logit_scale_init_value': self.logit_scale_init_value,
    }


def activation(name: str):
  """The hub's `hidden_act` names: quick_gelu, gelu (exact), gelu_new / gelu_pytorch_tanh, relu."""
  if name == 'quick_gelu':
    return lambda x: x * jax.nn.sigmoid(1.702 * x)
  if name == 'gelu':
    return lambda x: jax.nn.gelu(x, approximate=False)
  if name in ('gelu_new', 'gelu_pytorch_tanh', 'gelu_fast'):
    return lambda x: jax.nn.gelu(x, approximate=True)
  if name == 'relu':
    return jax.nn.relu
  raise ValueError(f'unsupported hidden_act {name!r}')


def attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None) -> jax.Array:
  """Scaled dot-product attention: q [b, t, heads, d], k/v [b, s, heads, d], mask [b|1, 1, t, s]."""
  logits = jnp.einsum('bthd,bshd->bhts', q, k) * (q.shape[-1] ** -0.5)
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
  weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
  return jnp.einsum('bhts,bshd->bthd', weights, v)


class Attention(nn.Module):
  """Multi-head self-attention with the hub's q_proj/k_proj/v_proj/out_proj."""

  heads: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None) -> jax.Array:
    b, t, width = x.shape
    split = lambda y: y.reshape(b, t, self.heads, width // self.heads)
    dense = lambda name: nn.Dense(width, dtype=self.dtype, name=name)
    q, k, v = (split(dense(n)(x)) for n in ('q_proj', 'k_proj', 'v_proj'))
    return dense('out_proj')(attend(q, k, v, mask).reshape(b, t, width))


class Layer(nn.Module):
  """`EncoderLayer` with the hub's tree: self_attn, layer_norm1, mlp/{fc1,fc2}, layer_norm2."""

  config: TowerConfig
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None) -> jax.Array:
    c = self.config
    norm = lambda name: nn.LayerNorm(c.layer_norm_eps, dtype=self.dtype, name=name)
    x = x + Attention(c.num_attention_heads, self.dtype, name='self_attn')(
      norm('layer_norm1')(x), mask
    )
    return x + Mlp(c, self.dtype, name='mlp')(norm('layer_norm2')(x))


class Mlp(nn.Module):
  """fc1, the activation, fc2."""

  config: TowerConfig
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = self.config
    x = nn.Dense(c.intermediate_size, dtype=self.dtype, name='fc1')(x)
    return nn.Dense(c.hidden_size, dtype=self.dtype, name='fc2')(activation(c.hidden_act)(x))


class Layers(nn.Module):
  """The stack of layers, named "0", "1", ... like the hub's `encoder.layers.N`."""

  config: TowerConfig
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None) -> jax.Array:
    for i in range(self.config.num_hidden_layers):
      x = Layer(self.config, self.dtype, name=str(i))(x, mask)
    return x


class Encoder(nn.Module):
  config: TowerConfig
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None) -> jax.Array:
    return Layers(self.config, self.dtype, name='layers')(x, mask)


class TextEmbeddings(nn.Module):
  config: TowerConfig
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, input_ids: jax.Array) -> jax.Array:
    c = self.config
    tokens = nn.Embed(c.vocab_size, c.hidden_size, dtype=self.dtype, name='token_embedding')
    positions = nn.Embed(
      c.max_position_embeddings, c.hidden_size, dtype=self.dtype, name='position_embedding'
    )
    return tokens(input_ids) + positions(jnp.arange(input_ids.shape[-1])[None])


class TextTransformer(nn.Module):
  """input_ids [b, t], attention_mask [b, t] -> pooled [b, hidden] (final norm at the EOS token)."""

  config: TowerConfig
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
    c = self.config
    t = input_ids.shape[-1]
    x = TextEmbeddings(c, self.dtype, name='embeddings')(input_ids)
    causal = jnp.tril(jnp.ones((t, t), bool))[None, None]
    mask = causal & attention_mask.astype(bool)[:, None, None, :]
    x = Encoder(c, self.dtype, name='encoder')(x, mask)
    x = nn.LayerNorm(c.layer_norm_eps, dtype=self.dtype, name='final_layer_norm')(x)
    if c.eos_token_id == 2:  # Old configs: the EOS token has the highest id.
      eos = jnp.argmax(input_ids, axis=-1)
    else:  # The first EOS (the padding may be EOS too).
      eos = jnp.argmax(input_ids == c.eos_token_id, axis=-1)
    return x[jnp.arange(x.shape[0]), eos]


class VisionEmbeddings(nn.Module):
  config: TowerConfig
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, pixels: jax.Array) -> jax.Array:
    c = self.config
    p = c.patch_size
    patches = nn.Conv(
      c.hidden_size,
      (p, p),
      (p, p),
      'VALID',
      use_bias=False,
      dtype=self.dtype,
      name='patch_embedding',
    )(pixels)
    b = patches.shape[0]
    patches = patches.reshape(b, -1, c.hidden_size)
    cls = self.param('class_embedding', nn.initializers.normal(1.0), (c.hidden_size,))
    x = jnp.concatenate(
      [jnp.broadcast_to(cls.astype(patches.dtype), (b, 1, c.hidden_size)), patches], 1
    )
    positions = nn.Embed(x.shape[1], c.hidden_size, dtype=self.dtype, name='position_embedding')
    return x + positions(jnp.arange(x.shape[1])[None])


class VisionTransformer(nn.Module):
  """pixels [b, size, size, 3] (normalised) -> pooled [b, hidden] (the class token, post-norm)."""

  config: TowerConfig
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, pixels: jax.Array) -> jax.Array:
    c = self.config
    x = VisionEmbeddings(c, self.dtype, name='embeddings')(pixels)
    x = nn.LayerNorm(c.layer_norm_eps, dtype=self.dtype, name='pre_layrnorm')(
      x
    )  # The hub's spelling.
    x = Encoder(c, self.dtype, name='encoder')(x, None)
    return nn.LayerNorm(c.layer_norm_eps, dtype=self.dtype, name='post_layernorm')(x[:, 0])


class CLIP(nn.Module):
  """The two towers and their projections; `image_features` and `text_features` are unnormalised."""

  config: ClipConfig
  dtype: Dtype = jnp.float32

  def setup(self):
    c = self.config
    self.text_model = TextTransformer(c.text, self.dtype)
    self.vision_model = VisionTransformer(c.vision, self.dtype)
    self.visual_projection = nn.Dense(c.projection_dim, use_bias=False, dtype=self.dtype)
    self.text_projection = nn.Dense(c.projection_dim, use_bias=False, dtype=self.dtype)
    self.logit_scale = self.param(
      'logit_scale', nn.initializers.constant(c.logit_scale_init_value), ()
    )

  def image_features(self, pixels: jax.Array) -> jax.Array:
    """pixels float [b, size, size, 3], normalised -> [b, projection_dim]."""
    return self.visual_projection(self.vision_model(pixels)).astype(jnp.float32)

  def text_features(self, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
    """int [b, t] token ids and mask -> [b, projection_dim]."""
    return self.text_projection(self.text_model(input_ids, attention_mask)).astype(jnp.float32)

  def __call__(self, pixels, input_ids, attention_mask):
    return (
      self.image_features(pixels),
      self.text_features(input_ids, attention_mask),
      self.logit_scale,
    )


def param_shapes(config: ClipConfig) -> dict:
  """The parameter tree's shapes (`jax.ShapeDtypeStruct`s), without computing anything."""
  size = config.vision.image_size
  model = CLIP(config)
  ids = jnp.zeros((1, min(8, config.text.max_position_embeddings)), jnp.int32)
  shapes = jax.eval_shape(
    model.init, jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)), ids, jnp.ones_like(ids)
  )
  return shapes['params']

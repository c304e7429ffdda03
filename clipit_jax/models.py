"""The CLIP-It network: language-guided attention and the frame-scoring transformer.

Shapes: B batch, T frames in a window (<= config.window), L text tokens, D widths.

    frames [B, T, frame_dim] --Dense--> [B, T, width] --+
    text   [B, L, text_dim]  --fusion--> [B, L', width] +--> LanguageGuidedAttention
                                                              |
                                 FrameScoringTransformer <----+
                                   encoder -> memory [B, T, width] -> MLP head -> scores [B, T]
                                   decoder(memory * scores) -> reconstruction [B, T, frame_dim]
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from clipit_jax import mixed_precision

Array = jax.Array
TEXT_FUSIONS = ('concat', 'tokens', 'query')
ATTENTIONS = ('einsum', 'dot_product_attention')


def dot_product_attention(
  query: Array,
  key: Array,
  value: Array,
  bias: Array | None = None,
  mask: Array | None = None,
  broadcast_dropout: bool = True,
  dropout_rng: Array | None = None,
  dropout_rate: float = 0.0,
  deterministic: bool = False,
  dtype: Any = None,
  precision: Any = None,
) -> Array:
  """Flax's `attention_fn` through `jax.nn.dot_product_attention` (XLA; cuDNN's fused kernel
  on a GPU where it applies). Shapes as Flax's: `[B, T, heads, head_dim]` in and out.

  `jax.nn.dot_product_attention` draws no dropout on the attention weights, so where
  dropout is drawn (training with `attention_dropout_rate > 0`) this is Flax's own.
  """
  if dropout_rate > 0.0 and not deterministic:
    return nn.dot_product_attention(
      query,
      key,
      value,
      bias,
      mask,
      broadcast_dropout,
      dropout_rng,
      dropout_rate,
      deterministic,
      dtype,
      precision,
    )
  mask = None if mask is None else mask.astype(bool)  # Flax's masks are 0/1 floats.
  out = jax.nn.dot_product_attention(query, key, value, bias=bias, mask=mask)
  return out if dtype is None else out.astype(dtype)


def attention_fn(config: ml_collections.ConfigDict):
  """The attention of every multi-head layer for `config.attention`: Flax's
  `dot_product_attention` (explicit einsums and softmax) or `jax.nn.dot_product_attention`.
  The parameters are the same."""
  name = config.attention
  if name not in ATTENTIONS:
    raise ValueError(f'unknown attention {name!r}; expected one of {ATTENTIONS}')
  return dot_product_attention if name == 'dot_product_attention' else nn.dot_product_attention


def sinusoidal_positions(length: int, width: int) -> Array:
  """Fixed sinusoidal position encodings (Vaswani et al. 2017), `[length, width]`."""
  positions = np.arange(length)[:, None]
  inv_freq = np.exp(-np.log(10000.0) * np.arange(0, width, 2) / width)
  table = np.zeros((length, width), np.float32)
  table[:, 0::2] = np.sin(positions * inv_freq)
  table[:, 1::2] = np.cos(positions * inv_freq[: width // 2])
  return jnp.asarray(table)


def center_frames(frames: Array, frame_mask: Array) -> Array:
  """Frames `[B, T, D]` less the mean of their window's real frames; padding stays zero.

  What every frame of a video shares (the scene, the camera, the lighting) dominates
  frame features; without it the attention compares frames by what tells them apart.
  """
  weights = frame_mask.astype(frames.dtype)[..., None]
  mean = jnp.sum(frames * weights, axis=1, keepdims=True) / jnp.maximum(
    jnp.sum(weights, axis=1, keepdims=True), 1.0
  )
  return (frames - mean) * weights


def smooth_logits(logits: Array, frame_mask: Array, width: int) -> Array:
  """Moving average of `width` steps (odd) over each window's real logits `[B, T]`.

  Each real step averages the real steps within `width // 2` of it; padding neither
  contributes nor changes (it stays as it was). Importance annotations are smooth over a few
  seconds and frame features are not: a per-frame scorer cannot smooth, this layer does.
  """
  half = width // 2
  weights = frame_mask.astype(logits.dtype)
  pad = ((0, 0), (half, half))
  summed = jnp.pad(logits * weights, pad)
  counts = jnp.pad(weights, pad)
  steps = logits.shape[1]
  total = sum(summed[:, i : i + steps] for i in range(width))
  count = sum(counts[:, i : i + steps] for i in range(width))
  return jnp.where(frame_mask, total / jnp.maximum(count, 1.0), logits)


class TextFusion(nn.Module):
  """Maps text embeddings `[B, L, text_dim]` to key/value tokens `[B, L', width]`.

  'concat' (the paper's generic summaries): the M caption embeddings, with masked
  captions zeroed, are concatenated to `[B, M*text_dim]` and a Dense maps them to
  one token. 'tokens': every caption is its own token. 'query': the query embedding
  is the single token as it is (projected only when its width differs from the model's).
  Returns the tokens and their mask `[B, L']`.
  """

  fusion: str
  num_captions: int
  width: int
  input_norm: bool = True
  dtype: Any = jnp.float32
  dot_general: Any = None

  @nn.compact
  def __call__(self, text: Array, text_mask: Array) -> tuple[Array, Array]:
    if self.input_norm:  # CLIP text embeddings are unit vectors, as the frames are.
      text = nn.LayerNorm(dtype=self.dtype, name='input_norm')(text)
    text = jnp.where(text_mask[..., None], text, 0.0)
    if self.fusion == 'concat':
      if text.shape[1] != self.num_captions:
        raise ValueError(
          f"text_fusion='concat' expects {self.num_captions} caption embeddings "
          f'per video, got {text.shape[1]}'
        )
      flat = text.reshape(text.shape[0], 1, -1)
      return (
        nn.Dense(self.width, dtype=self.dtype, dot_general=self.dot_general, name='fuse')(flat),
        jnp.any(text_mask, axis=1, keepdims=True),
      )
    if self.fusion == 'tokens' or text.shape[-1] != self.width:
      text = nn.Dense(self.width, dtype=self.dtype, dot_general=self.dot_general, name='project')(
        text
      )
    return text, text_mask


class LanguageGuidedAttention(nn.Module):
  """LayerNorm(frames + MHA(query=frames, key=value=text)), 4 heads in the paper.

  With a single text token (the fused captions, or a query) the softmax over keys is
  identically 1 and every frame would get the same text vector. A null token (a zero
  input, so its key and value are the learned projection biases; PyTorch's
  `add_zero_attn` in spirit) is therefore prepended to the keys: each frame's softmax
  over {null, text} becomes a gate set by how well the frame matches the text. The
  residual path carries each frame's own information forward.
  """

  num_heads: int
  dropout_rate: float
  null_token: bool = True
  dtype: Any = jnp.float32
  dot_general: Any = None
  attention_fn: Any = nn.dot_product_attention

  @nn.compact
  def __call__(
    self, frames: Array, frame_mask: Array, text: Array, text_mask: Array, *, deterministic: bool
  ) -> Array:
    has_text = jnp.any(text_mask, axis=1)
    if self.null_token:
      text = jnp.concatenate([jnp.zeros_like(text[:, :1]), text], axis=1)
      text_mask = jnp.concatenate([jnp.ones_like(text_mask[:, :1]), text_mask], axis=1)
    mask = nn.make_attention_mask(frame_mask, text_mask)
    attended = nn.MultiHeadDotProductAttention(
      num_heads=self.num_heads,
      dtype=self.dtype,
      dropout_rate=self.dropout_rate,
      deterministic=deterministic,
      qkv_dot_general=self.dot_general,
      out_dot_general=self.dot_general,
      attention_fn=self.attention_fn,
      name='attention',
    )(frames, text, mask=mask)
    attended = jnp.where(has_text[:, None, None], attended, 0.0)  # No text, no contribution.
    attended = nn.Dropout(self.dropout_rate)(attended, deterministic=deterministic)
    return nn.LayerNorm(dtype=self.dtype, name='norm')(frames + attended)


class LanguageGuidedMlp(nn.Module):
  """The paper's Table 3 ablation: an MLP in place of the cross-modal attention.

  Each frame `[B, T, width]` is concatenated with the mean of the real text tokens
  `[B, width]` and passed through Dense-GELU-Dense; `LayerNorm(frames + MLP(...))`, so
  it has the attention block's interface and residual. A video without text gets no
  contribution, as in the attention block.
  """

  dropout_rate: float
  dtype: Any = jnp.float32
  dot_general: Any = None

  @nn.compact
  def __call__(
    self, frames: Array, frame_mask: Array, text: Array, text_mask: Array, *, deterministic: bool
  ) -> Array:
    del frame_mask
    weights = text_mask.astype(frames.dtype)[..., None]
    has_text = jnp.any(text_mask, axis=1)
    pooled = jnp.sum(text * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1.0)
    width = frames.shape[-1]
    joint = jnp.concatenate([frames, jnp.broadcast_to(pooled[:, None], frames.shape)], axis=-1)
    mixed = MlpBlock(
      width, self.dropout_rate, self.dtype, self.dot_general, out_dim=width, name='mlp'
    )(joint, deterministic=deterministic)
    mixed = jnp.where(has_text[:, None, None], mixed, 0.0)
    mixed = nn.Dropout(self.dropout_rate)(mixed, deterministic=deterministic)
    return nn.LayerNorm(dtype=self.dtype, name='norm')(frames + mixed)


class MlpBlock(nn.Module):
  """Dense-GELU-Dense feed-forward block; its output is `out_dim` wide (default: the input's)."""

  mlp_dim: int
  dropout_rate: float
  dtype: Any = jnp.float32
  dot_general: Any = None
  out_dim: int | None = None

  @nn.compact
  def __call__(self, x: Array, *, deterministic: bool) -> Array:
    width = self.out_dim or x.shape[-1]
    x = nn.gelu(nn.Dense(self.mlp_dim, dtype=self.dtype, dot_general=self.dot_general)(x))
    x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
    return nn.Dense(width, dtype=self.dtype, dot_general=self.dot_general)(x)


def _transformer_attention(
  cfg: ml_collections.ConfigDict, dtype: Any, deterministic: bool, name: str | None = None
) -> nn.MultiHeadDotProductAttention:
  """The frame-scoring transformer's multi-head attention (`cfg.num_heads`), built in the
  calling module's scope (so its parameters keep their names)."""
  dot_general = mixed_precision.dense_dot_general(cfg)
  return nn.MultiHeadDotProductAttention(
    num_heads=cfg.num_heads,
    dtype=dtype,
    dropout_rate=cfg.attention_dropout_rate,
    deterministic=deterministic,
    qkv_dot_general=dot_general,
    out_dot_general=dot_general,
    attention_fn=attention_fn(cfg),
    name=name,
  )


class EncoderLayer(nn.Module):
  """Pre-LayerNorm self-attention + MLP over frames `[B, T, width]`."""

  config: ml_collections.ConfigDict
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, self_mask: Array, *, deterministic: bool) -> Array:
    cfg = self.config
    dot_general = mixed_precision.dense_dot_general(cfg)
    y = nn.LayerNorm(dtype=self.dtype)(x)
    y = _transformer_attention(cfg, self.dtype, deterministic)(y, y, mask=self_mask)
    x = x + nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)
    y = MlpBlock(cfg.mlp_dim, cfg.dropout_rate, self.dtype, dot_general)(
      nn.LayerNorm(dtype=self.dtype)(x), deterministic=deterministic
    )
    return x + nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)


class DecoderLayer(nn.Module):
  """Pre-LayerNorm self-attention, cross-attention to the memory, and MLP."""

  config: ml_collections.ConfigDict
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, memory: Array, mask: Array, *, deterministic: bool) -> Array:
    cfg = self.config
    dot_general = mixed_precision.dense_dot_general(cfg)
    for name, kv in (('self_attention', None), ('cross_attention', memory)):
      y = nn.LayerNorm(dtype=self.dtype)(x)
      kv = y if kv is None else kv
      y = _transformer_attention(cfg, self.dtype, deterministic, name)(y, kv, mask=mask)
      x = x + nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)
    y = MlpBlock(cfg.mlp_dim, cfg.dropout_rate, self.dtype, dot_general)(
      nn.LayerNorm(dtype=self.dtype)(x), deterministic=deterministic
    )
    return x + nn.Dropout(cfg.dropout_rate)(y, deterministic=deterministic)


class FrameScoringTransformer(nn.Module):
  """Encoder-decoder transformer that scores frames and reconstructs them.

  The encoder turns the language-attended frames `[B, T, width]` into a memory; an MLP
  head with a sigmoid gives one score per frame. The decoder sees only the memory
  weighted by those scores and reconstructs the input frame features from it, so the
  reconstruction loss rewards scores that keep the video's information.
  Returns logits `[B, T]` and the reconstruction `[B, T, out_dim]`.
  """

  config: ml_collections.ConfigDict
  out_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, frame_mask: Array, *, deterministic: bool) -> tuple[Array, Array]:
    cfg = self.config
    dot_general = mixed_precision.dense_dot_general(cfg)
    mask = nn.make_attention_mask(frame_mask, frame_mask)
    positions = sinusoidal_positions(x.shape[1], x.shape[2]).astype(x.dtype)
    h = nn.Dropout(cfg.dropout_rate)(x + positions, deterministic=deterministic)
    for i in range(cfg.num_encoder_layers):
      h = EncoderLayer(cfg, self.dtype, name=f'encoder_{i}')(h, mask, deterministic=deterministic)
    memory = nn.LayerNorm(dtype=self.dtype, name='encoder_norm')(h)

    head = nn.gelu(
      nn.Dense(cfg.head_mlp_dim, dtype=self.dtype, dot_general=dot_general, name='head_hidden')(
        memory
      )
    )
    logits = nn.Dense(1, dtype=self.dtype, name='head_out')(head)[..., 0].astype(jnp.float32)
    if cfg.score_smoothing > 1:
      logits = smooth_logits(logits, frame_mask, cfg.score_smoothing)

    weighted = memory * nn.sigmoid(logits)[..., None].astype(self.dtype)
    y = weighted + positions
    for i in range(cfg.num_decoder_layers):
      y = DecoderLayer(cfg, self.dtype, name=f'decoder_{i}')(
        y, weighted, mask, deterministic=deterministic
      )
    y = nn.LayerNorm(dtype=self.dtype, name='decoder_norm')(y)
    reconstruction = nn.Dense(
      self.out_dim, dtype=self.dtype, dot_general=dot_general, name='reconstruct'
    )(y)
    return logits, reconstruction.astype(jnp.float32)


class CLIPIt(nn.Module):
  """CLIP-It: scores every frame of a window given the video's language.

  Inputs: frames `[B, T, frame_dim]`, frame_mask `[B, T]` (True = real frame),
  text `[B, L, text_dim]`, text_mask `[B, L]` (True = real caption/query).
  Returns a dict with 'logits' and 'scores' `[B, T]` (scores = sigmoid(logits), in
  (0, 1)) and 'reconstruction' `[B, T, frame_dim]`.
  """

  config: ml_collections.ConfigDict

  @nn.compact
  def __call__(
    self,
    frames: Array,
    frame_mask: Array,
    text: Array,
    text_mask: Array,
    *,
    deterministic: bool = True,
  ) -> dict[str, Array]:
    cfg = self.config
    if cfg.text_fusion not in TEXT_FUSIONS:
      raise ValueError(f'unknown text_fusion {cfg.text_fusion!r}; expected one of {TEXT_FUSIONS}')
    dtype = jnp.dtype(cfg.dtype)
    dot_general = mixed_precision.dense_dot_general(cfg)
    frame_mask = frame_mask.astype(bool)
    text_mask = text_mask.astype(bool)
    frames = jnp.where(frame_mask[..., None], frames, 0.0)
    if cfg.center_frames:
      frames = center_frames(frames, frame_mask)
    if cfg.input_norm:
      # CLIP features are unit vectors (about 0.04 per dimension); normalising each
      # frame's vector gives the projection inputs of unit scale (the text likewise).
      frames = nn.LayerNorm(dtype=dtype, name='input_norm')(frames)
    x = nn.Dense(cfg.width, dtype=dtype, dot_general=dot_general, name='frame_projection')(frames)
    tokens, token_mask = TextFusion(
      cfg.text_fusion,
      cfg.num_captions,
      cfg.width,
      cfg.input_norm,
      dtype,
      dot_general,
      name='text_fusion',
    )(text, text_mask)
    cross_modal = cfg.cross_modal
    if cross_modal == 'attention':
      block = LanguageGuidedAttention(
        cfg.language_heads,
        cfg.attention_dropout_rate,
        cfg.null_text_token,
        dtype,
        dot_general,
        attention_fn(cfg),
        name='language_attention',
      )
    elif cross_modal == 'mlp':
      block = LanguageGuidedMlp(cfg.dropout_rate, dtype, dot_general, name='language_mlp')
    else:
      raise ValueError(f"unknown cross_modal {cross_modal!r}; expected 'attention' or 'mlp'")
    x = block(x, frame_mask, tokens, token_mask, deterministic=deterministic)
    logits, reconstruction = FrameScoringTransformer(cfg, frames.shape[-1], dtype, name='scorer')(
      x, frame_mask, deterministic=deterministic
    )
    return dict(logits=logits, scores=nn.sigmoid(logits), reconstruction=reconstruction)


def init_params(config: ml_collections.ConfigDict, rng: Array) -> Any:
  """Initial parameters of `CLIPIt(config)` for one window of frames."""
  frames = jnp.zeros((1, config.window, config.frame_dim), jnp.float32)
  text_len = config.num_captions if config.text_fusion != 'query' else 1
  text = jnp.zeros((1, text_len, config.text_dim), jnp.float32)
  return CLIPIt(config).init(
    rng, frames, jnp.ones(frames.shape[:2], bool), text, jnp.ones(text.shape[:2], bool)
  )['params']

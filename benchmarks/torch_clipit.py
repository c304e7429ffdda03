"""CLIP-It in PyTorch: a layer-for-layer port of `clipit_jax.models.CLIPIt`, the peer
that `train_step.py` races. Benchmarks only: nothing in `clipit_jax` imports it.

The port follows the Flax model exactly, so that Flax parameters can be copied in
(`load_flax_params`) and the outputs compared:

* LayerNorm with epsilon 1e-6 (Flax's default, torch's is 1e-5);
* GELU with the tanh approximation (`flax.linen.gelu`'s default);
* attention as Flax's `MultiHeadDotProductAttention`: separate query/key/value
  projections, queries scaled by 1/sqrt(head_dim), masked logits set to the dtype's
  minimum, softmax, and attention-weight dropout broadcast over batch and heads
  (Flax's `broadcast_dropout=True`), then the output projection;
* the language-guided attention with or without the null text token
  (`config.model.null_text_token`, when the config has it);
* pre-LayerNorm encoder/decoder layers, sinusoidal positions, the score head
  Dense(256)-GELU-Dense(1), the decoder on memory * sigmoid(logits);
* the losses of `clipit_jax.losses` (class-balanced BCE, score-weighted cosine
  diversity of the features centred on each sample's mean real frame, MSE
  reconstruction; 0.5 / 0.3 / 0.2) and the optimiser of `make_optimizer(config)`
  with `optimizer='adam'`: `torch.optim.Adam(lr, weight_decay=...)` (coupled L2,
  as `optax.chain(add_decayed_weights, adam)`).

`attention='sdpa'` computes the same attention with
`torch.nn.functional.scaled_dot_product_attention` (PyTorch's fused kernel); its
attention dropout is per element rather than broadcast (same rate), so it is the
same model in evaluation and a slightly different one in training.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

LN_EPS = 1e-6  # flax.linen.LayerNorm's default.


def gelu(x: torch.Tensor) -> torch.Tensor:
  return F.gelu(x, approximate='tanh')  # flax.linen.gelu(approximate=True).


def sinusoidal_positions(length: int, width: int) -> torch.Tensor:
  positions = np.arange(length)[:, None]
  inv_freq = np.exp(-np.log(10000.0) * np.arange(0, width, 2) / width)
  table = np.zeros((length, width), np.float32)
  table[:, 0::2] = np.sin(positions * inv_freq)
  table[:, 1::2] = np.cos(positions * inv_freq[: width // 2])
  return torch.from_numpy(table)


class MultiHeadAttention(nn.Module):
  """Flax `MultiHeadDotProductAttention` (qkv width = query width)."""

  def __init__(
    self, q_dim: int, kv_dim: int, num_heads: int, dropout: float, attention: str = 'explicit'
  ):
    super().__init__()
    if q_dim % num_heads:
      raise ValueError(f'width {q_dim} is not divisible by {num_heads} heads')
    self.num_heads, self.head_dim = num_heads, q_dim // num_heads
    self.query = nn.Linear(q_dim, q_dim)
    self.key = nn.Linear(kv_dim, q_dim)
    self.value = nn.Linear(kv_dim, q_dim)
    self.out = nn.Linear(q_dim, q_dim)
    self.dropout = dropout
    self.attention = attention

  def forward(self, q_in: torch.Tensor, kv_in: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """q_in [B, T, Dq], kv_in [B, S, Dkv], mask bool [B, 1, T, S] -> [B, T, Dq]."""
    b, t, _ = q_in.shape
    s = kv_in.shape[1]
    h, d = self.num_heads, self.head_dim
    q = self.query(q_in).view(b, t, h, d).transpose(1, 2)  # [B, H, T, D]
    k = self.key(kv_in).view(b, s, h, d).transpose(1, 2)
    v = self.value(kv_in).view(b, s, h, d).transpose(1, 2)
    p = self.dropout if self.training else 0.0
    if self.attention == 'sdpa':
      y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
    else:
      logits = torch.matmul(q / math.sqrt(d), k.transpose(-1, -2))  # [B, H, T, S]
      logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
      weights = torch.softmax(logits, dim=-1)
      if p > 0:  # Broadcast over batch and heads, as Flax's broadcast_dropout.
        keep = torch.empty((1, 1, t, s), dtype=weights.dtype, device=weights.device).bernoulli_(
          1.0 - p
        )
        weights = weights * (keep / (1.0 - p))
      y = torch.matmul(weights, v)
    return self.out(y.transpose(1, 2).reshape(b, t, h * d))


class MlpBlock(nn.Module):
  def __init__(self, width: int, mlp_dim: int, dropout: float):
    super().__init__()
    self.dense_0 = nn.Linear(width, mlp_dim)
    self.dense_1 = nn.Linear(mlp_dim, width)
    self.dropout = nn.Dropout(dropout)

  def forward(self, x):
    return self.dense_1(self.dropout(gelu(self.dense_0(x))))


class EncoderLayer(nn.Module):
  def __init__(self, cfg, attention: str):
    super().__init__()
    w = cfg.width
    self.norm_0 = nn.LayerNorm(w, eps=LN_EPS)
    self.attention = MultiHeadAttention(w, w, cfg.num_heads, cfg.attention_dropout_rate, attention)
    self.norm_1 = nn.LayerNorm(w, eps=LN_EPS)
    self.mlp = MlpBlock(w, cfg.mlp_dim, cfg.dropout_rate)
    self.dropout = nn.Dropout(cfg.dropout_rate)

  def forward(self, x, mask):
    y = self.norm_0(x)
    x = x + self.dropout(self.attention(y, y, mask))
    return x + self.dropout(self.mlp(self.norm_1(x)))


class DecoderLayer(nn.Module):
  def __init__(self, cfg, attention: str):
    super().__init__()
    w = cfg.width
    self.norm_0 = nn.LayerNorm(w, eps=LN_EPS)
    self.self_attention = MultiHeadAttention(
      w, w, cfg.num_heads, cfg.attention_dropout_rate, attention
    )
    self.norm_1 = nn.LayerNorm(w, eps=LN_EPS)
    self.cross_attention = MultiHeadAttention(
      w, w, cfg.num_heads, cfg.attention_dropout_rate, attention
    )
    self.norm_2 = nn.LayerNorm(w, eps=LN_EPS)
    self.mlp = MlpBlock(w, cfg.mlp_dim, cfg.dropout_rate)
    self.dropout = nn.Dropout(cfg.dropout_rate)

  def forward(self, x, memory, mask):
    y = self.norm_0(x)
    x = x + self.dropout(self.self_attention(y, y, mask))
    y = self.norm_1(x)
    x = x + self.dropout(self.cross_attention(y, memory, mask))
    return x + self.dropout(self.mlp(self.norm_2(x)))


class FrameScoringTransformer(nn.Module):
  def __init__(self, cfg, out_dim: int, attention: str):
    super().__init__()
    w = cfg.width
    self.encoder = nn.ModuleList(
      [EncoderLayer(cfg, attention) for _ in range(cfg.num_encoder_layers)]
    )
    self.encoder_norm = nn.LayerNorm(w, eps=LN_EPS)
    self.head_hidden = nn.Linear(w, cfg.head_mlp_dim)
    self.head_out = nn.Linear(cfg.head_mlp_dim, 1)
    self.decoder = nn.ModuleList(
      [DecoderLayer(cfg, attention) for _ in range(cfg.num_decoder_layers)]
    )
    self.decoder_norm = nn.LayerNorm(w, eps=LN_EPS)
    self.reconstruct = nn.Linear(w, out_dim)
    self.dropout = nn.Dropout(cfg.dropout_rate)
    self.register_buffer('positions', sinusoidal_positions(cfg.window, w), persistent=False)

  def forward(self, x, frame_mask):
    t = x.shape[1]
    mask = frame_mask[:, None, :, None] & frame_mask[:, None, None, :]  # [B, 1, T, T]
    positions = self.positions[:t]
    h = self.dropout(x + positions)
    for layer in self.encoder:
      h = layer(h, mask)
    memory = self.encoder_norm(h)
    logits = self.head_out(gelu(self.head_hidden(memory)))[..., 0]
    weighted = memory * torch.sigmoid(logits)[..., None]
    y = weighted + positions
    for layer in self.decoder:
      y = layer(y, weighted, mask)
    return logits, self.reconstruct(self.decoder_norm(y))


class TextFusion(nn.Module):
  def __init__(self, cfg, text_norm: bool):
    super().__init__()
    self.fusion = cfg.text_fusion
    self.num_captions = cfg.num_captions
    self.input_norm = nn.LayerNorm(cfg.text_dim, eps=LN_EPS) if text_norm else None
    if self.fusion == 'concat':
      self.fuse = nn.Linear(cfg.num_captions * cfg.text_dim, cfg.width)
    elif self.fusion == 'tokens' or cfg.text_dim != cfg.width:
      self.project = nn.Linear(cfg.text_dim, cfg.width)

  def forward(self, text, text_mask):
    if self.input_norm is not None:
      text = self.input_norm(text)
    text = torch.where(text_mask[..., None], text, torch.zeros_like(text))
    if self.fusion == 'concat':
      flat = text.reshape(text.shape[0], 1, -1)
      return self.fuse(flat), text_mask.any(dim=1, keepdim=True)
    if hasattr(self, 'project'):
      text = self.project(text)
    return text, text_mask


class CLIPIt(nn.Module):
  """The PyTorch CLIP-It: same inputs and outputs as `clipit_jax.models.CLIPIt`.

  Args:
    cfg: the model config (`config.model`).
    text_norm: whether the text goes through a LayerNorm first (the Flax model's
      `TextFusion.input_norm`); default `cfg.input_norm`.
    null_token: whether a zero key/value token is prepended to the text in the
      language-guided attention (the Flax model's `cfg.null_text_token`); default
      the config's value, False when it has none.
    attention: 'explicit' (Flax's computation) or 'sdpa' (PyTorch's fused kernel).
  """

  def __init__(
    self,
    cfg,
    text_norm: bool | None = None,
    null_token: bool | None = None,
    attention: str = 'explicit',
  ):
    super().__init__()
    self.cfg = cfg
    if text_norm is None:
      text_norm = bool(cfg.input_norm)
    if null_token is None:
      null_token = bool(cfg.get('null_text_token', False))
    self.null_token = null_token
    self.input_norm = nn.LayerNorm(cfg.frame_dim, eps=LN_EPS) if cfg.input_norm else None
    self.frame_projection = nn.Linear(cfg.frame_dim, cfg.width)
    self.text_fusion = TextFusion(cfg, text_norm)
    self.language_attention = MultiHeadAttention(
      cfg.width, cfg.width, cfg.language_heads, cfg.attention_dropout_rate, attention
    )
    self.language_norm = nn.LayerNorm(cfg.width, eps=LN_EPS)
    self.language_dropout = nn.Dropout(cfg.attention_dropout_rate)
    self.scorer = FrameScoringTransformer(cfg, cfg.frame_dim, attention)

  def forward(self, frames, frame_mask, text, text_mask) -> dict[str, torch.Tensor]:
    frame_mask = frame_mask.bool()
    text_mask = text_mask.bool()
    frames = torch.where(frame_mask[..., None], frames, torch.zeros_like(frames))
    if self.input_norm is not None:
      frames = self.input_norm(frames)
    x = self.frame_projection(frames)
    tokens, token_mask = self.text_fusion(text, text_mask)
    has_text = token_mask.any(dim=1)
    if self.null_token:  # A zero key/value token first: a gate between it and the text.
      tokens = torch.cat([torch.zeros_like(tokens[:, :1]), tokens], dim=1)
      token_mask = torch.cat([torch.ones_like(token_mask[:, :1]), token_mask], dim=1)
    mask = frame_mask[:, None, :, None] & token_mask[:, None, None, :]
    attended = self.language_attention(x, tokens, mask)
    attended = torch.where(has_text[:, None, None], attended, torch.zeros_like(attended))
    x = self.language_norm(x + self.language_dropout(attended))
    logits, reconstruction = self.scorer(x, frame_mask)
    return dict(logits=logits, scores=torch.sigmoid(logits), reconstruction=reconstruction)


# ------------------------------------------------------------------ losses --

_EPS = 1e-8


def classification_loss(logits, labels, mask):
  mask = mask.float()
  labels = labels.float() * mask
  positives = labels.sum(-1, keepdim=True)
  negatives = mask.sum(-1, keepdim=True) - positives
  pos_weight = torch.where(
    positives > 0, negatives / positives.clamp(min=1.0), torch.ones_like(positives)
  )
  per_frame = -(pos_weight * labels * F.logsigmoid(logits) + (1.0 - labels) * F.logsigmoid(-logits))
  return (per_frame * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)


def diversity_loss(scores, features, mask):
  weights = mask.to(features.dtype)[..., None]
  mean = (features * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp(min=1.0)
  centred = features - mean
  unit = centred / centred.norm(dim=-1, keepdim=True).clamp(min=_EPS)
  similarity = torch.bmm(unit, unit.transpose(1, 2))
  s = scores * mask.to(scores.dtype)
  pair_weight = s[:, :, None] * s[:, None, :]
  eye = torch.eye(scores.shape[-1], dtype=scores.dtype, device=scores.device)
  pair_weight = pair_weight * (1.0 - eye)
  total = pair_weight.sum((-1, -2))
  return (pair_weight * similarity).sum((-1, -2)) / total.clamp(min=_EPS)


def reconstruction_loss(reconstruction, features, mask):
  mask = mask.float()
  squared = (reconstruction - features).square().sum(-1) * mask
  return squared.sum(-1) / (mask.sum(-1) * features.shape[-1]).clamp(min=1.0)


def loss_fn(outputs, batch, config) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
  """The supervised total loss averaged over real samples (as `train_step`)."""
  mask = batch['frame_mask']
  w = config.loss_weights
  per = dict(
    classification=classification_loss(outputs['logits'], batch['labels'], mask),
    diversity=diversity_loss(outputs['scores'], batch['frames'], mask),
    reconstruction=reconstruction_loss(outputs['reconstruction'], batch['frames'], mask),
  )
  per['total'] = (
    w.classification * per['classification']
    + w.diversity * per['diversity']
    + w.reconstruction * per['reconstruction']
  )
  sample_mask = mask.any(-1).float()
  loss = (per['total'] * sample_mask).sum() / sample_mask.sum().clamp(min=1.0)
  return loss, per


def make_optimizer(model: nn.Module, config, **kwargs) -> torch.optim.Optimizer:
  """`torch.optim.Adam` with coupled weight decay, as the config's 'adam'."""
  return torch.optim.Adam(
    model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, **kwargs
  )


def make_train_step(model: nn.Module, optimizer: torch.optim.Optimizer, config):
  """An eager training step: forward, losses, backward, Adam update; returns the loss."""

  def step(batch):
    optimizer.zero_grad(set_to_none=True)
    outputs = model(batch['frames'], batch['frame_mask'], batch['text'], batch['text_mask'])
    loss, _ = loss_fn(outputs, batch, config)
    loss.backward()
    optimizer.step()
    return loss.detach()

  return step


# ------------------------------------------------------------- Flax params --


def _dense(linear: nn.Linear, p: dict[str, Any]) -> None:
  kernel = np.array(p['kernel'], np.float32)
  linear.weight.copy_(torch.from_numpy(kernel.reshape(-1, kernel.shape[-1]).T.copy()))
  linear.bias.copy_(torch.from_numpy(np.array(p['bias'], np.float32).reshape(-1)))


def _attention_in(linear: nn.Linear, p: dict[str, Any]) -> None:
  kernel = np.array(p['kernel'], np.float32)  # [in, heads, head_dim]
  linear.weight.copy_(torch.from_numpy(kernel.reshape(kernel.shape[0], -1).T.copy()))
  linear.bias.copy_(torch.from_numpy(np.array(p['bias'], np.float32).reshape(-1)))


def _attention_out(linear: nn.Linear, p: dict[str, Any]) -> None:
  kernel = np.array(p['kernel'], np.float32)  # [heads, head_dim, out]
  linear.weight.copy_(torch.from_numpy(kernel.reshape(-1, kernel.shape[-1]).T.copy()))
  linear.bias.copy_(torch.from_numpy(np.array(p['bias'], np.float32)))


def _norm(norm: nn.LayerNorm, p: dict[str, Any]) -> None:
  norm.weight.copy_(torch.from_numpy(np.array(p['scale'], np.float32)))
  norm.bias.copy_(torch.from_numpy(np.array(p['bias'], np.float32)))


def _mha(mha: MultiHeadAttention, p: dict[str, Any]) -> None:
  for name in ('query', 'key', 'value'):
    _attention_in(getattr(mha, name), p[name])
  _attention_out(mha.out, p['out'])


def _mlp(mlp: MlpBlock, p: dict[str, Any]) -> None:
  _dense(mlp.dense_0, p['Dense_0'])
  _dense(mlp.dense_1, p['Dense_1'])


@torch.no_grad()
def load_flax_params(model: CLIPIt, params: dict[str, Any]) -> None:
  """Copies a Flax `CLIPIt` parameter tree into `model` (every tensor, checked)."""
  if model.input_norm is not None:
    _norm(model.input_norm, params['input_norm'])
  _dense(model.frame_projection, params['frame_projection'])
  tf = params['text_fusion']
  if model.text_fusion.input_norm is not None:
    _norm(model.text_fusion.input_norm, tf['input_norm'])
  if 'fuse' in tf:
    _dense(model.text_fusion.fuse, tf['fuse'])
  if 'project' in tf:
    _dense(model.text_fusion.project, tf['project'])
  _mha(model.language_attention, params['language_attention']['attention'])
  _norm(model.language_norm, params['language_attention']['norm'])
  sp = params['scorer']
  sc = model.scorer
  for i, layer in enumerate(sc.encoder):
    p = sp[f'encoder_{i}']
    _norm(layer.norm_0, p['LayerNorm_0'])
    _mha(layer.attention, p['MultiHeadDotProductAttention_0'])
    _norm(layer.norm_1, p['LayerNorm_1'])
    _mlp(layer.mlp, p['MlpBlock_0'])
  _norm(sc.encoder_norm, sp['encoder_norm'])
  _dense(sc.head_hidden, sp['head_hidden'])
  _dense(sc.head_out, sp['head_out'])
  for i, layer in enumerate(sc.decoder):
    p = sp[f'decoder_{i}']
    _norm(layer.norm_0, p['LayerNorm_0'])
    _mha(layer.self_attention, p['self_attention'])
    _norm(layer.norm_1, p['LayerNorm_1'])
    _mha(layer.cross_attention, p['cross_attention'])
    _norm(layer.norm_2, p['LayerNorm_2'])
    _mlp(layer.mlp, p['MlpBlock_0'])
  _norm(sc.decoder_norm, sp['decoder_norm'])
  _dense(sc.reconstruct, sp['reconstruct'])


def count_params(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters())

"""Mixed precision for the weight matmuls: bfloat16 operands, float32 sums and gradients.

`config.model.matmul_dtype = 'bfloat16'` gives every Dense layer of models.py
`bf16_dot_general`; everything else (norms, softmax, losses, the optimizer) stays float32.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections

Array = jax.Array
MATMUL_DTYPES = ('float32', 'bfloat16')


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _bf16_contract(x: Array, w: Array, k: int) -> Array:
  """float32 `x[..., c1..ck] . w[c1..ck, ...]` computed from bfloat16 operands."""
  return jax.lax.dot_general(
    x.astype(jnp.bfloat16),
    w.astype(jnp.bfloat16),
    ((tuple(range(x.ndim - k, x.ndim)), tuple(range(k))), ((), ())),
    preferred_element_type=jnp.float32,
  )


def _bf16_contract_fwd(x, w, k):
  x16, w16 = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
  return _bf16_contract(x16, w16, k), (x16, w16)


def _bf16_contract_bwd(k, saved, g):
  """Both gradient matmuls also take bfloat16 operands and accumulate in float32."""
  x16, w16 = saved
  g16 = g.astype(jnp.bfloat16)
  batch = x16.ndim - k  # g is [batch dims of x..., output dims of w...].
  dx = jax.lax.dot_general(
    g16,
    w16,
    ((tuple(range(batch, g16.ndim)), tuple(range(k, w16.ndim))), ((), ())),
    preferred_element_type=jnp.float32,
  )
  dw = jax.lax.dot_general(
    x16,
    g16,
    ((tuple(range(batch)), tuple(range(batch))), ((), ())),
    preferred_element_type=jnp.float32,
  )
  return dx, dw


_bf16_contract.defvjp(_bf16_contract_fwd, _bf16_contract_bwd)


def bf16_dot_general(
  lhs: Array, rhs: Array, dimension_numbers, precision=None, preferred_element_type=None, **unused
) -> Array:
  """A `lax.dot_general` for Flax's Dense layers with bfloat16 operands, float32 results.

  Mixed precision for the weight matmuls only (forward and both gradients): CPUs with
  AVX512-BF16 and GPUs multiply bfloat16 about twice as fast as float32, while
  activations, softmax, LayerNorm, losses and parameters stay float32. Handles the
  Dense/DenseGeneral form (the trailing dims of `lhs` against the leading dims of
  `rhs`, no batch dims); anything else is computed in float32.
  """
  del precision, unused
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
  k = len(lhs_contract)
  if (
    not lhs_batch
    and not rhs_batch
    and tuple(rhs_contract) == tuple(range(k))
    and tuple(lhs_contract) == tuple(range(lhs.ndim - k, lhs.ndim))
  ):
    # float32 in, so the gradients (float32) match the inputs' dtype under any model.dtype.
    out = _bf16_contract(lhs.astype(jnp.float32), rhs.astype(jnp.float32), k)
    return out if preferred_element_type is None else out.astype(preferred_element_type)
  return jax.lax.dot_general(
    lhs, rhs, dimension_numbers, preferred_element_type=preferred_element_type
  )


def dense_dot_general(config: ml_collections.ConfigDict):
  """The Dense layers' `dot_general` for `config.matmul_dtype`: None (Flax's default) or
  `bf16_dot_general`."""
  matmul_dtype = config.matmul_dtype
  if matmul_dtype not in MATMUL_DTYPES:
    raise ValueError(f'unknown matmul_dtype {matmul_dtype!r}; expected one of {MATMUL_DTYPES}')
  return bf16_dot_general if matmul_dtype == 'bfloat16' else None

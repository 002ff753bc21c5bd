"""Offline heads: depth-wise cross-correlation per level, fused by learned weights (Eq. 2)."""
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from duml_jax.models import layers


def xcorr_depthwise(search, kernel):
  """Depth-wise cross-correlation, batched.

  Args:
    search: (B, Hs, Ws, C).
    kernel: (B, Hk, Wk, C).
  Returns:
    (B, Hs - Hk + 1, Ws - Wk + 1, C): channel c of the search map correlated
    with channel c of the kernel (no flip, valid padding), in the inputs'
    dtype; the Hk * Wk taps are multiplied and summed in (at least) float32,
    so a bfloat16 model rounds once, not at every tap.

  Written as Hk * Wk shifted multiply-adds, which XLA fuses into one loop:
  on CPU this is 10-40x faster than the equivalent grouped convolution
  (`feature_group_count = C`, per-sample kernels), forward and backward
  (measured for the 30x30 / 6x6 shapes of the heads).
  """
  hk, wk = kernel.shape[-3], kernel.shape[-2]
  ho, wo = search.shape[-3] - hk + 1, search.shape[-2] - wk + 1
  dtype = jnp.result_type(search, kernel)
  acc = jnp.promote_types(dtype, jnp.float32)
  search, kernel = search.astype(acc), kernel.astype(acc)
  out = jnp.zeros(search.shape[:-3] + (ho, wo, search.shape[-1]), acc)
  for u in range(hk):
    for v in range(wk):
      out = out + search[..., u:u + ho, v:v + wo, :] * kernel[..., u:u + 1, v:v + 1, :]
  return out.astype(dtype)


class DepthwiseXCorr(nn.Module):
  """3x3 conv+BN+ReLU on template and search, DW-xcorr, 1x1 head (pysot DepthwiseXCorr).

  Computed in `dtype` (parameters float32).
  """
  hidden: int
  out_channels: int
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  norm: str = "batch"

  @nn.compact
  def __call__(self, z, x, train: bool):
    bn = lambda name: layers.norm_layer(self.norm, train, self.axis_name, name=name,
                                        dtype=self.dtype)
    conv = lambda ch, size, name, bias=False: nn.Conv(
        ch, size, padding="VALID", use_bias=bias, dtype=self.dtype, name=name)
    k = nn.relu(bn("kernel_bn")(conv(self.hidden, (3, 3), "conv_kernel")(z)))
    s = nn.relu(bn("search_bn")(conv(self.hidden, (3, 3), "conv_search")(x)))
    f = xcorr_depthwise(s, k)
    f = nn.relu(bn("head_bn")(conv(self.hidden, (1, 1), "head1")(f)))
    return conv(self.out_channels, (1, 1), "head2", bias=True)(f)


class MultiLevelXCorr(nn.Module):
  """One `DepthwiseXCorr` per level, fused as sum_l softmax(alpha)_l * out_l (Eq. 2).

  The levels compute in `dtype`; the fusion and the output are float32 (the
  maps feed the losses and the tracker's post-processing).
  """
  hidden: int
  out_channels: int
  num_levels: int = 3
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  norm: str = "batch"

  @nn.compact
  def __call__(self, zs: Sequence, xs: Sequence, train: bool):
    outs = [DepthwiseXCorr(self.hidden, self.out_channels, self.axis_name, self.dtype,
                           self.norm, name=f"level{i}")(z, x, train) for i, (z, x) in enumerate(zip(zs, xs))]
    alpha = self.param("level_weights", nn.initializers.ones, (self.num_levels,))
    w = jax.nn.softmax(alpha)
    return sum(w[i] * o.astype(jnp.float32) for i, o in enumerate(outs))

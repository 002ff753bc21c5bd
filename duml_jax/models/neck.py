"""Neck: per level a 1x1 conv + BN to a common width (SiamRPN++ AdjustLayer).

Grid sizes with the non-dilated backbone (blocks 3-4 resized to block 2's
stride-8 grid, see `backbone.py`): a 127 template gives 16x16 features, a 255
search 32x32. Cell ``j`` is centred on crop pixel ``8 j`` (pixel index).
The template is centre-cropped to cells ``[4, 12)`` (8x8), centred on
template pixel 64; after the heads' 3x3 valid convs the 6x6 kernel slides
over the 30x30 search map, giving 25x25 responses whose cell ``u`` matches
the template centre to search displacement ``8 u - 96`` pixels, exactly the
pysot anchor grid (-96 ... +96, see `duml_jax/anchors.py`).
"""
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from duml_jax.models import layers


def template_crop(size, crop):
  """Start index of the centred crop of `crop` cells from `size` cells."""
  return (size - crop) // 2


class Neck(nn.Module):
  """1x1 conv (no bias) + BN per level, computed (and returned) in `dtype`."""
  channels: int
  num_levels: int = 3
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32
  norm: str = "batch"

  @nn.compact
  def __call__(self, feats: Sequence, train: bool):
    out = []
    for i, f in enumerate(feats[:self.num_levels]):
      x = nn.Conv(self.channels, (1, 1), use_bias=False, dtype=self.dtype,
                  name=f"adjust{i}")(f)
      x = layers.norm_layer(self.norm, train, self.axis_name, name=f"adjust{i}_bn",
                            dtype=self.dtype)(x)
      out.append(x)
    return out


def crop_template(feats, crop=8):
  """Centre-crops template features to `crop` x `crop` cells (16 -> [4:12])."""
  out = []
  for f in feats:
    s = template_crop(f.shape[-3], crop)
    out.append(f[..., s:s + crop, s:s + crop, :])
  return out

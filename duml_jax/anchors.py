"""Anchors of the anchor-based heads (SiamRPN++ / pysot conventions).

Score maps are laid out ``(H, W, A)`` (NHWC with the anchor axis last). The
grid cell ``(i, j)`` of a ``score_size x score_size`` map sits at offset
``stride * (j - score_size // 2), stride * (i - score_size // 2)`` from the
centre of the search crop (for 25x25 and stride 8: -96 ... +96 pixels); see
``duml_jax/models/duml.py`` for why the backbone's grid lines up with it.
"""
import math

import numpy as np


def anchor_shapes(ratios, scales, stride):
  """(A, 2) anchor (w, h) in pixels, as pysot computes them (integer rounding).

  For ratios (0.33, 0.5, 1, 2, 3), scales (8,), stride 8 this gives
  (104, 32), (88, 40), (64, 64), (40, 80), (32, 96).
  """
  out = []
  size = stride * stride
  for r in ratios:
    ws = int(math.sqrt(size * 1. / r))
    hs = int(ws * r)
    for s in scales:
      out.append((ws * s, hs * s))
  return np.asarray(out, np.float32)


def anchor_grid(score_size, stride, shapes, centre=(0., 0.)):
  """(H, W, A, 4) anchors (cx, cy, w, h); centres relative to `centre`.

  With the default ``centre=(0, 0)`` they are offsets from the crop centre
  (tracking); pass ``(search_size / 2, search_size / 2)`` for absolute crop
  coordinates (training).
  """
  shapes = np.asarray(shapes, np.float32)
  offs = (np.arange(score_size, dtype=np.float32) - score_size // 2) * stride
  cy, cx = np.meshgrid(offs + centre[1], offs + centre[0], indexing="ij")
  a = shapes.shape[0]
  grid = np.zeros((score_size, score_size, a, 4), np.float32)
  grid[..., 0] = cx[..., None]
  grid[..., 1] = cy[..., None]
  grid[..., 2] = shapes[:, 0]
  grid[..., 3] = shapes[:, 1]
  return grid

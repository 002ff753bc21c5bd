"""Box geometry shared by labels, tracking and the model's decoders.

Convention (stated once, used everywhere in the library): boxes are in
**0-based continuous pixel coordinates**: pixel ``i`` covers ``[i, i + 1)``, so a
box ``[x, y, w, h]`` spans ``[x, x + w) x [y, y + h)`` and its centre is
``(x + w / 2, y + h / 2)``. Benchmark readers convert the benchmarks' own
(often 1-based) ground truth into this convention and result writers convert
back, so result files are always in the benchmark's own convention.

All functions are written with ``jax.numpy`` and broadcast over leading axes.
"""
import jax.numpy as jnp


def xywh_to_cxcywh(b):
  x, y, w, h = jnp.moveaxis(jnp.asarray(b), -1, 0)
  return jnp.stack([x + w / 2, y + h / 2, w, h], axis=-1)


def cxcywh_to_xywh(b):
  cx, cy, w, h = jnp.moveaxis(jnp.asarray(b), -1, 0)
  return jnp.stack([cx - w / 2, cy - h / 2, w, h], axis=-1)


def cxcywh_to_xyxy(b):
  cx, cy, w, h = jnp.moveaxis(jnp.asarray(b), -1, 0)
  return jnp.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def iou_cxcywh(a, b, eps=1e-9):
  """IoU of boxes given as (cx, cy, w, h); broadcasts a against b."""
  a = cxcywh_to_xyxy(a)
  b = cxcywh_to_xyxy(b)
  iw = jnp.maximum(jnp.minimum(a[..., 2], b[..., 2]) - jnp.maximum(a[..., 0], b[..., 0]), 0.)
  ih = jnp.maximum(jnp.minimum(a[..., 3], b[..., 3]) - jnp.maximum(a[..., 1], b[..., 1]), 0.)
  inter = iw * ih
  area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
  area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
  return inter / jnp.maximum(area_a + area_b - inter, eps)


def encode(boxes, anchors):
  """SiamRPN offsets (dx, dy, dw, dh) of (cx, cy, w, h) boxes w.r.t. anchors."""
  return jnp.stack([
      (boxes[..., 0] - anchors[..., 0]) / anchors[..., 2],
      (boxes[..., 1] - anchors[..., 1]) / anchors[..., 3],
      jnp.log(boxes[..., 2] / anchors[..., 2]),
      jnp.log(boxes[..., 3] / anchors[..., 3]),
  ], axis=-1)


def decode(deltas, anchors):
  """Inverse of `encode`: (dx, dy, dw, dh) -> (cx, cy, w, h)."""
  return jnp.stack([
      deltas[..., 0] * anchors[..., 2] + anchors[..., 0],
      deltas[..., 1] * anchors[..., 3] + anchors[..., 1],
      jnp.exp(deltas[..., 2]) * anchors[..., 2],
      jnp.exp(deltas[..., 3]) * anchors[..., 3],
  ], axis=-1)

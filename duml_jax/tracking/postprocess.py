"""SiamRPN++ post-processing of a fused score map (anchors.md 2.6; paper Appendix A).

Score maps are (S, S, A) over the anchor grid of `duml_jax.anchors` (cell
(i, j) at offset ``stride * (j - S // 2, i - S // 2)`` from the crop centre).
Box predictions are (S, S, A, 4) ``(cx, cy, w, h)`` in crop pixels relative to
the crop centre.

  chg(r) = max(r, 1 / r);   sz(w, h) = sqrt((w + p)(h + p)), p = (w + h) / 2
  s_c = chg(sz(w', h') / sz(w_t, h_t)),  r_c = chg((w_t / h_t) / (w' / h'))
  penalty = exp(-(r_c s_c - 1) k)
  pscore = (1 - wi) penalty score + wi hann
  best = argmax pscore;  lr = penalty[best] score[best] LR
  centre += box[best].centre / scale_z;  size = (1 - lr) size + lr box[best].size / scale_z

with (w_t, h_t) the current target size at crop scale; then the centre is
clipped to the image and the size to [min_size, image side].
"""
import jax.numpy as jnp
import numpy as np

from duml_jax import anchors as anchors_lib
from duml_jax import boxes


def hann_window(score_size: int, num_anchors: int):
  """(S, S, A) outer product of np.hanning(S), tiled over the anchors."""
  h = np.hanning(score_size)
  return np.repeat(np.outer(h, h)[..., None], num_anchors, axis=-1).astype(np.float32)


def anchor_offsets(score_size: int, stride: int, shapes):
  """(S, S, A, 4) anchors as offsets from the crop centre (tracking convention)."""
  return anchors_lib.anchor_grid(score_size, stride, shapes)


def decode_boxes(box_map, anchors):
  """(S, S, A, 4) (cx, cy, w, h) from the box map's (dx, dy, dw, dh) (first 4 slots)."""
  return boxes.decode(box_map[..., :4], anchors)


def _change(r):
  return jnp.maximum(r, 1. / r)


def _padded_side(w, h):
  p = (w + h) / 2.
  return jnp.sqrt((w + p) * (h + p))


def size_penalty(pred_wh, target_wh, penalty_k):
  """exp(-(r_c s_c - 1) k) of predicted sizes (..., 2) against the target size (2,)."""
  s_c = _change(_padded_side(pred_wh[..., 0], pred_wh[..., 1]) /
                _padded_side(target_wh[0], target_wh[1]))
  r_c = _change((target_wh[0] / target_wh[1]) / (pred_wh[..., 0] / pred_wh[..., 1]))
  return jnp.exp(-(r_c * s_c - 1.) * penalty_k)


def select(score, pred, target_wh, window, penalty_k, window_influence):
  """Best anchor of a fused score map.

  Args:
    score: (S, S, A) fused scores in [0, 1].
    pred: (S, S, A, 4) decoded boxes (crop pixels, offsets from the centre).
    target_wh: (2,) current target size at crop scale.
    window: (S, S, A) Hann window.
  Returns:
    (flat index of the best anchor, penalty (S, S, A), pscore (S, S, A)).
  """
  penalty = size_penalty(pred[..., 2:], target_wh, penalty_k)
  pscore = (1. - window_influence) * penalty * score + window_influence * window
  return jnp.argmax(pscore.reshape(-1)), penalty, pscore


def peak_offset(score_map, row, col):
  """Sub-cell (dx, dy) of a score map's peak at (row, col) from a parabola through 3 cells.

  Along each axis the parabola through the peak and its two neighbours has its vertex at
  ``(s[-1] - s[+1]) / (2 (s[-1] - 2 s[0] + s[+1]))`` cells, clipped to [-0.5, 0.5]; the offset
  is 0 at the map's border and where the three values are not concave.

  Args:
    score_map: (S, S) scores (rows are y, columns x).
    row, col: integer peak position.
  Returns:
    (2,) offset (x, y) in cells.
  """
  s = score_map.shape[0]

  def vertex(lo, mid, hi, inside):
    curv = lo - 2. * mid + hi
    ok = inside & (curv < 0.)
    return jnp.where(ok, jnp.clip(0.5 * (lo - hi) / jnp.where(ok, curv, -1.), -0.5, 0.5), 0.)

  at = lambda r, c: score_map[jnp.clip(r, 0, s - 1), jnp.clip(c, 0, s - 1)]
  dx = vertex(at(row, col - 1), at(row, col), at(row, col + 1), (col > 0) & (col < s - 1))
  dy = vertex(at(row - 1, col), at(row, col), at(row + 1, col), (row > 0) & (row < s - 1))
  return jnp.stack([dx, dy])


def update_target(centre, size, box_crop, scale_z, lr, image_size, min_size):
  """New (centre, size) in frame pixels from the chosen crop box (cx, cy, w, h).

  The centre moves by the box offset / scale_z (no smoothing), the size is
  blended with rate `lr`; the centre is clipped to [0, W] x [0, H] and the
  size to [min_size, W] x [min_size, H] (`image_size` = (W, H)).
  """
  box = box_crop / scale_z
  new_centre = centre + box[:2]
  new_size = size * (1. - lr) + box[2:] * lr
  image_size = image_size.astype(jnp.float32)
  new_centre = jnp.clip(new_centre, 0., image_size)
  new_size = jnp.clip(new_size, min_size, jnp.maximum(image_size, min_size))
  return new_centre, new_size

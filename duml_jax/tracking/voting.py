"""Score voting for the box representation (paper Section 3.3, Eq. 4-5).

  b* = sum_y w(y) o(y) b(y) / sum_y w(y) o(y)      over {y : IoU(b(y), b_best) > eps}   (Eq. 4)
  w(y) = s(y) exp(-(1 - IoU(b(y), b_best))^2 / sigma)                              (Eq. 5)

with s the fused localisation score of Eq. 1, o the predicted IoU (sigmoid of
the box map's 5th slot) and b_best the box of the arg-max anchor (the paper
writes b* on both sides; the reference box is the direct regression at y*).
Boxes are (cx, cy, w, h); the weighted mean is the same in corner form
because both are linear in (x1, y1, x2, y2). The arg-max box always votes
(IoU 1), so the denominator is positive whenever its own score and IoU are.
"""
import jax.numpy as jnp

from duml_jax import boxes


def vote_weights(pred, score, iou_pred, best, sigma, eps):
  """(N,) weights w(y) o(y) of Eq. 4-5 (0 outside the IoU > eps set); arguments as
  `score_voting`'s. The visualiser shows the largest of them."""
  return _weights(pred, score, iou_pred, pred[best], sigma, eps)


def _weights(pred, score, iou_pred, ref, sigma, eps):
  iou = boxes.iou_cxcywh(pred, ref)
  w = score * jnp.exp(-jnp.square(1. - iou) / sigma) * iou_pred
  return jnp.where(iou > eps, w, 0.)


def score_voting(pred, score, iou_pred, best, sigma, eps):
  """Voted box (4,) (cx, cy, w, h).

  Args:
    pred: (N, 4) candidate boxes (cx, cy, w, h).
    score: (N,) fused scores s (Eq. 1).
    iou_pred: (N,) predicted IoU o in [0, 1].
    best: index of the arg-max box.
    sigma, eps: Eq. 5 variance and Eq. 4 IoU threshold.
  """
  ref = pred[best]
  w = _weights(pred, score, iou_pred, ref, sigma, eps)
  den = jnp.sum(w)
  safe = jnp.where(den > 0., den, 1.)
  voted = jnp.sum(w[:, None] * pred, axis=0) / safe
  return jnp.where(den > 0., voted, ref)

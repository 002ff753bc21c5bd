"""Losses of Eq. 6: online (hinge), offline (focal), box (L1) and IoU (BCE).

Paper: Section 4 ("Online Approaches", "Offline Approaches", "Training Setup")
and Appendix A (Eq. 9, Eq. 10). Every loss returns a scalar, is
differentiable in its predictions, is finite (value and gradient) for
logits of any magnitude, and reduces over *all* of its input, so it works
on one image or on a batch with leading axes. Labels use 1 = positive,
0 = negative, -1 = ignored, as produced by `duml_jax.labels`.
"""
import types

import jax
import jax.numpy as jnp

from duml_jax import boxes
from duml_jax import config_lib

# Eq. 6 weights as configs/duml.py reads them by default (loss=eq6): online hinge 10,
# offline focal 1, lambda_b (box) 1.2, lambda_o (IoU) 1.2.
DEFAULT_WEIGHTS = types.MappingProxyType(
    {"online": 10.0, "offline": 1.0, "box": 1.2, "iou": 1.2})


def _masked_mean(values, mask):
  """sum(values over mask) / max(count(mask), 1); 0 when the mask is empty."""
  mask = mask.astype(values.dtype)
  return jnp.sum(jnp.where(mask > 0, values, 0.)) / jnp.maximum(jnp.sum(mask), 1.)


def sigmoid_focal_loss(logits, labels, alpha=0.25, gamma=2.0):
  """Sigmoid focal loss (Lin et al. 2017) for OFC, L_a of Eq. 6 (Section 4).

  With p = sigmoid(logit):
    FL_pos = -alpha * (1 - p)^gamma * log(p)          (label == 1)
    FL_neg = -(1 - alpha) * p^gamma * log(1 - p)      (label == 0)
  and, as Section 4 says ("the loss of negatives and positives samples are
  split and normalized with each of their total amount"),
    L = mean over positives of FL_pos + mean over negatives of FL_neg;
  label -1 is ignored. Counts are over the whole input (all batch elements);
  an empty class contributes 0. log(p), log(1 - p) use log_sigmoid (stable).
  """
  logits = jnp.asarray(logits, jnp.float32)
  labels = jnp.asarray(labels)
  p = jax.nn.sigmoid(logits)
  fl_pos = -alpha * jnp.power(jax.nn.sigmoid(-logits), gamma) * jax.nn.log_sigmoid(logits)
  fl_neg = -(1. - alpha) * jnp.power(p, gamma) * jax.nn.log_sigmoid(-logits)
  return _masked_mean(fl_pos, labels == 1) + _masked_mean(fl_neg, labels == 0)


def _log_probs(x, from_logits, eps):
  """(P, log P, log(1 - P)) from logits (exact, stable) or probabilities (clamped)."""
  x = jnp.asarray(x, jnp.float32)
  if from_logits:
    return jax.nn.sigmoid(x), jax.nn.log_sigmoid(x), jax.nn.log_sigmoid(-x)
  p = jnp.clip(x, eps, 1. - eps)
  return p, jnp.log(p), jnp.log1p(-p)


def fc_pr_loss(logits_or_probs, gaussian_label, alpha=2.0, beta=4.0, from_logits=True,
               eps=1e-4):
  """FC_PR, the penalty-reduced focal loss of CenterNet; paper Eq. 9 (OFR).

    L = -1/N sum_y { (1 - P)^alpha log P                    if Y == 1
                   { (1 - Y)^beta P^alpha log(1 - P)        otherwise
  N = number of cells with Y == 1 (the Gaussian's peak; see
  `labels.ofr_label`, which rounds the centre so the peak is exactly 1);
  N = 0 (negative pair) divides by 1, as CenterNet returns the negative term.

  Args:
    logits_or_probs: predictions, logits when ``from_logits`` (P = sigmoid,
      log P by log_sigmoid: exact and with a gradient at any logit), else
      probabilities clamped to [eps, 1 - eps] before the log as CenterNet does.
    gaussian_label: labels Y in [0, 1], same shape.
  """
  y = jnp.asarray(gaussian_label, jnp.float32)
  p, log_p, log_1mp = _log_probs(logits_or_probs, from_logits, eps)
  is_pos = y >= 1.
  pos_term = jnp.power(1. - p, alpha) * log_p
  neg_term = jnp.power(1. - y, beta) * jnp.power(p, alpha) * log_1mp
  total = jnp.sum(jnp.where(is_pos, pos_term, neg_term))
  return -total / jnp.maximum(jnp.sum(is_pos.astype(jnp.float32)), 1.)


def fc_rg_loss(logits_or_probs, gaussian_label, alpha=2.0, beta=4.0, from_logits=True,
               eps=1e-4):
  """FC_RG, the "regressive focal loss" of paper Eq. 10 (Appendix A).

  Eq. 10 is printed as L = -1/N sum_y -Y^beta (Y - P)^alpha log P. Taken
  literally (two minus signs) that is +1/N sum Y^beta (Y - P)^alpha log P <= 0,
  unbounded below as P -> 0 wherever Y > 0, so minimising it would drive
  every non-background prediction to 0, against the paper's claim that
  "P = Y holds true at the optimal point". We implement the single-minus
  reading
    L = -1/N sum_y Y^beta (Y - P)^alpha log P   (>= 0 for even alpha),
  which is 0 with a stationary point at P = Y. Note what it does: cells with
  Y = 0 get no loss at all, and P = 1 also gives 0, so it does not suppress
  background; this may be why the paper found FC_PR better (Table 10).
  N = number of cells with Y == 1 (at least 1), as for `fc_pr_loss`.
  Arguments as `fc_pr_loss`; alpha should be an even integer (Eq. 10).
  """
  y = jnp.asarray(gaussian_label, jnp.float32)
  p, log_p, _ = _log_probs(logits_or_probs, from_logits, eps)
  n = jnp.maximum(jnp.sum((y >= 1.).astype(jnp.float32)), 1.)
  return -jnp.sum(jnp.power(y, beta) * jnp.power(y - p, alpha) * log_p) / n


def _reduce(sq, reduction):
  """'mean': over every element (DiMP's MSELoss); 'sum_cells': summed over the map's last
  three axes (H, W, A), then the mean over the leading ones (images)."""
  if reduction == "mean":
    return jnp.mean(sq)
  if reduction == "sum_cells":
    return jnp.mean(jnp.sum(sq, axis=(-3, -2, -1)))
  raise ValueError(f"loss.online_reduction={reduction!r}; allowed: "
                   f"{config_lib.ONLINE_REDUCTIONS}")


def hinge_regression_loss(scores, label, threshold=0.05, reduction="mean"):
  """ONR outer-loop loss L_r of Eq. 6: DiMP's ``LBHinge`` (Section 4: "hinge loss").

  Where label < threshold (background) the prediction is replaced by
  relu(prediction) and the target by 0, so negative scores on background
  cost nothing ("to avoid the dominance of easy negatives"); elsewhere plain
  squared error. L = mean over all elements of (prediction' - target')^2
  (``reduction='sum_cells'``: summed over each map's (H, W, A) cells, mean over maps).
  """
  scores = jnp.asarray(scores, jnp.float32)
  label = jnp.asarray(label, jnp.float32)
  background = label < threshold
  pred = jnp.where(background, jax.nn.relu(scores), scores)
  target = jnp.where(background, 0., label)
  return _reduce(jnp.square(pred - target), reduction)


def l2_regression_loss(scores, label, reduction="mean"):
  """Plain squared error (the inner loop's L2 of Section 3.1), the ablation of the hinge:
  negative scores on background are penalised too."""
  scores = jnp.asarray(scores, jnp.float32)
  label = jnp.asarray(label, jnp.float32)
  return _reduce(jnp.square(scores - label), reduction)


def online_regression_loss(scores, label, kind="hinge", threshold=0.05, reduction="mean"):
  """The outer online loss named by ``loss.online_loss``: 'hinge' (Section 4) or 'l2'."""
  if kind == "hinge":
    return hinge_regression_loss(scores, label, threshold, reduction)
  if kind == "l2":
    return l2_regression_loss(scores, label, reduction)
  raise ValueError(f"loss.online_loss={kind!r}; allowed: {config_lib.ONLINE_LOSSES}")


def box_l1_loss(pred_deltas, target_deltas, pos_mask):
  """Box loss L_b of Eq. 6: L1 on the SiamRPN anchor offsets over positives.

  As pysot: the |pred - target| of the 4 offsets are summed (not averaged)
  per anchor, and anchors are weighted 1 / (number of positives), here the
  count over the whole input (at least 1).

  Args:
    pred_deltas, target_deltas: (..., 4).
    pos_mask: (...) bool or {0, 1} (e.g. ``labels == 1``).
  """
  pred = jnp.asarray(pred_deltas, jnp.float32)
  target = jax.lax.stop_gradient(jnp.asarray(target_deltas, jnp.float32))
  pos = jnp.asarray(pos_mask) > 0
  target = jnp.where(pos[..., None], target, 0.)  # non-finite rows off the mask stay out
  l1 = jnp.sum(jnp.abs(pred - target), axis=-1)
  return _masked_mean(l1, pos)


def iou_bce_loss(pred_iou_logits, pred_deltas, anchors, gt_box, mask):
  """IoU loss L_o of Eq. 6: BCE of the box head's IoU slot o (Section 4).

  The target y^o is the IoU between the GT and the box decoded from the
  predicted offsets at the same anchor, under ``stop_gradient`` (no gradient
  flows into the box offsets through the target); non-finite targets (from
  overflowing offsets) count as IoU 0. BCE with logits, averaged over the
  anchors in ``mask`` (the positives; count at least 1).

  Args:
    pred_iou_logits: (..., H, W, A) logits of the IoU slot.
    pred_deltas: (..., H, W, A, 4) predicted offsets.
    anchors: (H, W, A, 4) absolute (cx, cy, w, h) anchors.
    gt_box: (..., 4) [x, y, w, h], one box per leading index of the predictions.
    mask: (..., H, W, A) bool or {0, 1}.
  """
  logits = jnp.asarray(pred_iou_logits, jnp.float32)
  gt = boxes.xywh_to_cxcywh(jnp.asarray(gt_box, jnp.float32))
  gt = gt.reshape(gt.shape[:-1] + (1, 1, 1, 4))
  decoded = boxes.decode(jax.lax.stop_gradient(jnp.asarray(pred_deltas, jnp.float32)),
                         jnp.asarray(anchors, jnp.float32))
  target = boxes.iou_cxcywh(decoded, gt)
  target = jax.lax.stop_gradient(jnp.clip(jnp.where(jnp.isfinite(target), target, 0.), 0., 1.))
  bce = -(target * jax.nn.log_sigmoid(logits) + (1. - target) * jax.nn.log_sigmoid(-logits))
  return _masked_mean(bce, jnp.asarray(mask) > 0)


def total_loss(terms, weights=None):
  """L_total of Eq. 6: the weighted sum of the loss terms present.

    L_total = lambda_r L_r + lambda_a L_a + lambda_b L_b + lambda_o L_o
  with names 'online' (L_r, robust localisation ONR), 'offline' (L_a,
  accurate localisation OFC), 'box' (L_b) and 'iou' (L_o); weights default to
  `DEFAULT_WEIGHTS` (the eq6 reading: 10, 1, 1.2, 1.2). The sentence after
  Eq. 6 calls L_r focal loss and L_a hinge loss; that swaps them relative to
  Section 4, where the online branch is trained "under hinge loss" and the
  offline classification with focal loss. 'online' is always the hinge (`hinge_regression_loss`) and
  'offline' the focal loss (`sigmoid_focal_loss`, or `fc_pr_loss` for OFR); the
  two readings of the sentence differ in which weight goes with which:
  ``configs/duml.py:...,loss=section4`` (online 1, offline 10: the subscripts
  are right) or ``loss=eq6`` (hinge 10, focal 1: the loss names are right).
  docs/paper_vs_code.md has the evidence.

  Args:
    terms: dict name -> scalar loss; a subset of the names is fine (e.g. an
      offline-only ablation has no 'online' term).
    weights: dict name -> weight (e.g. the config's loss weights); None uses
      `DEFAULT_WEIGHTS`. Every term needs a weight.

  Returns:
    (total scalar, dict name -> weighted term) for logging.
  """
  weights = DEFAULT_WEIGHTS if weights is None else weights
  missing = sorted(set(terms) - set(weights))
  if missing:
    raise ValueError(f"total_loss: no weight for loss term(s) {missing}; "
                     f"weights given for {sorted(weights)}")
  weighted = {name: weights[name] * value for name, value in terms.items()}
  total = sum(weighted.values(), jnp.zeros((), jnp.float32))
  return total, weighted

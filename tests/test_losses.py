"""Tests for duml_jax.training.losses, against values worked out by hand."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from duml_jax.training import losses

LN2 = math.log(2.)
LN3 = math.log(3.)  # sigmoid(ln 3) = 0.75, sigmoid(-ln 3) = 0.25
LN4 = math.log(4.)

# Jitted once per shape: much faster on CPU than eager op-by-op dispatch.
focal = jax.jit(losses.sigmoid_focal_loss)
fc_pr = jax.jit(losses.fc_pr_loss, static_argnames=("from_logits",))
fc_rg = jax.jit(losses.fc_rg_loss, static_argnames=("from_logits",))
hinge = jax.jit(losses.hinge_regression_loss)
box_l1 = jax.jit(losses.box_l1_loss)
iou_bce = jax.jit(losses.iou_bce_loss)


def test_sigmoid_focal_loss_hand_value():
  logits = jnp.array([0., -LN3, 0., LN3, 7.])
  labels = jnp.array([1, 1, 0, 0, -1])
  # Positives (alpha = 0.25, gamma = 2): p = 0.5 -> 0.25 * 0.5^2 * ln 2;
  # p = 0.25 -> 0.25 * 0.75^2 * ln 4. Mean of the two.
  pos = (0.25 * 0.25 * LN2 + 0.25 * 0.5625 * LN4) / 2
  # Negatives (1 - alpha = 0.75): p = 0.5 -> 0.75 * 0.5^2 * ln 2;
  # p = 0.75 -> 0.75 * 0.75^2 * ln 4. Mean of the two. The -1 is ignored.
  neg = (0.75 * 0.25 * LN2 + 0.75 * 0.5625 * LN4) / 2
  np.testing.assert_allclose(focal(logits, labels), pos + neg, rtol=1e-5)
  # Each class is normalised by its own count: doubling the negatives changes nothing.
  logits2 = jnp.concatenate([logits, logits[2:4]])
  labels2 = jnp.concatenate([labels, labels[2:4]])
  np.testing.assert_allclose(focal(logits2, labels2), pos + neg, rtol=1e-5)


def test_sigmoid_focal_loss_empty_classes():
  logits = jnp.array([0., LN3])
  np.testing.assert_allclose(focal(logits, jnp.array([0, 0])),
                             (0.75 * 0.25 * LN2 + 0.75 * 0.5625 * LN4) / 2, rtol=1e-5)
  assert focal(logits, jnp.array([-1, -1])) == 0.


def test_fc_pr_loss_hand_value():
  # Y = [1, 0.5, 0], P = [0.5, 0.5, 0.25], alpha = 2, beta = 4, N = 1:
  #  Y = 1:   (1 - 0.5)^2 log 0.5                 = -0.25 ln 2
  #  Y = 0.5: (1 - 0.5)^4 * 0.5^2 * log(1 - 0.5)   = -0.015625 ln 2
  #  Y = 0:   1 * 0.25^2 * log(0.75)              = 0.0625 ln 0.75
  want = 0.25 * LN2 + 0.015625 * LN2 - 0.0625 * math.log(0.75)
  y = jnp.array([1., 0.5, 0.])
  p = jnp.array([0.5, 0.5, 0.25])
  np.testing.assert_allclose(fc_pr(p, y, from_logits=False), want, rtol=1e-5)
  np.testing.assert_allclose(fc_pr(jnp.array([0., 0., -LN3]), y), want, rtol=1e-5)
  # Two positives -> N = 2 halves a doubled sum.
  np.testing.assert_allclose(fc_pr(jnp.tile(p, 2), jnp.tile(y, 2), from_logits=False),
                             want, rtol=1e-5)
  # No positive (negative pair): divide by 1, the negative term only.
  np.testing.assert_allclose(fc_pr(p[1:], y[1:], from_logits=False),
                             0.015625 * LN2 - 0.0625 * math.log(0.75), rtol=1e-5)


def test_fc_rg_loss_hand_value_and_optimum():
  # Y = [1, 0.5, 0], P = [0.5, 0.25, 0.9], alpha = 2, beta = 4, N = 1:
  #  1^4 * 0.5^2 * log 0.5 = -0.25 ln 2; 0.5^4 * 0.25^2 * log 0.25 = -0.00390625 ln 4;
  #  Y = 0 contributes 0. L = -(sum) / 1.
  y = jnp.array([1., 0.5, 0.])
  p = jnp.array([0.5, 0.25, 0.9])
  want = 0.25 * LN2 + 0.00390625 * LN4
  np.testing.assert_allclose(fc_rg(p, y, from_logits=False), want, rtol=1e-5)
  # Our reading of Eq. 10 has its minimum 0 at P = Y, with zero gradient there,
  # and is positive elsewhere.
  y2 = jnp.array([1., 0.6, 0.3])
  loss = lambda q: fc_rg(q, y2, from_logits=False, eps=1e-7)
  assert abs(float(loss(y2))) < 1e-7
  np.testing.assert_allclose(jax.grad(loss)(jnp.array([0.999999, 0.6, 0.3])), 0., atol=1e-5)
  assert loss(y2 - 0.1) > 0 and loss(jnp.clip(y2 + 0.1, 0, 1)) > 0


def test_hinge_regression_loss_hand_value():
  scores = jnp.array([-1., 0.5, 0.2, 0.9])
  label = jnp.array([0., 0.01, 0.5, 1.])
  # Background (label < 0.05): relu(-1) - 0 = 0, relu(0.5) - 0 = 0.5;
  # foreground: 0.2 - 0.5 = -0.3, 0.9 - 1 = -0.1. MSE = (0 + 0.25 + 0.09 + 0.01) / 4.
  np.testing.assert_allclose(hinge(scores, label), 0.0875, rtol=1e-5)
  g = jax.grad(hinge)(scores, label)
  np.testing.assert_allclose(g, [0., 2 * 0.5 / 4, 2 * -0.3 / 4, 2 * -0.1 / 4], rtol=1e-5,
                             atol=1e-7)


def test_online_loss_kind_and_reduction_hand_values():
  # Two maps of 1 x 2 cells (H, W, A = 1, 2, 1): the hinge example above split in two.
  scores = jnp.array([-1., 0.5, 0.2, 0.9]).reshape(2, 1, 2, 1)
  label = jnp.array([0., 0.01, 0.5, 1.]).reshape(2, 1, 2, 1)
  f = jax.jit(losses.online_regression_loss, static_argnames=("kind", "reduction"))
  # Hinge squared errors 0, 0.25 | 0.09, 0.01; L2 (background not clipped): 1, 0.2401 | same.
  np.testing.assert_allclose(f(scores, label, kind="hinge"), 0.0875, rtol=1e-5)
  np.testing.assert_allclose(f(scores, label, kind="hinge", reduction="sum_cells"),
                             (0.25 + 0.10) / 2, rtol=1e-5)
  np.testing.assert_allclose(f(scores, label, kind="l2"), 1.3401 / 4, rtol=1e-5)
  np.testing.assert_allclose(f(scores, label, kind="l2", reduction="sum_cells"),
                             (1.2401 + 0.10) / 2, rtol=1e-5)
  with pytest.raises(ValueError, match="loss.online_loss"):
    losses.online_regression_loss(scores, label, kind="focal")
  with pytest.raises(ValueError, match="loss.online_reduction"):
    losses.online_regression_loss(scores, label, reduction="sum")


def test_total_loss_under_each_reading_of_eq6():
  # Terms near the tiny recipe's values at init; the weights of configs/duml.py's readings.
  from configs import duml as duml_config
  terms = {"online": 0.02, "offline": 0.17, "box": 0.5, "iou": 0.7}
  for reading, expected in (("section4", 0.02 + 1.7 + 0.6 + 0.84),
                            ("eq6", 0.2 + 0.17 + 0.6 + 0.84)):
    c = duml_config.get_config(f"tiny,loss={reading}").loss
    weights = {"online": c.w_online, "offline": c.w_offline, "box": c.w_box, "iou": c.w_iou}
    total, weighted = losses.total_loss(terms, weights)
    np.testing.assert_allclose(float(total), expected, rtol=1e-6)
    np.testing.assert_allclose(float(weighted["online"]), c.w_online * 0.02, rtol=1e-6)


def test_box_l1_loss_hand_value():
  pred = jnp.array([[0., 0., 0., 0.], [1., 1., 1., 1.], [5., 5., 5., 5.]])
  target = jnp.array([[0.5, 0., 0., -0.5], [1., 1., 1., 2.], [jnp.nan, jnp.inf, 0., 0.]])
  mask = jnp.array([True, True, False])
  # Sum over the 4 offsets: 0.5 + 0.5 = 1 and 1; normalised by 2 positives.
  np.testing.assert_allclose(box_l1(pred, target, mask), 1.0, rtol=1e-6)
  g = jax.grad(box_l1)(pred, target, mask)
  assert np.isfinite(g).all()
  np.testing.assert_allclose(g[2], 0.)
  np.testing.assert_allclose(g[0, ::3], [-0.5, 0.5])  # d|p - t| / dp / 2 positives
  assert box_l1(pred, target, jnp.zeros(3, bool)) == 0.


# Two anchors 32x32 at (32, 32) and (48, 32); GT [16, 16, 32, 32] equals the first;
# the second overlaps it by 16*32 = 512 of a 1536 union: IoU 1/3.
ANCHORS = jnp.array([[[[32., 32., 32., 32.]], [[48., 32., 32., 32.]]]])  # (1, 2, 1, 4)
GT = jnp.array([16., 16., 32., 32.])


def test_iou_bce_loss_hand_value():
  logits = jnp.full((1, 2, 1), LN3)  # p = 0.75
  deltas = jnp.zeros((1, 2, 1, 4))  # decoded boxes = the anchors
  mask = jnp.ones((1, 2, 1), bool)
  # BCE(t=1) = -ln 0.75; BCE(t=1/3) = -(1/3 ln 0.75 + 2/3 ln 0.25); mean of the two.
  want = (-math.log(0.75) - (math.log(0.75) / 3 + 2 * math.log(0.25) / 3)) / 2
  np.testing.assert_allclose(iou_bce(logits, deltas, ANCHORS, GT, mask), want,
                             rtol=1e-5)
  # Only the masked anchor: -ln 0.75.
  np.testing.assert_allclose(
      iou_bce(logits, deltas, ANCHORS, GT, jnp.array([[[True], [False]]])),
      -math.log(0.75), rtol=1e-5)
  # The IoU target is stop_gradient'ed: no gradient reaches the offsets.
  g = jax.grad(iou_bce, argnums=(0, 1))(logits, deltas, ANCHORS, GT, mask)
  np.testing.assert_allclose(g[1], 0.)
  np.testing.assert_allclose(g[0][0, :, 0], [(0.75 - 1) / 2, (0.75 - 1 / 3) / 2], rtol=1e-5)
  # Batched: one GT per leading index.
  logits_b = jnp.stack([logits, jnp.zeros_like(logits)])
  deltas_b = jnp.stack([deltas, deltas])
  gts = jnp.stack([GT, GT + jnp.array([16., 0., 0., 0.])])
  mask_b = jnp.stack([mask, mask])
  # Second sample: GT = the second anchor; logit 0 -> BCE = ln 2 for any target.
  np.testing.assert_allclose(iou_bce(logits_b, deltas_b, ANCHORS, gts, mask_b),
                             (2 * want + 2 * LN2) / 4, rtol=1e-5)


def test_gradients_finite_at_extreme_logits():
  x = jnp.array([50., -50., 50., -50., 0.])
  lab = jnp.array([1, 1, 0, 0, -1])
  y = jnp.array([1., 1., 0., 0.5, 0.2])
  checks = {
      "focal": (lambda z: focal(z, lab)),
      "fc_pr": (lambda z: fc_pr(z, y)),
      "fc_rg": (lambda z: fc_rg(z, y)),
      "hinge": (lambda z: hinge(z, y)),
  }
  for name, fn in checks.items():
    val, g = jax.jit(jax.value_and_grad(fn))(x)
    assert np.isfinite(val) and np.isfinite(g).all(), name
  # The wrong-sign saturated logits still get a gradient (log_sigmoid, no clamp).
  g = jax.jit(jax.grad(checks["focal"]))(x)
  assert g[1] < 0 and g[2] > 0
  g = jax.jit(jax.grad(checks["fc_pr"]))(x)
  assert g[1] < 0 and g[2] > 0
  # IoU BCE with extreme logits and overflowing offsets (exp(100) = inf).
  logits = jnp.array([[[50.], [-50.]]])
  deltas = jnp.array([[[[0., 0., 100., 100.]], [[0., 0., -100., 0.]]]])
  mask = jnp.ones((1, 2, 1))
  val, g = jax.jit(jax.value_and_grad(losses.iou_bce_loss))(logits, deltas, ANCHORS, GT, mask)
  assert np.isfinite(val) and np.isfinite(g).all()


def test_jit_and_vmap():
  rng = np.random.default_rng(0)
  logits = 3 * rng.standard_normal((3, 5, 5, 2)).astype(np.float32)
  labels = rng.integers(-1, 2, (3, 5, 5, 2))
  eager = losses.sigmoid_focal_loss(logits, labels)  # no jit
  np.testing.assert_allclose(focal(logits, labels), eager, rtol=1e-5)
  per_image = jax.jit(jax.vmap(losses.sigmoid_focal_loss))(logits, labels)
  assert per_image.shape == (3,)
  np.testing.assert_allclose(per_image[0], focal(logits[0], labels[0]), rtol=1e-5)
  y = rng.uniform(0., 1., (3, 5, 5)).astype(np.float32)
  per_image = jax.jit(jax.vmap(losses.hinge_regression_loss))(logits[..., 0], y)
  np.testing.assert_allclose(per_image[2], hinge(logits[2, ..., 0], y[2]), rtol=1e-5)
  per_image = jax.jit(jax.vmap(losses.fc_pr_loss))(logits[..., 0], y)
  np.testing.assert_allclose(per_image[1], fc_pr(logits[1, ..., 0], y[1]), rtol=1e-5)


def test_total_loss_eq6():
  terms = {"online": jnp.array(1.), "offline": jnp.array(0.1), "box": jnp.array(2.),
           "iou": jnp.array(0.5)}
  # The default (eq6) reading: 10 * 1 + 1 * 0.1 + 1.2 * 2 + 1.2 * 0.5 = 13.1
  total, weighted = losses.total_loss(terms)
  np.testing.assert_allclose(total, 13.1, rtol=1e-6)
  np.testing.assert_allclose([weighted[k] for k in ("online", "offline", "box", "iou")],
                             [10., 0.1, 2.4, 0.6], rtol=1e-6)
  # Config weights and a subset of terms (offline-only ablation).
  total, weighted = losses.total_loss({"offline": jnp.array(0.1)}, {"offline": 3., "box": 1.})
  np.testing.assert_allclose(total, 0.3, rtol=1e-6)
  assert set(weighted) == {"offline"}
  with pytest.raises(ValueError, match="extra"):
    losses.total_loss({"extra": jnp.array(1.)})
  # Differentiable through the weighted sum.
  g = jax.grad(lambda t: losses.total_loss({"box": t})[0])(jnp.array(1.))
  np.testing.assert_allclose(g, 1.2, rtol=1e-6)

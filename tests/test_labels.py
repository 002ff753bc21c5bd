"""Tests for duml_jax.labels (ATSS, IoU, ONC, Gaussian labels)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from duml_jax import anchors as anchors_lib
from duml_jax import boxes
from duml_jax import labels

CENTRE = (127.5, 127.5)
SHAPES5 = anchors_lib.anchor_shapes((0.33, 0.5, 1, 2, 3), (8,), 8)
ANCHORS5 = anchors_lib.anchor_grid(25, 8, SHAPES5, centre=CENTRE)
ANCHORS1 = anchors_lib.anchor_grid(25, 8, [(64., 64.)], centre=CENTRE)
# Jitted once per shape: much faster on CPU than eager op-by-op dispatch.
MAX_IOU = jax.jit(labels.atss_max_iou, static_argnames=("topk",))
MIN_L2 = jax.jit(labels.atss_min_l2, static_argnames=("topk",))
IOU = jax.jit(labels.iou_threshold_labels)
GAUSS = jax.jit(labels.gaussian_label, static_argnums=0)
OFR = jax.jit(labels.ofr_label, static_argnums=1)
ONR = jax.jit(labels.onr_label, static_argnums=1)
GT_BOXES = np.array([
    [100., 110., 60., 40.],
    [90., 60., 30., 90.],
    [140., 120., 70., 70.],
    [60., 150., 110., 35.],
], np.float32)


def np_iou(anchors, gt_xywh):
  """Independent NumPy IoU of (cx, cy, w, h) anchors with an [x, y, w, h] box."""
  ax1 = anchors[..., 0] - anchors[..., 2] / 2
  ay1 = anchors[..., 1] - anchors[..., 3] / 2
  ax2 = anchors[..., 0] + anchors[..., 2] / 2
  ay2 = anchors[..., 1] + anchors[..., 3] / 2
  gx1, gy1, gw, gh = gt_xywh
  iw = np.clip(np.minimum(ax2, gx1 + gw) - np.maximum(ax1, gx1), 0, None)
  ih = np.clip(np.minimum(ay2, gy1 + gh) - np.maximum(ay1, gy1), 0, None)
  inter = iw * ih
  return inter / (anchors[..., 2] * anchors[..., 3] + gw * gh - inter)


def np_inside(anchors, gt_xywh):
  x, y, w, h = gt_xywh
  cx, cy = anchors[..., 0], anchors[..., 1]
  return np.minimum.reduce([cx - x, cy - y, x + w - cx, y + h - cy]) > 0.01


def np_atss_max_iou(anchors, gt_xywh, k):
  iou = np_iou(anchors, gt_xywh)
  cand = np.zeros(iou.size, bool)
  cand[np.argsort(-iou.ravel(), kind="stable")[:k]] = True  # ties: lower index first
  cand = cand.reshape(iou.shape)
  top = iou[cand]
  thr = top.mean() + top.std(ddof=1) - 1e-6  # mean + std (unbiased), tie tolerance
  return (cand & (iou >= thr) & np_inside(anchors, gt_xywh)).astype(np.int32)


def positives(label_map):
  return {tuple(p) for p in np.argwhere(np.asarray(label_map) == 1).tolist()}


@pytest.mark.parametrize("anchors, k", [(ANCHORS5, 15), (ANCHORS1, 11)])
def test_atss_max_iou_matches_reference_with_paper_topk(anchors, k):
  # Default top-k is the paper's: 15 for A = 5, 11 for A = 1 (Appendix A).
  for gt in GT_BOXES:
    got = np.asarray(MAX_IOU(anchors, gt))
    np.testing.assert_array_equal(got, np_atss_max_iou(anchors, gt, k))
    assert got.sum() >= 1


def test_atss_topk_changes_threshold():
  # The candidate count enters the statistics: a 64x64 GT centred on cell
  # (12, 12) with the single 64x64 anchor shape has IoU 1 there, 56*64 /
  # (2*64^2 - 56*64) = 7/9 at the 4 edge neighbours, 56^2 / (2*64^2 - 56^2)
  # = 0.6203 at the 4 corner neighbours. k = 9: mean 0.7325, std 0.1275,
  # threshold 0.860 -> only the centre. k = 5: mean (1 + 4*7/9)/5 = 0.8222,
  # std sqrt((0.1778^2 + 4*0.0444^2)/4) = 0.0994, threshold 0.9216 -> only the
  # centre. k = 2 candidates {1, 7/9}: threshold 0.8889 + 0.1571 -> none.
  gt = np.array([95.5, 95.5, 64., 64.], np.float32)
  for k, want in [(9, {(12, 12, 0)}), (5, {(12, 12, 0)}), (2, set())]:
    assert positives(MAX_IOU(ANCHORS1, gt, topk=k)) == want, k
  # Min-L2 with the 9 closest centres (the 3x3 block) gives the same threshold 0.860.
  assert positives(MIN_L2(ANCHORS1, gt, topk=9)) == {(12, 12, 0)}


def test_atss_topk_validation():
  with pytest.raises(ValueError, match="topk"):
    MAX_IOU(ANCHORS5, GT_BOXES[0], topk=1)
  with pytest.raises(ValueError, match="A=3"):
    MAX_IOU(ANCHORS5[..., :3, :], GT_BOXES[0])


@pytest.mark.parametrize("fn", [MAX_IOU, MIN_L2])
@pytest.mark.parametrize("anchors", [ANCHORS5, ANCHORS1])
def test_atss_positives_inside_box_and_move_with_it(fn, anchors):
  for gt in GT_BOXES:
    lab = np.asarray(fn(anchors, gt))
    assert set(np.unique(lab)) <= {0, 1}
    pos = lab == 1
    assert pos.any()
    assert np_inside(anchors, gt)[pos].all()
    # Shift the GT by +8 px in x and -8 px in y: positives move one cell.
    moved = gt + np.array([8., -8., 0., 0.], np.float32)
    want = {(i - 1, j + 1, a) for i, j, a in positives(lab)}
    assert positives(fn(anchors, moved)) == want


def test_atss_min_l2_uses_topk_closest_per_shape():
  # With top-9 per shape every candidate is one of the 9 closest positions of
  # its shape; a positive outside that 3x3 block would reveal a wrong candidate set.
  gt = np.array([96., 96., 64., 64.], np.float32)  # centre (128, 128) ~ cell (12.06, 12.06)
  lab = np.asarray(MIN_L2(ANCHORS5, gt, topk=9))
  rows, cols, _ = np.nonzero(lab)
  assert lab.sum() >= 1
  assert rows.min() >= 11 and rows.max() <= 13 and cols.min() >= 11 and cols.max() <= 13


def test_max_iou_and_min_l2_differ():
  # A 60x40 box: Max-IoU's 15 candidates are all well-matched wide anchors,
  # so its mean + std threshold is high; Min-L2's 45 candidates include the
  # tall shapes at the 9 nearest positions, which lowers the threshold and
  # lets the square anchors above and below the centre in as well.
  gt = np.array([100., 110., 60., 40.], np.float32)
  a = positives(MAX_IOU(ANCHORS5, gt))
  b = positives(MIN_L2(ANCHORS5, gt))
  assert a != b
  assert a < b
  assert {(11, 12, 2), (13, 12, 2)} <= b - a


def test_iou_threshold_labels_rule():
  for gt in GT_BOXES:
    lab = np.asarray(IOU(ANCHORS5, gt))
    iou = np_iou(ANCHORS5, gt)
    best = np.unravel_index(np.argmax(iou), iou.shape)
    assert lab[best] == 1
    np.testing.assert_array_equal(lab[iou > 0.6], 1)
    np.testing.assert_array_equal(lab[iou < 0.3][iou[iou < 0.3] < iou.max()], 0)
    middle = (iou >= 0.3) & (iou <= 0.6)
    middle[best] = False
    np.testing.assert_array_equal(lab[middle], -1)


def test_iou_threshold_best_anchor_positive_when_below_threshold():
  gt = np.array([120., 120., 16., 16.], np.float32)  # max IoU 256/4096 < 0.3
  lab = np.asarray(IOU(ANCHORS1, gt))
  assert positives(lab) == {(12, 12, 0)}
  assert (lab == -1).sum() == 0


def test_onc_best_anchor_always_positive():
  rng = np.random.default_rng(0)
  xy = rng.uniform(30., 200., (32, 2))
  wh = rng.uniform(8., 150., (32, 2))
  gts = np.concatenate([xy, wh], 1).astype(np.float32)
  labs = np.asarray(jax.jit(jax.vmap(labels.onc_labels, in_axes=(None, 0)))(ANCHORS5, gts))
  for gt, lab in zip(gts, labs):
    iou = np_iou(ANCHORS5, gt)
    best = iou >= iou.max() - 1e-6  # several anchors may tie for the best IoU
    assert (lab[best] == 1).sum() >= 1
    np.testing.assert_array_equal(lab[iou > 0.8], 1)
    assert ((lab == 1) <= ((iou > 0.8) | best)).all()
    ignored = lab == -1
    assert ((iou[ignored] >= 0.3) & (iou[ignored] <= 0.8)).all()


@pytest.mark.parametrize("fn", [labels.atss_max_iou, labels.atss_min_l2,
                                labels.iou_threshold_labels, labels.onc_labels])
def test_jit_vmap_over_batch_and_negative_pairs(fn):
  flags = jnp.array([True, False, True, True])
  single = jax.jit(fn)
  batched = jax.jit(jax.vmap(lambda g, f: fn(ANCHORS5, g, positive=f)))(GT_BOXES, flags)
  assert batched.shape == (4, 25, 25, 5) and batched.dtype == jnp.int32
  for gt, flag, got in zip(GT_BOXES, np.asarray(flags), np.asarray(batched)):
    if flag:
      np.testing.assert_array_equal(got, np.asarray(single(ANCHORS5, gt)))
    else:
      np.testing.assert_array_equal(got, 0)  # negative pair: all negative


def test_box_targets_decode_to_gt():
  gt = GT_BOXES[0]
  t = labels.box_targets(ANCHORS5, gt)
  assert t.shape == (25, 25, 5, 4)
  dec = np.asarray(boxes.decode(t, ANCHORS5))
  np.testing.assert_allclose(dec, np.broadcast_to([130., 130., 60., 40.], dec.shape),
                             rtol=1e-5, atol=1e-3)
  # Hand value at the centre 64x64 anchor (cx = cy = 127.5): ((130-127.5)/64,
  # (130-127.5)/64, log(60/64), log(40/64)).
  np.testing.assert_allclose(t[12, 12, 2], [2.5 / 64, 2.5 / 64, math.log(60 / 64),
                                            math.log(40 / 64)], rtol=1e-5)


def test_gaussian_label_values_and_peak():
  g = np.asarray(GAUSS(25, (12., 7.), 2.))
  assert g.shape == (25, 25)
  assert np.unravel_index(np.argmax(g), g.shape) == (7, 12)  # (row = y, col = x)
  assert g[7, 12] == 1.0
  np.testing.assert_allclose(g[7, 13], math.exp(-1 / 8), rtol=1e-6)  # d = 1, sigma = 2
  np.testing.assert_allclose(g[9, 14], math.exp(-8 / 8), rtol=1e-6)  # d^2 = 8
  g2 = np.asarray(GAUSS((3, 5), (4., 0.), 1.))
  assert g2.shape == (3, 5) and g2[0, 4] == 1.0


def test_ofr_and_onr_labels_centre_on_target():
  # Box centre (130, 150): offline 25x25 grid (cell j at 31.5 + 8j) ->
  # ((130 - 31.5) / 8, (150 - 31.5) / 8) = (12.31, 14.81) -> peak at cell (15, 12).
  box = np.array([110., 130., 40., 40.], np.float32)
  cx, cy = labels.centre_in_cells(box, 8, 31.5)
  np.testing.assert_allclose([cx, cy], [12.3125, 14.8125])
  g = np.asarray(OFR(box, 25, 8, 31.5, 1.5))
  assert g.max() == 1.0 and (g == 1.0).sum() == 1 and g[15, 12] == 1.0
  assert not np.asarray(OFR(box, 25, 8, 31.5, 1.5, positive=False)).any()
  # Online 32x32 grid (cell j at 8j + 0.5): centre (16.1875, 18.6875), not rounded.
  o = np.asarray(ONR(box, 32, 8, 0.5, 0.9))
  assert np.unravel_index(np.argmax(o), o.shape) == (19, 16)
  np.testing.assert_allclose(o[19, 16], math.exp(-0.5 * (0.1875**2 + 0.3125**2) / 0.81),
                             rtol=1e-5)


def test_select_label_fn():
  assert labels.select_label_fn("atss_max_iou") is labels.atss_max_iou
  assert labels.select_label_fn("atss_min_l2") is labels.atss_min_l2
  assert labels.select_label_fn("iou") is labels.iou_threshold_labels
  with pytest.raises(ValueError, match="loss.ofc_assigner"):
    labels.select_label_fn("atss")


def test_centre_radius_labels_by_hand():
  # 5x5 grid, spacing 8, one square and one wide anchor shape; GT centred at (17, 9), 30x30.
  grid = anchors_lib.anchor_grid(5, 8, ((16., 16.), (32., 8.)), centre=(16., 16.))
  gt = jnp.array([2., -6., 30., 30.])
  lbl = np.asarray(labels.centre_radius_labels(grid, gt, radius=1.0))
  # Anchor positions 0, 8, ..., 32 in x and y: within 8 px of x=17 -> 16, 24 (and 8? |8-17|=9 no);
  # of y=9 -> 8, 16 (0: |0-9|=9 no). Both shapes at those 4 positions.
  want = np.zeros((5, 5, 2), np.int32)
  want[1:3, 2:4, :] = 1
  np.testing.assert_array_equal(lbl, want)
  # Inside the GT is also required: a thin GT keeps only the column it covers.
  thin = np.asarray(labels.centre_radius_labels(grid, jnp.array([15., 0., 4., 20.]), radius=1.0))
  assert thin.sum() == 2 * 2 and thin[:, 2].sum() == 4
  assert np.asarray(labels.centre_radius_labels(grid, gt, positive=False)).sum() == 0

"""Labels of the four localisation forms and of the box branch.

Shared by training (all forms) and tracking (the ONC pseudo-labels of the
online memory), like `boxes` and `anchors`.

Paper: Section 4 ("Online Approaches", "Offline Approaches") and Appendix A
("Offline Classification (OFC) with Focal Loss and ATSS", "Offline Regression
(OFR) with Continuous Focal Loss"); the label symbols y^a (Bernoulli heatmap),
y^r (Gaussian heatmap) and y^b (box offsets) of Eq. 6.

Geometry. Anchors are absolute crop coordinates ``(H, W, A, 4)`` in
``(cx, cy, w, h)`` as built by ``anchors.anchor_grid(score_size, stride,
shapes, centre=(search_size / 2,) * 2)``; for the 255 crop and the 25x25 map that
is ``anchor_grid(25, 8, shapes, centre=(127.5, 127.5))``. Ground-truth boxes are
single ``[x, y, w, h]`` boxes in the same crop coordinates (``duml_jax.boxes``
convention). Every function labels one image; ``jax.vmap`` them over a batch
(all shapes are static, so they also ``jax.jit``).

Label maps use 1 = positive, 0 = negative, -1 = ignored, as int32 ``(H, W, A)``.

Negative pairs (pysot's pairs whose search image shows another object). Every
assigner takes ``positive``: when it is False every anchor is labelled negative
(and Gaussian labels are all zero). We label the whole map rather than pysot's
7x7 window around the distractor because the focal loss normalises negatives by
their own count (Section 4), so the whole-map rule adds no imbalance, and it
keeps the label a function of the box alone.
"""
import jax
import jax.numpy as jnp

from duml_jax import boxes

# Appendix A: "top-15 anchor boxes for OFC-5s and top-11 anchor boxes for OFC-1s".
_MAX_IOU_TOPK = {5: 15, 1: 11}
# Centre-inside margin of the ATSS reference implementation (pixels).
_INSIDE_EPS = 0.01
# IoU tolerance of the ATSS threshold (see `_atss_assign`).
_TIE_TOL = 1e-6


def _gt_cxcywh(gt_box):
  return boxes.xywh_to_cxcywh(jnp.asarray(gt_box, jnp.float32))


def _negative_pair(labels, positive):
  """All-negative labels where `positive` (bool, may be traced) is False."""
  return jnp.where(positive, labels, jnp.zeros_like(labels))


def _centre_inside(anchors, gt):
  """(H, W, A) bool: the anchor centre lies inside the (cx, cy, w, h) box."""
  x1, y1, x2, y2 = jnp.moveaxis(boxes.cxcywh_to_xyxy(gt), -1, 0)
  cx, cy = anchors[..., 0], anchors[..., 1]
  margin = jnp.minimum(jnp.minimum(cx - x1, cy - y1), jnp.minimum(x2 - cx, y2 - cy))
  return margin > _INSIDE_EPS


def _centre_dist2(anchors, gt):
  """(H, W, A) squared distance from each anchor centre to the GT centre."""
  return jnp.square(anchors[..., 0] - gt[0]) + jnp.square(anchors[..., 1] - gt[1])


def _atss_assign(iou, candidates, inside):
  """ATSS rule: candidates with IoU >= mean + std of the candidates, centre inside.

  The std is the unbiased (n - 1) one, as torch's default ``std`` used by the
  ATSS reference. The comparison allows `_TIE_TOL`: when the candidates' IoUs
  tie (a thin GT inside several anchors), mean + std equals them in exact
  arithmetic but float rounding would put it just above them and leave no
  positive. Everything that is not positive is negative (no ignore).
  """
  c = candidates.astype(iou.dtype)
  n = jnp.sum(c)
  mean = jnp.sum(iou * c) / n
  var = jnp.sum(jnp.square(iou - mean) * c) / (n - 1.)
  threshold = mean + jnp.sqrt(var) - _TIE_TOL
  pos = candidates & (iou >= threshold) & inside
  return pos.astype(jnp.int32)


def _check_anchors(anchors, topk_needed, name):
  if anchors.ndim < 2 or anchors.shape[-1] != 4:
    raise ValueError(f"{name}: anchors must be (..., A, 4) (cx, cy, w, h), got {anchors.shape}")
  if topk_needed < 2:
    raise ValueError(f"{name}: topk must be >= 2 (the ATSS std needs two candidates), "
                     f"got {topk_needed}")


def atss_max_iou(anchors, gt_box, topk=None, positive=True):
  """ATSS_{Max.IoU} (paper Appendix A, "OFC with Focal Loss and ATSS").

  Candidates are the ``topk`` anchors (over all positions and anchor shapes)
  with the highest IoU with the GT; the threshold is mean + std of the
  candidates' IoU; positives are candidates with IoU >= threshold whose centre
  lies inside the GT; every other anchor is negative. No anchor is forced
  positive (as in ATSS), so a GT smaller than the grid spacing can get none.

  Args:
    anchors: (H, W, A, 4) absolute (cx, cy, w, h) anchors.
    gt_box: (4,) [x, y, w, h] in the same coordinates.
    topk: number of candidates; None picks the paper's value for the number
      of anchor shapes A: 15 for A = 5 (OFC-5s), 11 for A = 1 (OFC-1s).
    positive: False for a negative pair (all anchors negative).

  Returns:
    (H, W, A) int32 labels in {0, 1}.
  """
  anchors = jnp.asarray(anchors, jnp.float32)
  if topk is None:
    a = anchors.shape[-2]
    if a not in _MAX_IOU_TOPK:
      raise ValueError(f"atss_max_iou: the paper gives top-k only for A in {sorted(_MAX_IOU_TOPK)} "
                       f"anchor shapes, got A={a}; pass topk explicitly")
    topk = _MAX_IOU_TOPK[a]
  _check_anchors(anchors, topk, "atss_max_iou")
  gt = _gt_cxcywh(gt_box)
  iou = boxes.iou_cxcywh(anchors, gt)
  flat = iou.reshape(-1)
  if topk > flat.shape[0]:
    raise ValueError(f"atss_max_iou: topk={topk} > number of anchors {flat.shape[0]}")
  _, idx = jax.lax.top_k(flat, topk)
  candidates = jnp.zeros(flat.shape, bool).at[idx].set(True).reshape(iou.shape)
  labels = _atss_assign(iou, candidates, _centre_inside(anchors, gt))
  return _negative_pair(labels, positive)


def atss_min_l2(anchors, gt_box, topk=9, positive=True):
  """ATSS_{Min.L2}: the original ATSS assigner (Zhang et al. 2020; paper Appendix A).

  ATSS picks, on each pyramid level, the ``topk`` anchors whose centres are
  closest (L2) to the GT centre, pools the candidates of all levels, and
  thresholds at mean + std of their IoU; positives also need their centre
  inside the GT. We have a single level but A anchor shapes that share every
  centre, so "closest k over the level" would be decided by tie-breaking
  between shapes. Our reading: each anchor *shape* plays the role of a level,
  i.e. the candidates are the ``topk`` closest positions for every shape
  (``topk * A`` candidates, one threshold over all of them). For A = 1 this is
  exactly ATSS. Distance ties between positions go to the lower flat index.

  Args:
    anchors: (H, W, A, 4) absolute (cx, cy, w, h) anchors.
    gt_box: (4,) [x, y, w, h].
    topk: candidates per anchor shape (ATSS default 9).
    positive: False for a negative pair (all anchors negative).

  Returns:
    (H, W, A) int32 labels in {0, 1}.
  """
  anchors = jnp.asarray(anchors, jnp.float32)
  _check_anchors(anchors, topk, "atss_min_l2")
  gt = _gt_cxcywh(gt_box)
  iou = boxes.iou_cxcywh(anchors, gt)
  a = iou.shape[-1]
  d2 = _centre_dist2(anchors, gt)
  per_shape = d2.reshape(-1, a).T  # (A, positions)
  if topk > per_shape.shape[1]:
    raise ValueError(f"atss_min_l2: topk={topk} > number of positions {per_shape.shape[1]}")
  _, idx = jax.lax.top_k(-per_shape, topk)  # (A, topk) closest positions
  candidates = jnp.zeros(per_shape.shape, bool).at[jnp.arange(a)[:, None], idx].set(True)
  candidates = candidates.T.reshape(iou.shape)
  labels = _atss_assign(iou, candidates, _centre_inside(anchors, gt))
  return _negative_pair(labels, positive)


def iou_threshold_labels(anchors, gt_box, pos=0.6, neg=0.3, positive=True):
  """IoU-threshold assignment of SiamRPN++ (pysot ``anchor_target``; paper Table 10 "IoU").

  IoU > ``pos`` -> 1, IoU < ``neg`` -> 0, otherwise -1 (ignored); in addition
  the anchor with the highest IoU is positive (on ties the one whose centre
  is closest to the GT centre) whenever that IoU is > 0. pysot's random
  subsampling (16 positives / 48 negatives) is not done: the focal loss
  normalises each class by its own count instead.

  Args:
    anchors: (H, W, A, 4) absolute (cx, cy, w, h) anchors.
    gt_box: (4,) [x, y, w, h].
    pos, neg: IoU thresholds.
    positive: False for a negative pair (all anchors negative).

  Returns:
    (H, W, A) int32 labels in {-1, 0, 1}.
  """
  anchors = jnp.asarray(anchors, jnp.float32)
  gt = _gt_cxcywh(gt_box)
  iou = boxes.iou_cxcywh(anchors, gt)
  labels = jnp.where(iou > pos, 1, jnp.where(iou < neg, 0, -1)).astype(jnp.int32)
  # Best anchor; ties (a small GT inside several equal anchors) go to the
  # anchor whose centre is closest to the GT centre.
  d2 = _centre_dist2(anchors, gt)
  best_iou = jnp.max(iou)
  best_idx = jnp.argmax(jnp.where(iou >= best_iou, -d2, -jnp.inf).reshape(-1))
  best = (jnp.arange(iou.size) == best_idx).reshape(iou.shape)
  labels = jnp.where(best & (best_iou > 0), 1, labels)
  return _negative_pair(labels, positive)


def onc_labels(anchors, box, pos=0.8, neg=0.3, positive=True):
  """ONC pseudo-labels (paper Section 4, "Online Approaches").

  "The anchor boxes having IoU with predicted boxes higher than 0.8 and the one
  with the highest IoU are assigned as 1 while those lower than 0.3 as 0. The
  left ones are set to -1 and ignored." Same rule as `iou_threshold_labels`
  with the online thresholds. For the online 32x32 stride-8 grid whose cell j
  is centred on crop pixel 8j + 0.5, build the anchors with
  ``anchor_grid(32, 8, shapes, centre=(128.5, 128.5))``.
  """
  return iou_threshold_labels(anchors, box, pos=pos, neg=neg, positive=positive)


def box_targets(anchors, gt_box):
  """(H, W, A, 4) SiamRPN offsets y^b (Eq. 6) of the GT w.r.t. every anchor.

  dx = (gx - ax) / aw, dy = (gy - ay) / ah, dw = log(gw / aw), dh = log(gh / ah)
  (``boxes.encode``); only the positives' rows are used by the L1 loss.
  """
  anchors = jnp.asarray(anchors, jnp.float32)
  gt = jnp.broadcast_to(_gt_cxcywh(gt_box), anchors.shape)
  return boxes.encode(gt, anchors)


def gaussian_label(size, centre_cells, sigma_cells):
  """(H, W) Gaussian heatmap exp(-d^2 / (2 sigma^2)) over cell distance d.

  Used for y^r of OFR (Appendix A, Eq. 9: "pixels at the center of Gaussian as
  positive examples") and, DiMP-style, for the ONR pseudo-labels (Section 3.2:
  "assigning Gaussian label for regression only on spatial scale").

  Args:
    size: int (square map) or (H, W).
    centre_cells: (x, y) of the centre in cell units (column, row; continuous:
      cell (i, j) is at (j, i)). The peak is exactly 1 only when the centre
      falls on a cell.
    sigma_cells: standard deviation in cells.
  """
  h, w = (size, size) if isinstance(size, int) else tuple(size)
  cx, cy = centre_cells[0], centre_cells[1]
  rows = jnp.arange(h, dtype=jnp.float32)[:, None]
  cols = jnp.arange(w, dtype=jnp.float32)[None, :]
  d2 = jnp.square(cols - cx) + jnp.square(rows - cy)
  return jnp.exp(-0.5 * d2 / jnp.square(jnp.asarray(sigma_cells, jnp.float32)))


def centre_in_cells(box, stride, first_cell_centre):
  """(x, y) cell coordinates of the centre of an [x, y, w, h] crop box.

  Cell j of a grid is centred on crop coordinate ``first_cell_centre +
  stride * j``: 31.5 for the 25x25 offline map (127.5 - 8 * 12), 0.5 for the
  32x32 online feature grid (cell j at 8j + 0.5).
  """
  c = _gt_cxcywh(box)
  return (c[0] - first_cell_centre) / stride, (c[1] - first_cell_centre) / stride


def ofr_label(box, size, stride, first_cell_centre, sigma_cells, positive=True):
  """OFR heatmap y^r (Appendix A): Gaussian at the GT centre, peak exactly 1.

  As in CenterNet (which Eq. 9 follows) the centre is rounded to the nearest
  cell so that exactly one cell has label 1 and counts as the positive of
  `losses.fc_pr_loss`. A negative pair gets an all-zero map.
  """
  cx, cy = centre_in_cells(box, stride, first_cell_centre)
  g = gaussian_label(size, (jnp.round(cx), jnp.round(cy)), sigma_cells)
  return _negative_pair(g, positive)


def onr_label(box, size, stride, first_cell_centre, sigma_cells):
  """ONR pseudo-label / query label (DiMP-style): Gaussian at the continuous centre.

  Not rounded, as DiMP's ``gauss_label``; e.g. size 32, stride 8,
  first_cell_centre 0.5 for the online grid.
  """
  return gaussian_label(size, centre_in_cells(box, stride, first_cell_centre), sigma_cells)


def centre_radius_labels(anchors, gt_box, radius=1.5, positive=True):
  """Centre sampling (FCOS-style; not in the paper): every anchor whose position lies within
  ``radius`` grid cells of the GT centre in x and in y, and inside the GT, is positive, of every
  shape; all others negative. Meant for the box / IoU losses (``loss.box_assigner``): it gives the
  regression the neighbours of the best cell too, whose offsets span a cell or more.

  Args:
    anchors: (H, W, A, 4) absolute (cx, cy, w, h) anchors on a regular grid (H, W >= 2).
    gt_box: (4,) [x, y, w, h].
    radius: in grid cells (the spacing of neighbouring anchor positions).
    positive: False for a negative pair (all anchors negative).

  Returns:
    (H, W, A) int32 labels in {0, 1}.
  """
  anchors = jnp.asarray(anchors, jnp.float32)
  gt = _gt_cxcywh(gt_box)
  spacing = anchors[0, 1, 0, 0] - anchors[0, 0, 0, 0]
  near = ((jnp.abs(anchors[..., 0] - gt[0]) <= radius * spacing) &
          (jnp.abs(anchors[..., 1] - gt[1]) <= radius * spacing))
  labels = (near & _centre_inside(anchors, gt)).astype(jnp.int32)
  return _negative_pair(labels, positive)


_LABEL_FNS = {
    "atss_max_iou": atss_max_iou,
    "atss_min_l2": atss_min_l2,
    "iou": iou_threshold_labels,
    "centre_radius": centre_radius_labels,
}


def select_label_fn(config_name):
  """OFC assigner named by config ``loss.ofc_assigner`` (paper Table 10).

  Returns ``fn(anchors, gt_box, positive=True) -> (H, W, A)`` labels (pass
  ``positive`` by keyword: the functions' other arguments differ) with the
  paper's defaults ('atss_max_iou': top-15 / top-11 by A, 'atss_min_l2':
  top-9 per shape, 'iou': 0.6 / 0.3).
  """
  try:
    return _LABEL_FNS[config_name]
  except KeyError:
    raise ValueError(f"config key loss.ofc_assigner: unknown assigner {config_name!r}; "
                     f"expected one of {sorted(_LABEL_FNS)}") from None

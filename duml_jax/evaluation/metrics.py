"""Tracking metrics that agree with the official toolkits (NumPy only).

Box convention: ``[x, y, w, h]`` rows. Every function here is invariant to a
common shift of both arguments except where image bounds clip boxes (GOT-10k
and VOT); callers pass those boxes in the benchmark file's own convention.

One-pass evaluation (OTB, UAV123, NfS, LaSOT, TrackingNet) follows the
``got10k`` package's ``ExperimentOTB`` (the reference we chose):

* IoU uses ``x2 = x + w`` (no ``-1``), clipped to [0, 1].
* The start frame's prediction is replaced by the ground truth
  (``boxes[0] = anno[0]`` in got10k), so it counts as a perfect frame.
* Success at threshold t counts frames with ``IoU > t`` (strict), t in
  ``np.linspace(0, 1, 21)``; AUC is the mean of that 21-point curve.
* Precision counts frames with centre error ``<= t`` px, t in 0..50, centre
  ``x + (w - 1) / 2``; the score is the curve at 20 px.
* Normalised precision (TrackingNet / LaSOT, as pysot computes it): both
  centres divided by the ground-truth ``(w, h)``, thresholds 0..0.5 step
  0.01, ``<=``, reported at 0.2.
* Curves are computed per sequence, then averaged over sequences (each
  sequence weighs the same); AUC is the mean of the averaged curve.
* Frames whose ground truth is NaN are left out of numerator and denominator
  (got10k's ``ExperimentUAV123``); so are frames before ``start_frame``.
* Frames marked absent (LaSOT full occlusion / out of view) stay in the
  denominator but never succeed (pysot ``ope_benchmark``, anchors.md s.5).

GOT-10k follows got10k's ``ExperimentGOT10k``: frame 0 is excluded, only frames
with ``cover > 0`` count, boxes are clipped to the image (``bound``), and the
IoUs of every repetition and every sequence are pooled before averaging.

VOT (supervised, re-initialising) follows vot-toolkit 0.9.0
(``vot.analysis.supervised``, ``vot.region.raster``); see `vot_overlap`.
"""
import dataclasses
from typing import Optional, Sequence as Seq, Union

import numpy as np

SUCCESS_THRESHOLDS = np.linspace(0.0, 1.0, 21)
PRECISION_THRESHOLDS = np.arange(51, dtype=np.float64)
NORM_PRECISION_THRESHOLDS = np.arange(51, dtype=np.float64) / 100.0
PRECISION_INDEX = 20        # 20 px
NORM_PRECISION_INDEX = 20   # 0.2
GOT10K_THRESHOLDS = np.linspace(0.0, 1.0, 101)

# EAO sequence-length ranges [low, high] (inclusive) per VOT edition.
EAO_RANGES = {
    "VOT2016": (108, 371),
    "VOT2017": (100, 356),
    "VOT2018": (100, 356),
    "VOT2019": (46, 291),
}

# VOT result-file codes.
VOT_SKIPPED = 0
VOT_INIT = 1
VOT_FAILURE = 2

# A VOT trajectory entry: a code (0/1/2) or a region (4 = rectangle,
# 8 = polygon numbers).
VotEntry = Union[int, np.ndarray]


# --------------------------------------------------------------------------
# Box geometry.


def _as_boxes(a):
  return np.asarray(a, dtype=np.float64).reshape(-1, 4)


def rect_iou(a, b, bound=None):
  """IoU of ``[x, y, w, h]`` rows with ``x2 = x + w`` (got10k ``rect_iou``).

  Args:
    a, b: (N, 4) boxes.
    bound: optional ``(width, height)``; boxes are first clipped as got10k
      does for GOT-10k: x, y into ``[0, width], [0, height]`` (a box left of
      the image is moved, not cut), then w, h to what is left to the edge.

  Returns:
    (N,) IoU in [0, 1]; NaN where an input row has NaN.
  """
  a, b = _as_boxes(a).copy(), _as_boxes(b).copy()
  if bound is not None:
    a, b = _clip_to(a, bound), _clip_to(b, bound)
  w = np.maximum(np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
                 - np.maximum(a[:, 0], b[:, 0]), 0.0)
  h = np.maximum(np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
                 - np.maximum(a[:, 1], b[:, 1]), 0.0)
  inter = w * h
  union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
  with np.errstate(invalid="ignore"):
    return np.clip(inter / (union + np.finfo(np.float64).eps), 0.0, 1.0)


def _clip_to(boxes, bound):
  width, height = float(bound[0]), float(bound[1])
  out = boxes.copy()
  out[:, 0] = np.clip(boxes[:, 0], 0.0, width)
  out[:, 1] = np.clip(boxes[:, 1], 0.0, height)
  out[:, 2] = np.clip(boxes[:, 2], 0.0, width - out[:, 0])
  out[:, 3] = np.clip(boxes[:, 3], 0.0, height - out[:, 1])
  return out


def centers(boxes):
  """Box centres ``x + (w - 1) / 2`` (got10k / pysot / OTB convention)."""
  boxes = _as_boxes(boxes)
  return boxes[:, :2] + (boxes[:, 2:] - 1.0) / 2.0


def center_error(a, b):
  """Euclidean distance between `centers` of two (N, 4) box arrays."""
  return np.linalg.norm(centers(a) - centers(b), axis=-1)


def normalized_center_error(pred, gt):
  """Centre distance after dividing both centres by the ground-truth (w, h)."""
  gt = _as_boxes(gt)
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.linalg.norm((centers(pred) - centers(gt)) / gt[:, 2:], axis=-1)


# --------------------------------------------------------------------------
# One-pass evaluation.


@dataclasses.dataclass(frozen=True)
class OnePassCurves:
  """One sequence: success (21,), precision (51,), norm_precision (51,)."""
  success: np.ndarray
  precision: np.ndarray
  norm_precision: np.ndarray


def one_pass_curves(pred, gt, *, start_frame=0, absent=None):
  """Success / precision / normalised-precision curves of one sequence.

  Args:
    pred: (N, 4) predicted boxes (rows before `start_frame` are ignored).
    gt: (N, 4) ground truth, NaN rows where the benchmark has no box.
    start_frame: init frame; its prediction is replaced by the ground truth.
    absent: optional (N,) bool, True where the target is absent.

  Returns:
    `OnePassCurves`; all-zero curves if no frame is valid.
  """
  pred, gt = _as_boxes(pred).copy(), _as_boxes(gt)
  if len(pred) != len(gt):
    raise ValueError(f"{len(pred)} predicted boxes for {len(gt)} frames")
  pred[start_frame] = gt[start_frame]
  valid = ~np.isnan(gt).any(axis=1)
  valid[:start_frame] = False
  present = valid.copy()
  if absent is not None:
    present &= ~np.asarray(absent, dtype=bool)
  n = int(valid.sum())
  if n == 0:
    return OnePassCurves(np.zeros(len(SUCCESS_THRESHOLDS)),
                         np.zeros(len(PRECISION_THRESHOLDS)),
                         np.zeros(len(NORM_PRECISION_THRESHOLDS)))
  iou = rect_iou(pred[present], gt[present])
  err = center_error(pred[present], gt[present])
  nerr = normalized_center_error(pred[present], gt[present])
  with np.errstate(invalid="ignore"):
    success = (iou[:, None] > SUCCESS_THRESHOLDS[None]).sum(0) / n
    precision = (err[:, None] <= PRECISION_THRESHOLDS[None]).sum(0) / n
    norm_precision = (
        nerr[:, None] <= NORM_PRECISION_THRESHOLDS[None]).sum(0) / n
  return OnePassCurves(success, precision, norm_precision)


def one_pass_summary(curves_by_seq):
  """Averages per-sequence `OnePassCurves` (each sequence weighs the same).

  Returns:
    dict with ``auc`` (mean of the averaged success curve), ``precision``
    (20 px), ``norm_precision`` (0.2), ``success_rate_50`` (IoU > 0.5), the
    averaged curves, and ``sequences`` with the same scalars per sequence.
  """
  if not curves_by_seq:
    raise ValueError("no sequences to summarise")

  def scalars(c):
    return {
        "success_auc": float(np.mean(c.success)),
        "precision": float(c.precision[PRECISION_INDEX]),
        "norm_precision": float(c.norm_precision[NORM_PRECISION_INDEX]),
        "success_rate_50": float(c.success[len(SUCCESS_THRESHOLDS) // 2]),
    }

  mean = OnePassCurves(
      *[np.mean([getattr(c, f.name) for c in curves_by_seq.values()], axis=0)
        for f in dataclasses.fields(OnePassCurves)])
  out = scalars(mean)
  out.update({
      "success_curve": mean.success.tolist(),
      "precision_curve": mean.precision.tolist(),
      "norm_precision_curve": mean.norm_precision.tolist(),
      "sequences": {name: scalars(c) for name, c in curves_by_seq.items()},
  })
  return out


# --------------------------------------------------------------------------
# GOT-10k.


def got10k_sequence_ious(runs, gt, *, visible=None, bound=None):
  """Pooled IoUs of one GOT-10k sequence (frame 0 excluded).

  Args:
    runs: list of (N, 4) predictions, one per repetition.
    gt: (N, 4) ground truth.
    visible: optional (N,) bool, True where ``cover > 0``; got10k keeps only
      those frames.
    bound: image ``(width, height)`` for clipping, or None.

  Returns:
    1-D array of the IoUs of every run, concatenated.
  """
  gt = _as_boxes(gt)
  keep = np.ones(len(gt) - 1, bool) if visible is None else np.asarray(
      visible, bool)[1:]
  out = []
  for run in runs:
    run = _as_boxes(run)
    if run.shape != gt.shape:
      raise ValueError(f"run has {len(run)} boxes for {len(gt)} frames")
    out.append(rect_iou(run[1:], gt[1:], bound=bound)[keep])
  return np.concatenate(out) if out else np.zeros(0)


def got10k_summary(ious_by_seq):
  """AO, SR0.5, SR0.75 and the 101-point success curve, pooled over frames.

  As got10k: the IoUs of all sequences (and repetitions) are concatenated and
  averaged, so long sequences weigh more. Success counts ``IoU > t``.
  """
  def scalars(ious):
    ious = np.nan_to_num(np.asarray(ious, np.float64), nan=0.0)
    if ious.size == 0:
      return {"ao": 0.0, "sr50": 0.0, "sr75": 0.0}
    return {"ao": float(ious.mean()), "sr50": float((ious > 0.5).mean()),
            "sr75": float((ious > 0.75).mean())}

  pooled = np.nan_to_num(
      np.concatenate([np.asarray(v, np.float64)
                      for v in ious_by_seq.values()]), nan=0.0)
  out = scalars(pooled)
  out["success_curve"] = (
      pooled[:, None] > GOT10K_THRESHOLDS[None]).mean(0).tolist()
  out["sequences"] = {k: scalars(v) for k, v in ious_by_seq.items()}
  return out


# --------------------------------------------------------------------------
# VOT region overlap (vot-toolkit 0.9.0 ``vot.region.raster``).
#
# vot-toolkit rasterises both regions on the integer pixel grid after rounding
# their numbers, clips the raster to the image, and counts pixels. A rectangle
# ``x, y, w, h`` covers columns ``x .. x + w - 1`` inclusive; a polygon is
# filled by a scan-line rule on its rounded vertices.


def _is_region(entry):
  return not np.isscalar(entry) and np.size(entry) in (4, 8)


def _region_bounds(region):
  r = np.round(np.asarray(region, np.float64))
  if r.size == 4:
    return (int(r[0]), int(r[1]), int(r[0] + r[2] - 1), int(r[1] + r[3] - 1))
  pts = r.reshape(-1, 2)
  return (int(pts[:, 0].min()), int(pts[:, 1].min()),
          int(pts[:, 0].max()), int(pts[:, 1].max()))


def _raster_rect(r, b):
  x, y, w, h = np.round(np.asarray(r, np.float64))
  mask = np.zeros((b[3] - b[1] + 1, b[2] - b[0] + 1), bool)
  if x > b[2] or x + w - 1 < b[0] or y > b[3] or y + h - 1 < b[1]:
    return mask
  left, top = int(max(0, x - b[0])), int(max(0, y - b[1]))
  # The toolkit compares the absolute bound with a relative coordinate here.
  right = int(min(b[2], x + w - 1 - b[0]))
  bottom = int(min(b[3], y + h - 1 - b[1]))
  mask[top:bottom + 1, left:right + 1] = True
  return mask


def _raster_polygon(p, b):
  """Scan-line fill identical to the toolkit's ``rasterize_polygon``."""
  pts = np.round(np.asarray(p, np.float64).reshape(-1, 2))
  pts = pts - np.array([[b[0], b[1]]], np.float64)
  width, height = b[2] - b[0] + 1, b[3] - b[1] + 1
  count = len(pts)
  ys = np.arange(height, dtype=np.float64)[:, None]
  xi, yi = pts[None, :, 0], pts[None, :, 1]
  prev = np.roll(pts, 1, axis=0)  # j = i - 1, wrapping to the last vertex
  xj, yj = prev[None, :, 0], prev[None, :, 1]
  hit = (((yi <= ys) & (yj > ys)) | ((yj <= ys) & (yi > ys))
         | ((yi < ys) & (yj >= ys)) | ((yj < ys) & (yi >= ys))
         | ((yi == yj) & (yi == ys)))
  r, k = yj - yi, xj - xi
  with np.errstate(divide="ignore", invalid="ignore"):
    xs = np.where(r != 0, xi + (ys - yi) / r * k, xi)
  xs = np.trunc(np.where(hit, xs, 0.0)).astype(np.int64)
  big = np.iinfo(np.int64).max
  nodes = np.sort(np.where(hit, xs, big), axis=1)
  n = hit.sum(1)
  rows = np.arange(height)
  cols = np.arange(width)[None, :]
  mask = np.zeros((height, width), bool)
  i = np.zeros(height, np.int64)
  done = np.zeros(height, bool)
  for _ in range(count + 1):
    active = ~done & (i < n - 1)
    if not active.any():
      break
    a = nodes[rows, np.minimum(i, count - 1)]
    c = nodes[rows, np.minimum(i + 1, count - 1)]
    stop = active & (a >= width)
    done |= stop
    active &= ~stop
    skip = active & (a == c) & (i < n - 2)
    fill = active & ~skip & (c >= 0)
    lo, hi = np.maximum(a, 0), np.minimum(c, width - 1)
    mask |= fill[:, None] & (cols >= lo[:, None]) & (cols <= hi[:, None])
    i = np.where(skip, i + 1, np.where(active, i + 2, i))
  return mask


def _raster(region, b):
  return (_raster_rect if np.size(region) == 4 else _raster_polygon)(region, b)


def vot_overlap(region, gt, bounds=None):
  """Region overlap exactly as vot-toolkit 0.9.0 ``calculate_overlap``.

  Args:
    region: 4 numbers (rectangle x, y, w, h) or 8 (polygon), file convention.
    gt: the same for the ground truth.
    bounds: image ``(width, height)``; pixels outside are not counted.

  Returns:
    Pixel-count IoU of the two rasterised regions. As in the toolkit, two
    regions whose joint bounding box is degenerate give 1.0.
  """
  b1, b2 = _region_bounds(region), _region_bounds(gt)
  union = (min(b1[0], b2[0]), min(b1[1], b2[1]),
           max(b1[2], b2[2]), max(b1[3], b2[3]))
  if union[0] >= union[2] or union[1] >= union[3]:
    return 1.0
  rb = union
  if bounds is not None:
    rb = (max(0, union[0]), max(0, union[1]),
          min(int(bounds[0]) - 1, union[2]), min(int(bounds[1]) - 1, union[3]))
  if rb[0] >= rb[2] or rb[1] >= rb[3]:
    return 0.0
  m1, m2 = _raster(region, rb), _raster(gt, rb)
  total = np.count_nonzero(m1 | m2)
  return float(np.count_nonzero(m1 & m2)) / total if total else 0.0


def vot_overlaps(trajectory, gt, bounds=None):
  """Per-frame `vot_overlap`; code entries (0/1/2) give 0."""
  if len(trajectory) != len(gt):
    raise ValueError(f"trajectory has {len(trajectory)} entries for "
                     f"{len(gt)} frames")
  return np.array([vot_overlap(e, g, bounds) if _is_region(e) else 0.0
                   for e, g in zip(trajectory, gt)])


def vot_init_box(region):
  """Axis-aligned init box from a VOT region ("preserve area", anchors s.5).

  For a polygon: centre = vertex mean, the bounding box is scaled by
  ``s = sqrt(|p0p1| |p1p2| / bbox_area)``, ``w = s * bw + 1``,
  ``h = s * bh + 1`` and the box is ``[cx - (w-1)/2, cy - (h-1)/2, w, h]``.
  A 4-number region is returned unchanged.
  """
  r = np.asarray(region, np.float64).reshape(-1)
  if r.size == 4:
    return r.copy()
  pts = r.reshape(4, 2)
  cx, cy = pts.mean(0)
  x1, y1 = pts.min(0)
  x2, y2 = pts.max(0)
  a1 = np.linalg.norm(pts[0] - pts[1]) * np.linalg.norm(pts[1] - pts[2])
  a2 = (x2 - x1) * (y2 - y1)
  s = np.sqrt(a1 / a2) if a2 > 0 else 1.0
  w, h = s * (x2 - x1) + 1.0, s * (y2 - y1) + 1.0
  return np.array([cx - (w - 1) / 2, cy - (h - 1) / 2, w, h])


# --------------------------------------------------------------------------
# VOT accuracy / failures / EAO (vot-toolkit 0.9.0 ``analysis.supervised``).


def _code(entry):
  return None if _is_region(entry) else int(entry)


def vot_accuracy(trajectory, overlaps, burnin=10):
  """Mean overlap over counted frames, and their number.

  Left out: skipped frames (code 0), each (re)initialisation frame and the
  ``burnin - 1`` frames after it (``burnin`` frames in all), failure frames.
  Returns ``(0.0, 0)`` when no frame counts (as the toolkit does).
  """
  mask = np.ones(len(trajectory), bool)
  for i, entry in enumerate(trajectory):
    code = _code(entry)
    if code == VOT_SKIPPED or code == VOT_FAILURE:
      mask[i] = False
    elif code == VOT_INIT:
      mask[i:i + burnin] = False
  if not mask.any():
    return 0.0, 0
  return float(np.mean(np.asarray(overlaps)[mask])), int(mask.sum())


def vot_failures(trajectory):
  """Number of failure entries (code 2)."""
  return sum(1 for e in trajectory if _code(e) == VOT_FAILURE)


def vot_fragments(trajectory, overlaps):
  """EAO fragments ``(overlaps, reached_end)`` of one trajectory.

  Fragment k runs from init k to (not including) failure k and is marked as
  failed; a last init not followed by a failure gives a fragment to the end
  of the sequence marked as reached_end.
  """
  fails = [i for i, e in enumerate(trajectory) if _code(e) == VOT_FAILURE]
  inits = [i for i, e in enumerate(trajectory) if _code(e) == VOT_INIT]
  overlaps = np.asarray(overlaps, np.float64)
  if not fails:
    return [(overlaps, True)]
  frags = [(overlaps[inits[k]:fails[k]], False) for k in range(len(fails))]
  if len(inits) > len(fails):
    frags.append((overlaps[inits[-1]:], True))
  return frags


def eao_curve(fragments):
  """Expected-overlap curve over sequence length (vot-toolkit 0.9.0).

  Fragments are zero-padded to the longest one. Entry j is the weighted mean,
  over fragments, of the fragment's mean overlap on frames 1..j (frame 0, the
  init frame, is skipped); a fragment that ended in a failure counts at every
  length (with zeros after the failure), one that reached the sequence end
  only up to its own length. All fragments weigh 1, as in the toolkit.
  """
  if not fragments:
    raise ValueError("no EAO fragments")
  length = max(len(o) for o, _ in fragments)
  ov = np.zeros((len(fragments), length))
  mask = np.zeros((len(fragments), length))
  for k, (o, reached_end) in enumerate(fragments):
    ov[k, :len(o)] = o
    if reached_end:
      mask[k, :len(o)] = 1.0
    else:
      mask[k, :] = 1.0
  avg = ov.copy()
  if length > 1:
    avg[:, 1:] = np.cumsum(ov[:, 1:], axis=1) / np.arange(1, length)[None]
  with np.errstate(invalid="ignore", divide="ignore"):
    return (avg * mask).sum(0) / mask.sum(0)


def eao_score(curve, low, high):
  """Mean of ``curve[low:high + 1]`` (NaN if the curve is shorter than low)."""
  part = np.asarray(curve)[low:high + 1]
  return float(np.mean(part)) if part.size else float("nan")


@dataclasses.dataclass(frozen=True)
class VotSequenceStats:
  """One sequence, averaged over its runs (repetitions)."""
  accuracy: float
  failures: float
  length: int
  fragments: tuple


def vot_sequence_stats(runs, gt, bounds=None, burnin=10):
  """Accuracy and failures averaged over `runs` (trajectories), plus fragments.

  Args:
    runs: list of trajectories; a trajectory is a list of entries, each a
      code 0/1/2 or a region (4 or 8 numbers).
    gt: (N, 4 or 8) ground-truth regions in the same coordinates.
    bounds: image (width, height).
    burnin: frames left out of accuracy after each (re)initialisation.
  """
  if not runs:
    raise ValueError("no VOT runs")
  acc, fails, frags = 0.0, 0.0, []
  for traj in runs:
    ov = vot_overlaps(traj, gt, bounds)
    acc += vot_accuracy(traj, ov, burnin)[0]
    fails += vot_failures(traj)
    frags += vot_fragments(traj, ov)
  return VotSequenceStats(acc / len(runs), fails / len(runs), len(gt),
                          tuple(frags))


def vot_summary(stats_by_seq, eao_range, sensitivity=30.0):
  """VOT baseline scores over sequences.

  Returns dict with:
    accuracy: per-sequence accuracy averaged with sequence-length weights
      (vot-toolkit ``AverageAccuracyRobustness``).
    failures: total over sequences of each sequence's failures averaged over
      repetitions.
    robustness: ``100 * failures / total frames``, the number VOT2018-era
      papers print as R (54 failures on VOT2018's 21356 frames give 0.253);
      not bounded by 1.
    robustness_ar: the toolkit's AR-plot robustness
      ``exp(-sensitivity * weighted_mean_failures / mean_length)``.
    eao: mean of the EAO curve over ``eao_range`` (inclusive), fragments of
      all sequences and repetitions pooled.
    eao_curve, sequences.
  """
  if not stats_by_seq:
    raise ValueError("no sequences to summarise")
  stats = list(stats_by_seq.values())
  lengths = np.array([s.length for s in stats], np.float64)
  acc = float(np.sum([s.accuracy for s in stats] * lengths) / lengths.sum())
  weighted_fail = float(
      np.sum([s.failures for s in stats] * lengths) / lengths.sum())
  total_fail = float(np.sum([s.failures for s in stats]))
  curve = eao_curve([f for s in stats for f in s.fragments])
  return {
      "accuracy": acc,
      "failures": total_fail,
      "robustness": 100.0 * total_fail / float(lengths.sum()),
      "robustness_ar": float(np.exp(
          -sensitivity * weighted_fail / lengths.mean())),
      "eao": eao_score(curve, *eao_range),
      "eao_curve": [float(v) for v in curve],
      "sequences": {
          name: {"accuracy": s.accuracy, "failures": s.failures,
                 "length": s.length}
          for name, s in stats_by_seq.items()},
  }

"""Metrics: hand-worked values, and agreement with got10k / vot-toolkit."""
import json

import numpy as np
import pytest

from duml_jax.evaluation import metrics as M
from duml_jax.evaluation import writers

GT = np.array([0.0, 0.0, 10.0, 10.0])


def _tile(box, n):
  return np.tile(np.asarray(box, np.float64), (n, 1))


# --------------------------------------------------------------------------
# Boxes.


def test_rect_iou_hand_values():
  a = _tile(GT, 4)
  b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [10, 0, 10, 10],
                [20, 20, 5, 5]], np.float64)
  np.testing.assert_allclose(M.rect_iou(a, b), [1.0, 1 / 3, 0.0, 0.0])


def test_rect_iou_bound_clips_and_does_not_mutate():
  a = np.array([[90.0, 0.0, 20.0, 10.0], [-5.0, 0.0, 10.0, 10.0]])
  b = np.array([[90.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
  a0 = a.copy()
  # got10k's clipping: the width is cut at the right edge (a[0] becomes b[0])
  # but a negative x is moved to 0 with its width kept (a[1] becomes b[1]).
  np.testing.assert_allclose(M.rect_iou(a, b, bound=(100, 100)), [1.0, 1.0])
  np.testing.assert_allclose(M.rect_iou(a, b), [0.5, 50 / 150])
  np.testing.assert_array_equal(a, a0)


def test_center_errors():
  a = np.array([[0.0, 0.0, 11.0, 11.0]])   # centre (5, 5)
  b = np.array([[3.0, 4.0, 11.0, 11.0]])   # centre (8, 9)
  np.testing.assert_allclose(M.center_error(a, b), [5.0])
  np.testing.assert_allclose(M.normalized_center_error(a, b),
                             [np.hypot(3 / 11, 4 / 11)])


# --------------------------------------------------------------------------
# One-pass.


def _hand_case():
  pred = np.array([[50, 50, 3, 3],     # frame 0: replaced by the GT
                   [0, 0, 10, 10],     # IoU 1, error 0
                   [5, 0, 10, 10],     # IoU 1/3, error 5 (0.5 normalised)
                   [20, 20, 10, 10]],  # IoU 0, error sqrt(800)
                  np.float64)
  return pred, _tile(GT, 4)


def test_one_pass_hand_worked():
  pred, gt = _hand_case()
  c = M.one_pass_curves(pred, gt)
  # thresholds 0 .. 0.3: 3 frames; 0.35 .. 0.95: 2 frames; 1.0: none.
  expect = np.array([0.75] * 7 + [0.5] * 13 + [0.0])
  np.testing.assert_allclose(c.success, expect)
  assert M.one_pass_summary({"a": c})["success_auc"] == pytest.approx(11.75 / 21)
  # Precision counts error <= t: the 5 px frame is in at t = 5, out at t = 4.
  assert c.precision[4] == 0.5 and c.precision[5] == 0.75
  assert c.precision[20] == 0.75 and c.precision[28] == 0.75
  assert c.precision[29] == 1.0
  # Normalised error 0.5 is counted only at the last threshold (0.5).
  assert c.norm_precision[20] == 0.5 and c.norm_precision[49] == 0.5
  assert c.norm_precision[50] == 0.75


def test_one_pass_iou_at_threshold_is_not_success():
  gt = _tile(GT, 2)
  pred = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], np.float64)  # IoU 0.5
  c = M.one_pass_curves(pred, gt)
  assert c.success[9] == 1.0    # IoU > 0.45
  assert c.success[10] == 0.5   # IoU > 0.5 is strict


def test_box_touching_image_edge():
  gt = np.array([[0, 0, 10, 10], [630, 470, 10, 10]], np.float64)
  pred = np.array([[0, 0, 10, 10], [630, 470, 10, 10]], np.float64)
  np.testing.assert_allclose(M.rect_iou(pred, gt, bound=(640, 480)), [1, 1])
  # A box sticking out of a 640x480 image is clipped before the IoU.
  out = np.array([[635.0, 470.0, 10.0, 10.0]])
  np.testing.assert_allclose(
      M.rect_iou(out, np.array([[630.0, 470.0, 10.0, 10.0]]),
                 bound=(640, 480)), [0.5])


def test_one_pass_nan_ground_truth_is_left_out():
  pred, gt = _hand_case()
  pred = np.vstack([pred, [[0, 0, 10, 10]]])
  gt = np.vstack([gt, [[np.nan] * 4]])
  c = M.one_pass_curves(pred, gt)
  assert c.success[0] == 0.75  # denominator 4, not 5


def test_one_pass_absent_frames_count_as_failures():
  pred, gt = _hand_case()
  absent = np.array([False, True, False, False])
  c = M.one_pass_curves(pred, gt, absent=absent)
  assert c.success[0] == 0.5      # frame 1 lost from the numerator only
  assert c.precision[50] == 0.75  # frames 0, 2, 3 of 4


def test_one_pass_start_frame():
  pred, gt = _hand_case()
  pred = np.vstack([[[np.nan] * 4] * 2, pred])
  gt = np.vstack([_tile(GT, 2), gt])
  c = M.one_pass_curves(pred, gt, start_frame=2)
  np.testing.assert_allclose(c.success, M.one_pass_curves(*_hand_case())
                             .success)


def test_one_pass_summary_averages_sequences_equally():
  pred, gt = _hand_case()
  short = M.one_pass_curves(pred, gt)                         # AUC 11.75/21
  long_ = M.one_pass_curves(_tile(GT, 10), _tile(GT, 10))    # AUC 20/21
  s = M.one_pass_summary({"short": short, "long": long_})
  assert s["success_auc"] == pytest.approx((11.75 / 21 + 20 / 21) / 2)
  assert s["sequences"]["long"]["success_auc"] == pytest.approx(20 / 21)
  assert 0.0 <= s["precision"] <= 1.0


def _random_boxes(rng, n):
  xy = rng.uniform(0, 100, (n, 2))
  wh = rng.uniform(1, 60, (n, 2))
  return np.hstack([xy, wh])


def test_one_pass_agrees_with_got10k():
  exp = pytest.importorskip(
      "got10k.experiments", reason="got10k is the one-pass reference")
  rng = np.random.default_rng(0)
  otb = object.__new__(exp.ExperimentOTB)
  otb.nbins_iou, otb.nbins_ce = 21, 51
  uav = object.__new__(exp.ExperimentUAV123)
  uav.nbins_iou, uav.nbins_ce = 21, 51
  for trial in range(10):
    n = int(rng.integers(5, 60))
    gt = _random_boxes(rng, n)
    pred = gt + rng.normal(0, 15, gt.shape)
    pred[:, 2:] = np.abs(pred[:, 2:])
    ref_boxes = pred.copy()
    ref_boxes[0] = gt[0]
    if trial % 2:
      gt[rng.random(n) < 0.2] = np.nan
      gt[0] = ref_boxes[0]
      ref = uav._calc_curves(*uav._calc_metrics(ref_boxes, gt))
    else:
      ref = otb._calc_curves(*otb._calc_metrics(ref_boxes, gt))
    ours = M.one_pass_curves(pred, gt)
    np.testing.assert_allclose(ours.success, ref[0], atol=1e-12)
    np.testing.assert_allclose(ours.precision, ref[1], atol=1e-12)


# --------------------------------------------------------------------------
# GOT-10k.


def test_got10k_hand_worked_pooling():
  gt_a = _tile(GT, 4)
  run_a = np.vstack([GT, GT, [[50, 50, 5, 5]], GT])   # IoUs 1, 0, (1)
  visible_a = np.array([True, True, True, False])       # frame 3 covered
  gt_b = _tile(GT, 5)                                    # IoUs 1, 1, 1, 1
  ious = {"a": M.got10k_sequence_ious([run_a], gt_a, visible=visible_a),
          "b": M.got10k_sequence_ious([gt_b], gt_b)}
  np.testing.assert_allclose(ious["a"], [1.0, 0.0])
  s = M.got10k_summary(ious)
  assert s["ao"] == pytest.approx(5 / 6)        # pooled, not (0.5 + 1) / 2
  assert s["sr50"] == pytest.approx(5 / 6)
  assert s["sequences"]["a"]["ao"] == pytest.approx(0.5)
  assert len(s["success_curve"]) == 101


def test_got10k_agrees_with_toolkit():
  exp = pytest.importorskip("got10k.experiments",
                            reason="got10k is the GOT-10k reference")
  utils = pytest.importorskip("got10k.utils.metrics")
  rng = np.random.default_rng(1)
  bound = (120, 90)
  ious, ref = {}, []
  for s in range(4):
    n = int(rng.integers(5, 30))
    gt = _random_boxes(rng, n)
    runs = [gt + rng.normal(0, 10, gt.shape) for _ in range(3)]
    cover = rng.integers(0, 9, n)
    ious[s] = M.got10k_sequence_ious(runs, gt, visible=cover > 0,
                                     bound=bound)
    ref += [utils.rect_iou(r[1:].copy(), gt[1:].copy(), bound=bound)[
        cover[1:] > 0] for r in runs]
  got = object.__new__(exp.ExperimentGOT10k)
  ao, sr, _, curve = got._evaluate(np.concatenate(ref), np.zeros(0))
  ours = M.got10k_summary(ious)
  assert ours["ao"] == pytest.approx(ao, abs=1e-12)
  assert ours["sr50"] == pytest.approx(sr, abs=1e-12)
  np.testing.assert_allclose(ours["success_curve"], curve, atol=1e-12)


# --------------------------------------------------------------------------
# VOT.


def test_vot_overlap_rectangles_by_hand():
  gt = [10, 10, 20, 20]  # pixels 10..29
  assert M.vot_overlap([10, 10, 10, 20], gt, (100, 100)) == 0.5
  assert M.vot_overlap([30, 10, 20, 20], gt, (100, 100)) == 0.0  # touching
  assert M.vot_overlap([29, 10, 20, 20], gt, (100, 100)) == pytest.approx(
      20 / 780)                                                 # 1 column
  # Clipped to a 20x20 image: only pixels 10..19 of both count.
  assert M.vot_overlap([10, 10, 20, 20], [10, 10, 30, 30], (20, 20)) == 1.0


def _random_region(rng):
  if rng.random() < 0.4:
    return np.concatenate([rng.uniform(-20, 90, 2), rng.uniform(-2, 40, 2)])
  c, a, s = rng.uniform(-10, 90, 2), rng.uniform(0, np.pi), rng.uniform(1, 30,
                                                                        2)
  rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
  pts = (np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * s) @ rot.T + c
  if rng.random() < 0.3:
    pts = rng.uniform(-10, 90, (4, 2))   # also non-convex quadrilaterals
  if rng.random() < 0.3:
    pts = np.round(pts) + 0.5            # rounding ties
  return pts.reshape(-1)


def _vot_region(v):
  from vot.region.shapes import Polygon, Rectangle  # pylint: disable=g-import-not-at-top,line-too-long
  v = np.asarray(v, np.float64)
  if v.size == 4:
    return Rectangle(*v)
  return Polygon([(v[2 * i], v[2 * i + 1]) for i in range(v.size // 2)])


def test_vot_overlap_agrees_with_vot_toolkit():
  region = pytest.importorskip("vot.region",
                               reason="vot-toolkit is the VOT reference")
  rng = np.random.default_rng(2)
  for _ in range(400):
    a, b = _random_region(rng), _random_region(rng)
    bounds = (int(rng.integers(20, 80)), int(rng.integers(20, 80)))
    if rng.random() < 0.2:
      bounds = None
    ref = region.calculate_overlap(_vot_region(a), _vot_region(b), bounds)
    assert M.vot_overlap(a, b, bounds) == pytest.approx(ref, abs=1e-12), (
        a, b, bounds)


def test_vot_init_box_preserve_area():
  np.testing.assert_allclose(M.vot_init_box([0, 0, 10, 0, 10, 5, 0, 5]),
                             [0, 0, 11, 6])
  s = np.sqrt(0.5)
  w = 10 * s + 1
  np.testing.assert_allclose(M.vot_init_box([5, 0, 10, 5, 5, 10, 0, 5]),
                             [5 - (w - 1) / 2, 5 - (w - 1) / 2, w, w])
  np.testing.assert_allclose(M.vot_init_box([1, 2, 3, 4]), [1, 2, 3, 4])


def _hand_trajectory():
  """20 frames: init 0, half-overlap at 4-5, failure 6, re-init 11."""
  gt = _tile([10, 10, 20, 20], 20)
  traj = [1] + [np.array([10, 10, 20, 20.])] * 3 + [
      np.array([10, 10, 10, 20.])] * 2 + [2, 0, 0, 0, 0, 1] + [
          np.array([10, 10, 20, 20.])] * 8
  return traj, gt


def test_vot_accuracy_failures_eao_hand_worked():
  traj, gt = _hand_trajectory()
  ov = M.vot_overlaps(traj, gt, (100, 100))
  # burn-in 3: frames 0-2 and 11-13 out, failure 6 and skipped 7-10 out;
  # 3, 14..19 give 1, 4 and 5 give 0.5.
  acc, n = M.vot_accuracy(traj, ov, burnin=3)
  assert n == 9 and acc == pytest.approx(8 / 9)
  assert M.vot_accuracy(traj, ov, burnin=10) == (0.0, 0)  # nothing left
  assert M.vot_failures(traj) == 1
  frags = M.vot_fragments(traj, ov)
  assert [len(f) for f, _ in frags] == [6, 9]
  assert [e for _, e in frags] == [False, True]
  curve = M.eao_curve(frags)
  # failed fragment: running mean of 1,1,1,.5,.5 then zeros; other is all 1.
  f1 = np.array([0, 1, 1, 1, 3.5 / 4, 4 / 5, 4 / 6, 4 / 7, 4 / 8])
  np.testing.assert_allclose(curve, (f1 + np.r_[0, [1] * 8]) / 2)
  assert M.eao_score(curve, 2, 5) == pytest.approx(
      (1 + 1 + 1.875 / 2 + 1.8 / 2) / 4)
  stats = M.vot_sequence_stats([traj, traj], gt, (100, 100), burnin=3)
  assert stats.accuracy == pytest.approx(8 / 9) and stats.failures == 1
  s = M.vot_summary({"seq": stats}, (2, 5))
  assert s["robustness"] == pytest.approx(100 * 1 / 20)
  assert s["eao"] == pytest.approx(M.eao_score(curve, 2, 5), abs=1e-12)


def test_vot_summary_weights():
  a = M.VotSequenceStats(0.5, 2.0, 100, ((np.ones(100), True),))
  b = M.VotSequenceStats(1.0, 1.0, 300, ((np.ones(300), True),))
  s = M.vot_summary({"a": a, "b": b}, (10, 20))
  assert s["accuracy"] == pytest.approx((0.5 * 100 + 1.0 * 300) / 400)
  assert s["failures"] == 3.0
  assert s["robustness"] == pytest.approx(100 * 3 / 400)
  assert s["robustness_ar"] == pytest.approx(
      np.exp(-30 * (2 * 100 + 1 * 300) / 400 / 200))
  assert s["eao"] == pytest.approx(1.0)


class _ToolkitSeq:
  """The parts of a vot-toolkit Sequence its analysis functions use."""

  def __init__(self, gt, size):
    self._gt, self.size = [_vot_region(g) for g in gt], size

  def groundtruth(self):
    return self._gt

  def __len__(self):
    return len(self._gt)


class _ToolkitTrajectory:

  def __init__(self, regions):
    self._regions = regions

  def regions(self):
    return self._regions


def _random_trajectory(rng, gt, size):
  """A synthetic supervised run: jittered boxes, failures, skips, inits."""
  n, traj, f = len(gt), [], 0
  traj = [0] * n
  while f < n:
    traj[f] = 1
    f += 1
    while f < n:
      if rng.random() < 0.08:
        traj[f] = 2
        f += 5
        break
      box = M.vot_init_box(gt[f]) + rng.normal(0, 4, 4)
      traj[f] = box
      f += 1
  return traj


def test_vot_stack_agrees_with_vot_toolkit():
  sup = pytest.importorskip("vot.analysis.supervised",
                            reason="vot-toolkit is the VOT reference")
  from vot.region import Special  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  size = (160, 120)
  stats, ref_ar, fragments_ref = {}, [], []

  class Experiment:
    runs = None

    def gather(self, tracker, sequence):
      del tracker
      return self.runs[id(sequence)]

  experiment = Experiment()
  experiment.runs = {}
  tk_seqs = []
  for s in range(4):
    n = int(rng.integers(30, 80))
    if s % 2:  # rectangle ground truth
      gt = np.hstack([rng.uniform(10, 100, (n, 2)),
                      rng.uniform(15, 40, (n, 2))])
    else:      # rotated-box polygons
      gt = (np.array([20, 20, 60, 25, 55, 60, 15, 55.])[None]
            + rng.normal(0, 2, (n, 8)))
    runs = [_random_trajectory(rng, gt, size) for _ in range(2)]
    stats[s] = M.vot_sequence_stats(runs, gt, size)
    tk_seq = _ToolkitSeq(gt, size)
    tk_seqs.append(tk_seq)
    experiment.runs[id(tk_seq)] = [_ToolkitTrajectory(
        [Special(e) if np.isscalar(e) else _vot_region(e) for e in t])
                                   for t in runs]
    ref_ar.append(sup.AccuracyRobustness().subcompute(
        experiment, None, tk_seq, []))
    assert stats[s].accuracy == pytest.approx(ref_ar[-1][0], abs=1e-12)
    assert stats[s].failures == pytest.approx(ref_ar[-1][1], abs=1e-12)
  ours = M.vot_summary(stats, (20, 60))
  agg = sup.AverageAccuracyRobustness().aggregate(None, tk_seqs, ref_ar)
  assert ours["accuracy"] == pytest.approx(agg[0], abs=1e-12)
  assert ours["robustness_ar"] == pytest.approx(agg[2][0], abs=1e-12)
  curve = sup.EAOCurve().subcompute(experiment, None, tk_seqs, [])[0]
  np.testing.assert_allclose(ours["eao_curve"], curve, atol=1e-5)
  # EAOScore.compute: mean of the curve over [low, high].
  assert ours["eao"] == pytest.approx(float(np.mean(curve[20:61])), abs=1e-5)


# --------------------------------------------------------------------------
# Report.


def test_report_json_and_table(tmp_path):
  pred, gt = _hand_case()
  res = M.one_pass_summary({"s": M.one_pass_curves(pred, gt)})
  res["fps"] = 12.5
  report = writers.write_report(str(tmp_path), "OTB100", {"trk": res})
  loaded = json.loads((tmp_path / "report.json").read_text())
  assert loaded == json.loads(json.dumps(report))
  t = loaded["trackers"]["trk"]
  for key in ("success_auc", "precision", "norm_precision", "success_rate_50"):
    assert 0.0 <= t[key] <= 1.0
  assert t["sequences"]["s"]["success_auc"] == pytest.approx(11.75 / 21)
  table = writers.format_table(loaded)
  assert "trk" in table and f"{100 * 11.75 / 21:.1f}" in table
  assert "12.5" in table
  assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]

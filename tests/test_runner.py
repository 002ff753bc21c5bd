"""One-pass runner: lanes, resume, formats, scoring result files, baselines."""
import glob
import os
import zipfile

import numpy as np
import pytest

from duml_jax.data.sequence import Sequence
from duml_jax.evaluation import baselines
from duml_jax.evaluation import metrics as M
from duml_jax.evaluation import plots
from duml_jax.evaluation import runner
from duml_jax.evaluation import writers
from tests import fake_frames

LENGTHS = [7, 3, 10, 5, 8]


class DriftTracker:
  """Deterministic, stateful: each update moves the lane's box by a step
  that depends on the frame; optionally raises on (sequence id, frame)."""

  deterministic = True

  def __init__(self, batch_size=1, name="drift", raise_at=None):
    self.name, self.batch_size, self.raise_at = name, batch_size, raise_at
    self.state = np.zeros((batch_size, 4))
    self.inits = []

  def init(self, frames, boxes, mask):
    for i in np.flatnonzero(mask):
      self.inits.append(fake_frames.decode(frames[i]))
      self.state[i] = boxes[i]

  def update(self, frames, mask):
    for i in np.flatnonzero(mask):
      sid, f = fake_frames.decode(frames[i])
      if (sid, f) == self.raise_at:
        raise RuntimeError("simulated kill")
      self.state[i] += [0.25 * (f % 3) - 0.2, 0.5 * sid - 0.7, 0.1, -0.05]
    return self.state.copy(), np.full(self.batch_size, 0.5)


def _sequences():
  seqs = []
  for k, n in enumerate(LENGTHS):
    boxes = np.tile([10.0 + k, 12.0, 20.0, 15.0], (n, 1))
    boxes += np.arange(n)[:, None] * [0.5, 0.25, 0, 0]
    seqs.append(Sequence(f"s{k}", tuple(f"s{k}/{i:04d}.jpg" for i in range(n)),
                         boxes, start_frame=2 if k == 2 else 0,
                         one_based=k != 4))
  return seqs


IDS = {f"s{k}": k for k in range(len(LENGTHS))}


def _results(tracker_dir):
  """{relative path: bytes} of the result files (not timings)."""
  out = {}
  for path in glob.glob(os.path.join(tracker_dir, "**", "*"), recursive=True):
    rel = os.path.relpath(path, tracker_dir)
    if os.path.isfile(path) and "time" not in rel:
      out[rel] = open(path, "rb").read()
  return out


def test_batched_lanes_give_same_files(tmp_path):
  seqs = _sequences()
  d1 = runner.run_one_pass(DriftTracker(1), seqs, str(tmp_path / "a"),
                           "OTB100", read_frame=fake_frames.reader(IDS))
  t3 = DriftTracker(3)
  d3 = runner.run_one_pass(t3, seqs, str(tmp_path / "b"), "OTB100",
                           read_frame=fake_frames.reader(IDS))
  r1, r3 = _results(d1), _results(d3)
  assert sorted(r1) == [f"s{k}.txt" for k in range(5)]
  assert r1 == r3
  assert sorted(t3.inits) == [(k, 2 if k == 2 else 0) for k in range(5)]


def test_resume_after_kill(tmp_path):
  seqs = _sequences()
  ref = runner.run_one_pass(DriftTracker(2), seqs, str(tmp_path / "ref"),
                            "OTB100", read_frame=fake_frames.reader(IDS))
  out = str(tmp_path / "run")
  killer = DriftTracker(2, raise_at=(3, 2))  # sequence s3, frame 2
  with pytest.raises(RuntimeError, match="simulated kill"):
    runner.run_one_pass(killer, seqs, out, "OTB100", read_frame=fake_frames.reader(IDS))
  tdir = os.path.join(out, "drift")
  done = sorted(_results(tdir))
  # Lanes: s0 | s1, s1 ends -> s2 on lane 1, s0 ends -> s3 on lane 0 (killed
  # at its frame 2, while s2 is still running).
  assert done == ["s0.txt", "s1.txt"]
  assert not glob.glob(os.path.join(tdir, "**", ".tmp*"), recursive=True)
  again = DriftTracker(2)
  runner.run_one_pass(again, seqs, out, "OTB100", read_frame=fake_frames.reader(IDS))
  assert sorted(sid for sid, _ in again.inits) == [2, 3, 4]
  assert _results(tdir) == _results(ref)
  assert os.path.exists(os.path.join(tdir, "times", "s3_time.txt"))


def test_one_pass_file_format(tmp_path):
  seqs = _sequences()
  tdir = runner.run_one_pass(DriftTracker(1), seqs, str(tmp_path), "OTB100",
                             read_frame=fake_frames.reader(IDS))
  lines = open(os.path.join(tdir, "s2.txt")).read().splitlines()
  assert len(lines) == 10
  assert lines[0] == lines[1] == "nan,nan,nan,nan"       # before start
  assert lines[2] == "14.000,13.500,20.000,15.000"       # init box + 1
  back = writers.read_one_pass(tdir, "s2", one_based=True)
  np.testing.assert_allclose(back[2], seqs[2].boxes[2])
  zero_based = open(os.path.join(tdir, "s4.txt")).readline().strip()
  assert zero_based == "14.000,12.000,20.000,15.000"
  times = writers.read_times(os.path.join(tdir, "times", "s2_time.txt"))
  assert times.shape == (10,) and times[0] == 0 and np.all(times[2:] >= 0)


def test_got10k_three_runs_and_zip(tmp_path):
  seqs = _sequences()[:2]
  det = DriftTracker(2)
  tdir = runner.run_one_pass(det, seqs, str(tmp_path / "det"), "GOT-10k-test",
                             read_frame=fake_frames.reader(IDS))
  files = sorted(os.listdir(os.path.join(tdir, "s0")))
  assert files == ["s0_001.txt", "s0_002.txt", "s0_003.txt", "s0_time.txt"]
  texts = {open(os.path.join(tdir, "s0", f)).read() for f in files[:3]}
  assert len(texts) == 1 and len(det.inits) == 2
  with zipfile.ZipFile(tmp_path / "det" / "drift.zip") as zf:
    assert "s1/s1_003.txt" in zf.namelist()
    assert "s1/s1_time.txt" in zf.namelist()
  stoch = DriftTracker(1)
  stoch.deterministic = False
  tdir = runner.run_one_pass(stoch, seqs, str(tmp_path / "sto"), "GOT-10k",
                             read_frame=fake_frames.reader(IDS))
  assert len(stoch.inits) == 6
  times = writers.read_times(os.path.join(tdir, "s0", "s0_time.txt"))
  assert times.shape == (7, 3)
  assert not os.path.exists(tmp_path / "sto" / "drift.zip")


def test_trackingnet_flat_zip(tmp_path):
  seqs = _sequences()[:3]
  tdir = runner.run_one_pass(DriftTracker(1), seqs, str(tmp_path),
                             "TrackingNet", read_frame=fake_frames.reader(IDS))
  with zipfile.ZipFile(tmp_path / "drift.zip") as zf:
    assert sorted(zf.namelist()) == ["s0.txt", "s1.txt", "s2.txt"]
  assert open(os.path.join(tdir, "s0.txt")).readline().strip() == (
      "11.00,13.00,20.00,15.00")


def test_score_files_of_another_tracker(tmp_path):
  """--score_only: files written by someone else (tab-separated, 1-based)."""
  seqs = _sequences()
  other = tmp_path / "other"
  other.mkdir()
  rng = np.random.default_rng(0)
  preds = {}
  for s in seqs:
    pred = s.boxes + rng.normal(0, 2, s.boxes.shape)
    preds[s.name] = pred
    shift = np.array([1.0, 1, 0, 0]) if s.one_based else 0
    (other / f"{s.name}.txt").write_text("".join(
        "\t".join(f"{v:.6f}" for v in row) + "\n" for row in pred + shift))
  res = runner.score("OTB100", seqs, str(tmp_path), ["other"])["other"]
  curves = {s.name: M.one_pass_curves(preds[s.name], s.boxes,
                                      start_frame=s.start_frame)
            for s in seqs}
  assert res["success_auc"] == pytest.approx(M.one_pass_summary(curves)["success_auc"],
                                     abs=1e-6)
  assert res["fps"] is None


def test_atomic_write_keeps_old_file(tmp_path, monkeypatch):
  path = tmp_path / "r.txt"
  writers.atomic_write_text(str(path), "old\n")

  def broken(src, dst):
    raise OSError("disk full")

  monkeypatch.setattr(os, "replace", broken)
  with pytest.raises(OSError, match="disk full"):
    writers.atomic_write_text(str(path), "new\n")
  assert path.read_text() == "old\n"
  assert [p.name for p in tmp_path.iterdir()] == ["r.txt"]


def test_sequential_adapter_masks_lanes():
  class Simple:
    def init(self, frame, box):
      self.box = np.asarray(box) + frame[0, 0, 0]

    def update(self, frame):
      self.box = self.box + 1
      return self.box, 0.9

  tr = runner.SequentialAdapter(Simple, batch_size=3, name="simple")
  assert isinstance(tr, runner.BatchTracker)
  frames = [np.full((2, 2, 3), v, np.uint8) for v in (1, 2, 3)]
  tr.init(frames, np.zeros((3, 4)), np.array([True, True, True]))
  boxes, scores = tr.update([frames[0], None, frames[2]],
                            np.array([True, False, True]))
  np.testing.assert_allclose(boxes[[0, 2], 0], [2, 4])
  assert np.isnan(boxes[1]).all() and scores[0] == pytest.approx(0.9)
  tr.init([None, frames[0], None], np.full((3, 4), 5.0),
          np.array([False, True, False]))
  boxes, _ = tr.update(frames, np.ones(3, bool))
  np.testing.assert_allclose(boxes[:, 0], [3, 7, 5])


def test_keep_first_box_evaluate_report_and_plots(tmp_path):
  seqs = _sequences()
  report = runner.evaluate("OTB100", seqs, str(tmp_path),
                           trackers=[baselines.KeepFirstBox(2),
                                     DriftTracker(3)],
                           read_frame=fake_frames.reader(IDS))
  assert set(report["trackers"]) == {"KeepFirstBox", "drift"}
  kfb = report["trackers"]["KeepFirstBox"]
  # s1: the GT moves by (0.5, 0.25) per frame; IoUs with the first box are
  # 1, 287.625 / 312.375 = 0.921, 275.5 / 324.5 = 0.849: thresholds 0..0.8
  # count 3 frames, 0.85 and 0.9 two, 0.95 one, 1.0 none.
  assert kfb["sequences"]["s1"]["success_auc"] == pytest.approx(
      (17 + 2 * 2 / 3 + 1 / 3) / 21)
  assert writers.read_report(str(tmp_path)) == report
  for name in ("success_plot.png", "precision_plot.png",
               "norm_precision_plot.png"):
    assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
  assert "KeepFirstBox" in writers.format_table(report)


def test_plots_for_got_and_vot_reports(tmp_path):
  got = {"benchmark": "GOT-10k", "trackers": {
      "a": {"ao": 0.5, "sr50": 0.5, "sr75": 0.1,
            "success_curve": list(np.linspace(1, 0, 101))}}}
  vot = {"benchmark": "VOT2018", "trackers": {
      "a": {"eao": None, "eao_curve": [0.0, 0.9, 0.8]},
      "b": {"eao": 0.3, "eao_curve": [0.0, 0.5, 0.4, 0.3]}}}
  paths = plots.save_plots(got, str(tmp_path / "g")) + plots.save_plots(
      vot, str(tmp_path / "v"))
  assert [os.path.basename(p) for p in paths] == ["success_plot.png",
                                                  "eao_curve.png"]
  assert all(os.path.getsize(p) > 1000 for p in paths)
  assert "-" in writers.format_table(vot)


def test_nanotrack_and_mil_on_real_frames(tmp_path, otb_sample):
  weights = otb_sample.parents[1] / "weights" / "nanotrack"
  backbone = weights / "nanotrackv2_nanotrack_backbone_sim.onnx"
  head = weights / "nanotrackv2_nanotrack_head_sim.onnx"
  if not backbone.exists():
    pytest.skip(f"{backbone} not found")
  folder = otb_sample / "Crossing"
  n = 40
  frames = tuple(sorted(str(p) for p in (folder / "img").glob("*.jpg")))[:n]
  gt = np.array([[float(v) for v in line.replace("\t", ",").split(",")]
                 for line in (folder / "groundtruth_rect.txt").read_text()
                 .split("\n") if line.strip()])[:n]
  gt[:, :2] -= 1.0
  seq = Sequence("Crossing", frames, gt, one_based=True)
  report = runner.evaluate(
      "OTB100", [seq], str(tmp_path), plot=False,
      trackers=[baselines.opencv_nano(str(backbone), str(head)),
                baselines.opencv_mil(), baselines.KeepFirstBox()])
  t = report["trackers"]
  assert t["NanoTrack"]["success_auc"] > 0.6 and t["NanoTrack"]["precision"] > 0.9
  assert t["NanoTrack"]["success_auc"] > t["KeepFirstBox"]["success_auc"]
  assert 0.0 <= t["OpenCV-MIL"]["success_auc"] <= 1.0


def test_absent_frames_fail_only_on_lasot(tmp_path):
  n = 6
  gt = np.tile([10.0, 10.0, 20.0, 20.0], (n, 1))
  absent = np.array([False, False, True, True, False, False])
  seq = Sequence("a", tuple(f"a/{i}.jpg" for i in range(n)), gt,
                 absent=absent)
  runner.run_one_pass(baselines.KeepFirstBox(), [seq], str(tmp_path),
                      "LaSOT", read_frame=fake_frames.reader({"a": 0}))
  lasot = runner.score("LaSOT", [seq], str(tmp_path), ["KeepFirstBox"])
  otb = runner.score("OTB100", [seq], str(tmp_path), ["KeepFirstBox"])
  assert lasot["KeepFirstBox"]["success_rate_50"] == pytest.approx(4 / 6)
  assert otb["KeepFirstBox"]["success_rate_50"] == 1.0


def test_got10k_test_split_zip_and_no_score(tmp_path):
  n = 4
  boxes = np.full((n, 4), np.nan)
  boxes[0] = [5, 5, 10, 10]
  seq = Sequence("GOT-10k_Test_000001", tuple(f"g/{i}.jpg" for i in range(n)),
                 boxes, one_based=False, attributes={"split": "test"})
  report = runner.evaluate("got10k", [seq], str(tmp_path),
                           trackers=[baselines.KeepFirstBox()],
                           read_frame=fake_frames.reader({seq.name: 0}))
  assert report is None
  with zipfile.ZipFile(tmp_path / "KeepFirstBox.zip") as zf:
    assert f"{seq.name}/{seq.name}_001.txt" in zf.namelist()

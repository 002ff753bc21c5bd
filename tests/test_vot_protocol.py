"""VOT baseline protocol on a scripted fake tracker."""
import os

import numpy as np
import pytest

from duml_jax.data.sequence import Sequence
from duml_jax.evaluation import metrics as M
from duml_jax.evaluation import runner
from duml_jax.evaluation import writers
from tests import fake_frames

SIZE = (100, 80)                                       # width, height
POLY = np.array([20, 20, 60, 20, 60, 50, 20, 50.])     # axis-aligned polygon
INIT = M.vot_init_box(POLY)                            # [20, 20, 41, 31]
GOOD = INIT                                            # tracked box
BURNIN_BOX = INIT + np.array([10.0, 0, 0, 0])          # worse, still > 0
FAR = np.array([80.0, 60, 10, 10])                     # overlap 0
TOUCH = np.array([61.0, 20, 10, 31])                   # next column: 0
GRAZE = np.array([60.0, 20, 10, 31])                   # one column: > 0


class ScriptedTracker:
  """Fails (FAR) at scripted frames, touches / grazes at others.

  Within 9 frames after an init it returns BURNIN_BOX, then GOOD.
  """

  def __init__(self, script, batch_size=1, name="scripted"):
    self.name, self.batch_size, self.script = name, batch_size, script
    self.inits = []
    self._since = [None] * batch_size

  def init(self, frames, boxes, mask):
    for i in np.flatnonzero(mask):
      sid, f = fake_frames.decode(frames[i])
      self.inits.append((sid, f))
      np.testing.assert_allclose(boxes[i], INIT)
      self._since[i] = f

  def update(self, frames, mask):
    out = np.zeros((self.batch_size, 4))
    for i in np.flatnonzero(mask):
      sid, f = fake_frames.decode(frames[i])
      kind = self.script.get(sid, {}).get(f)
      if kind is not None:
        out[i] = {"fail": FAR, "touch": TOUCH, "graze": GRAZE}[kind]
      elif f - self._since[i] < 10:
        out[i] = BURNIN_BOX
      else:
        out[i] = GOOD
    return out, np.ones(self.batch_size)


def _seq(name, n, one_based=False):
  return Sequence(name, tuple(f"{name}/{i:08d}.jpg" for i in range(n)),
                  np.tile(INIT, (n, 1)), polygons=np.tile(POLY, (n, 1)),
                  one_based=one_based, attributes={"image_size": SIZE})


def _codes(traj):
  return [e if np.isscalar(e) else -1 for e in traj]


def test_failure_codes_and_reinit_five_frames_later(tmp_path):
  seqs = [_seq("a", 40)]
  tracker = ScriptedTracker({0: {7: "fail", 20: "fail"}})
  tdir = runner.run_vot_baseline(tracker, seqs, str(tmp_path), "VOT2018",
                                 read_frame=fake_frames.reader({"a": 0}, SIZE))
  assert tracker.inits == [(0, 0), (0, 12), (0, 25)]
  traj = writers.read_vot(tdir, "a", one_based=False)[0]
  expect = ([1] + [-1] * 6 + [2] + [0] * 4 + [1] + [-1] * 7 + [2] + [0] * 4
            + [1] + [-1] * 14)
  assert _codes(traj) == expect
  lines = open(os.path.join(tdir, "baseline", "a", "a_001.txt")).read(
  ).splitlines()
  assert lines[0] == "1" and lines[7] == "2" and lines[8] == "0"
  assert lines[1] == "30.0000,20.0000,41.0000,31.0000"  # burn-in box
  assert os.path.exists(os.path.join(tdir, "baseline", "a", "a_time.txt"))


def test_failure_is_overlap_zero_exactly(tmp_path):
  seqs = [_seq("a", 30)]
  tracker = ScriptedTracker({0: {3: "graze", 5: "touch"}})
  tdir = runner.run_vot_baseline(tracker, seqs, str(tmp_path), "VOT2018",
                                 read_frame=fake_frames.reader({"a": 0}, SIZE))
  traj = writers.read_vot(tdir, "a", one_based=False)[0]
  assert _codes(traj)[3] == -1 and _codes(traj)[5] == 2
  assert tracker.inits == [(0, 0), (0, 10)]


def test_failure_near_end_has_no_reinit(tmp_path):
  tracker = ScriptedTracker({0: {17: "fail"}})
  tdir = runner.run_vot_baseline(tracker, [_seq("a", 20)], str(tmp_path),
                                 "VOT2018", read_frame=fake_frames.reader({"a": 0}, SIZE))
  traj = writers.read_vot(tdir, "a", one_based=False)[0]
  assert _codes(traj)[16:] == [-1, 2, 0, 0]
  assert tracker.inits == [(0, 0)]


def test_burn_in_excluded_from_accuracy_and_scores(tmp_path):
  seqs = [_seq("a", 40), _seq("b", 25, one_based=True)]
  script = {0: {7: "fail", 20: "fail"}}
  tracker = ScriptedTracker(script)
  runner.run_vot_baseline(tracker, seqs, str(tmp_path), "VOT2018",
                          read_frame=fake_frames.reader({"a": 0, "b": 1}, SIZE))
  res = runner.score_vot(seqs, str(tmp_path / "scripted"), "VOT2018")
  good = M.vot_overlap(GOOD, POLY, SIZE)
  assert M.vot_overlap(BURNIN_BOX, POLY, SIZE) < good
  # Only GOOD frames remain after removing burn-in, failures and skips.
  assert res["sequences"]["a"]["accuracy"] == pytest.approx(good)
  assert res["accuracy"] == pytest.approx(good)
  assert res["failures"] == 2
  assert res["robustness"] == pytest.approx(100 * 2 / 65)
  # Fragments 0-6, 12-19, 25-39 of "a" and all 25 frames of "b": the curve is
  # as long as the longest; shorter than VOT2018's low end (100), so the
  # toolkit's EAO is the mean of an empty slice: NaN.
  assert len(res["eao_curve"]) == 25
  assert np.isnan(res["eao"])
  # one_based sequence: the file holds x + 1, y + 1.
  first = open(tmp_path / "scripted" / "baseline" / "b" / "b_001.txt").read(
  ).splitlines()[1]
  assert first == "31.0000,21.0000,41.0000,31.0000"


def test_batched_lanes_match_single_lane(tmp_path):
  seqs = [_seq("a", 40), _seq("b", 25), _seq("c", 31), _seq("d", 12)]
  ids = {"a": 0, "b": 1, "c": 2, "d": 3}
  script = {0: {7: "fail", 20: "fail"}, 2: {3: "fail", 29: "fail"},
            3: {1: "fail"}}
  out1, out3 = tmp_path / "n1", tmp_path / "n3"
  runner.run_vot_baseline(ScriptedTracker(script, 1), seqs, str(out1),
                          "VOT2018", read_frame=fake_frames.reader(ids, SIZE))
  t3 = ScriptedTracker(script, 3)
  runner.run_vot_baseline(t3, seqs, str(out3), "VOT2018",
                          read_frame=fake_frames.reader(ids, SIZE))
  for s in seqs:
    rel = os.path.join("scripted", "baseline", s.name, f"{s.name}_001.txt")
    assert (out1 / rel).read_text() == (out3 / rel).read_text(), s.name


def test_result_file_readable_by_vot_toolkit(tmp_path):
  io = pytest.importorskip("vot.region.io", reason="vot-toolkit reader")
  from vot.region import Special  # pylint: disable=g-import-not-at-top
  tracker = ScriptedTracker({0: {7: "fail"}})
  tdir = runner.run_vot_baseline(tracker, [_seq("a", 20)], str(tmp_path),
                                 "VOT2018", read_frame=fake_frames.reader({"a": 0}, SIZE))
  ref = io.read_trajectory(os.path.join(tdir, "baseline", "a", "a_001.txt"))
  ours = writers.read_vot(tdir, "a", one_based=False)[0]
  assert len(ref) == len(ours) == 20
  for r, o in zip(ref, ours):
    if np.isscalar(o):
      assert isinstance(r, Special) and r.code == o
    else:
      np.testing.assert_allclose([r.x, r.y, r.width, r.height], o)


# --------------------------------------------------------------------------
# Multi-run folders scored end to end against vot-toolkit's own workspace.


def _vot_toolkit_workspace(root, rng, runs, sequences, size=(160, 120)):
  """`sequences` sequences (rectangle, polygon and mixed ground truth) with
  `runs` result files each: odd runs never fail, even runs fail at random.

  Sequences are just over VOT2018's EAO low end (100) so the score is a
  number, and short because the toolkit's analysis is slow (pure Python).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from tests.test_metrics import _random_trajectory  # pylint: disable=g-import-not-at-top
  (root / "config.yaml").write_text(
      "stack: vot2018/shortterm\nregistry:\n- ./trackers.ini\n")
  (root / "trackers.ini").write_text(
      "[trk]\nlabel = trk\nprotocol = traxpython\ncommand = unused\n")
  frame = root / "frame.jpg"
  Image.new("RGB", size).save(frame)
  fmt = lambda v: ",".join(f"{x:.4f}" for x in v)  # noqa: E731
  names = []
  for s in range(sequences):
    name, n = f"s{s}", int(rng.integers(102, 125))
    names.append(name)
    rect = np.hstack([rng.uniform(10, 120, (n, 2)), rng.uniform(6, 30, (n, 2))])
    poly = (np.array([20, 20, 50, 25, 45, 50, 15, 45.])[None]
            + rng.normal(0, 2, (n, 8)) + rng.uniform(0, 60, (n, 1)))
    kind = s % 3   # 0: rectangles, 1: polygons, 2: both, row by row
    gt = [rect[i] if kind == 0 or (kind == 2 and i % 2) else poly[i]
          for i in range(n)]
    seq_dir = root / "sequences" / name
    (seq_dir / "color").mkdir(parents=True)
    for i in range(n):
      os.link(frame, seq_dir / "color" / f"{i + 1:08d}.jpg")
    (seq_dir / "sequence").write_text(
        f"channels.color=color/%08d.jpg\nwidth={size[0]}\nheight={size[1]}\n"
        f"length={n}\nfps=30\n")
    (seq_dir / "groundtruth.txt").write_text(
        "\n".join(fmt(g) for g in gt) + "\n")
    res_dir = root / "results" / "trk" / "baseline" / name
    res_dir.mkdir(parents=True)
    for r in range(runs):
      if r % 2:
        traj = [1] + [M.vot_init_box(g) + rng.normal(0, 2, 4) for g in gt[1:]]
      else:
        traj = _random_trajectory(rng, gt, size)
      (res_dir / f"{name}_{r + 1:03d}.txt").write_text("\n".join(
          str(e) if np.isscalar(e) else fmt(e) for e in traj) + "\n")
  (root / "sequences" / "list.txt").write_text("\n".join(names) + "\n")


@pytest.mark.parametrize("runs,sequences", [(3, 5), (15, 3)])
def test_multi_run_scores_match_vot_toolkit(tmp_path, runs, sequences):
  pytest.importorskip("vot.analysis.supervised",
                      reason="vot-toolkit is the VOT reference")
  import json  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from duml_jax.evaluation import evaluate_lib  # pylint: disable=g-import-not-at-top
  _vot_toolkit_workspace(tmp_path, np.random.default_rng(runs), runs,
                         sequences)
  ours = evaluate_lib.score_only("vot2018", str(tmp_path / "sequences"),
                                 str(tmp_path / "results"), ["trk"],
                                 plot=False)["trackers"]["trk"]
  # As a new user scores a results folder: `vot analysis` on the workspace.
  subprocess.run([sys.executable, "-m", "vot", "analysis", "--workspace",
                  str(tmp_path), "--format", "json", "--experiments",
                  "baseline", "--name", "ref", "trk"], check=True,
                 capture_output=True)
  ar, eao, curve = json.loads((tmp_path / "analysis" / "ref.json").read_text(
  ))["results"]["baseline"]["results"]
  accuracy, weighted_failures, (robustness_ar, _), _ = ar[0]
  assert ours["accuracy"] == pytest.approx(accuracy, abs=1e-12)
  assert ours["robustness_ar"] == pytest.approx(robustness_ar, abs=1e-12)
  lengths = [s["length"] for s in ours["sequences"].values()]
  assert np.dot([s["failures"] for s in ours["sequences"].values()],
                lengths) / np.sum(lengths) == pytest.approx(weighted_failures)
  assert ours["eao"] == pytest.approx(eao[0][0], abs=1e-6)   # toolkit: float32
  np.testing.assert_allclose(ours["eao_curve"], curve[0][0], atol=1e-6)

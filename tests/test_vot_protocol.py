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

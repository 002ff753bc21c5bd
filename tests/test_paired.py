"""Paired per-sequence differences with a bootstrap interval (`evaluation.paired`)."""
import json

import numpy as np
import pytest

from duml_jax.evaluation import paired


def test_paired_difference_by_hand():
  a = {"s1": 0.6, "s2": 0.5, "s3": 0.9, "s4": 0.4}
  b = {"s1": 0.5, "s2": 0.5, "s3": 0.6, "s4": 0.45}
  r = paired.paired_difference(a, b, num_resamples=4000)
  np.testing.assert_allclose(r["mean"], (0.1 + 0. + 0.3 - 0.05) / 4)
  assert (r["wins"], r["losses"], r["ties"]) == (2, 1, 1)
  assert r["worst_sequence"] == "s4" and r["worst"] == pytest.approx(-0.05)
  # The interval holds the mean and lies within the smallest / largest difference.
  assert -0.05 <= r["ci_low"] < r["mean"] < r["ci_high"] <= 0.3
  assert r == paired.paired_difference(a, b, num_resamples=4000)    # seeded


def test_interval_narrows_with_consistent_gains():
  names = [f"s{i}" for i in range(10)]
  b = {n: 0.5 for n in names}
  steady = paired.paired_difference({n: 0.52 for n in names}, b)
  assert steady["ci_low"] == pytest.approx(0.02) and steady["ci_high"] == pytest.approx(0.02)
  # The same mean carried by one sequence: a wide interval reaching 0.
  one = dict(b, s0=0.7)
  r = paired.paired_difference(one, b)
  assert r["mean"] == pytest.approx(0.02) and r["ci_low"] == 0. and r["ci_high"] > 0.05


def test_errors_and_reports(tmp_path):
  with pytest.raises(ValueError, match="only in a"):
    paired.paired_difference({"x": 1.}, {"y": 1.})
  with pytest.raises(ValueError, match="confidence"):
    paired.paired_difference({"x": 1.}, {"x": 1.}, confidence=95)
  rep = {"trackers": {
      "A": {"sequences": {"x": {"success_auc": 0.7}, "y": {"success_auc": 0.4}}},
      "B": {"sequences": {"x": {"success_auc": 0.5}, "y": {"success_auc": 0.5}}}}}
  path = tmp_path / "report.json"
  path.write_text(json.dumps(rep))
  r = paired.compare_reports(path, "A", "B")
  assert r["differences"] == pytest.approx({"x": 0.2, "y": -0.1})
  with pytest.raises(KeyError, match="'C'"):
    paired.compare_reports(rep, "A", "C")


def test_command_line_two_reports_and_errors(tmp_path, capsys):
  def write(name, tracker, x, y):
    path = tmp_path / name
    path.write_text(json.dumps({"trackers": {
        tracker: {"sequences": {"x": {"success_auc": x}, "y": {"success_auc": y}}},
        "KeepFirstBox": {"sequences": {"x": {"success_auc": 0.}, "y": {"success_auc": 0.}}}}}))
    return str(path)
  a, b = write("a.json", "A", 0.7, 0.4), write("b.json", "B", 0.5, 0.5)
  r = paired.main([a, b])          # the one tracker of each report besides the baseline
  assert r["differences"] == pytest.approx({"x": 0.2, "y": -0.1})
  out = capsys.readouterr().out
  assert "A - B (success_auc, 2 sequences): +5.00" in out and "worst -10.00 y" in out
  with pytest.raises(SystemExit, match="no tracker 'C'"):
    paired.main([a, b, "--tracker_b=C"])
  with pytest.raises(SystemExit, match="missing.json: cannot read"):
    paired.main([a, str(tmp_path / "missing.json")])
  with pytest.raises(SystemExit, match="one report needs two trackers"):
    paired.main([a])               # one report, one tracker: nothing to pair it with

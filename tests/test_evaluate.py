"""evaluate.py's library: real sequences tracked end to end, report, score-only, errors."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import duml as duml_config
from duml_jax.evaluation import evaluate_lib
from duml_jax.models import duml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny():
  c = duml_config.get_config("tiny")
  model = duml.build_model(c.model)
  return c, duml.init_variables(model, jax.random.PRNGKey(0), c.model.exemplar_size,
                                c.model.search_size)


def test_otb_sample_tracked_end_to_end_by_the_tiny_config(tiny, otb_sample, tmp_path):
  c, variables = tiny
  out = str(tmp_path / "out")
  report = evaluate_lib.evaluate_model(c, variables, "otb", str(otb_sample), out,
                                       sequences=["Crossing", "Freeman1"], batch_sequences=2,
                                       baseline_names=("keep_first",))
  name = evaluate_lib.tracker_name(c)
  assert set(report["trackers"]) == {name, "KeepFirstBox"}
  seqs = report["trackers"][name]["sequences"]
  assert set(seqs) == {"Crossing", "Freeman1"}
  for m in ("success_auc", "precision", "norm_precision"):
    assert 0. <= report["trackers"][name][m] <= 1.
  # OTB-style results: one x,y,w,h line per frame, 1-based like the ground truth.
  lines = open(os.path.join(out, name, "Crossing.txt")).read().strip().splitlines()
  assert len(lines) == 120
  gt0 = np.loadtxt(os.path.join(otb_sample, "Crossing", "groundtruth_rect.txt"))[0]
  np.testing.assert_allclose(np.array(lines[0].split(","), float), gt0, atol=1e-3)
  assert os.path.exists(os.path.join(out, "report.json"))
  assert os.path.exists(os.path.join(out, "success_plot.png"))

  # --score_only on the files just written gives the same numbers (CLI).
  res = subprocess.run(
      [sys.executable, "evaluate.py", "--benchmark=otb", f"--dataset_dir={otb_sample}",
       f"--output_dir={out}", "--score_only", "--sequences=Crossing,Freeman1"],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, PYTHONPATH=ROOT))
  assert res.returncode == 0, res.stderr[-2000:]
  again = json.load(open(os.path.join(out, "report.json")))
  assert again["trackers"][name]["success_auc"] == pytest.approx(
      report["trackers"][name]["success_auc"])


def test_unknown_benchmark_and_protocol_fail_clearly(tiny, tmp_path):
  c, variables = tiny
  with pytest.raises(ValueError, match="unknown benchmark 'otb2013'"):
    evaluate_lib.evaluate_model(c, variables, "otb2013", str(tmp_path), str(tmp_path))
  with pytest.raises(ValueError, match="unknown protocol"):
    evaluate_lib.run_name("otb", protocol="eao")
  assert evaluate_lib.run_name("got10k") == "GOT-10k-val"
  assert evaluate_lib.run_name("got10k", split="test") == "GOT-10k-test"
  assert evaluate_lib.run_name("otb", protocol="vot") == "VOT2018"

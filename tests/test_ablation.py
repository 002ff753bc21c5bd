"""The ablation driver's config handling and table (the training itself is the trainer's)."""
import os
import subprocess
import sys

import pytest

from duml_jax import errors
from duml_jax.experiments import ablation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_same_budget_configs_with_overrides():
  cfgs = [ablation._config(arg, 300, {"batch_size": "8", "tracking.mu": "0.7",
                                      "data.synthetic.num_videos": "50"})
          for _, arg in ablation.FORMS]
  assert [(c.model.offline, c.model.online) for c in cfgs] == [
      ("OFC-5s", "none"), ("none", "ONR"), ("OFC-5s", "ONR")]
  for c in cfgs:
    assert c.num_train_steps == 300 and c.batch_size == 8 and c.tracking.mu == 0.7
    assert c.data.synthetic.num_videos == 50 and c.seed == cfgs[0].seed


def test_table_lists_forms_sweep_and_baseline():
  row = {"form": "DuML", "synthetic": {"success_auc": 0.61}, "synthetic_vot": {
      "accuracy": 0.7, "robustness": 1.5, "eao": float("nan")}, "real": {"success_auc": 0.2},
         "synthetic_keep_first": {"success_auc": 0.15}, "synthetic_vot_keep_first": {},
         "real_keep_first": {"success_auc": 0.08}}
  table = ablation.format_table({"rows": [row], "mu_sweep": [dict(row, form="DuML mu=0.5",
                                                                  mu=0.5)]})
  lines = table.strip().splitlines()
  assert lines[2] == "| DuML | 0.610 | 0.700 | 1.500 | - | 0.200 |"
  assert lines[3].startswith("| DuML mu=0.5 |")
  assert lines[4] == "| keep first box (baseline) | 0.150 | - | - | - | 0.080 |"


def test_bad_override_and_forms_fail_before_training_naming_them(tmp_path):
  with pytest.raises(errors.ConfigError, match=r"loss.w_onlien=1: no key 'w_onlien' in config.loss"):
    ablation._config("tiny", 300, {"loss.w_onlien": "1"})
  with pytest.raises(errors.ConfigError, match="DuML included"):
    ablation.run(str(tmp_path / "w"), 300, [0.8], "", forms=["ONR"])
  assert not (tmp_path / "w").exists()


def test_entry_point_prints_one_line_for_a_user_error(tmp_path):
  """`python -m duml_jax.experiments.ablation` goes through cli.run: status 2, one line."""
  res = subprocess.run(
      [sys.executable, "-m", "duml_jax.experiments.ablation", f"--workroot={tmp_path / 'w'}",
       "--set=loss.w_online"], cwd=ROOT, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert res.returncode == 2, res.stderr
  assert res.stderr.strip().splitlines()[0].endswith(
      "error: --set 'loss.w_online': expected KEY=VALUE (e.g. --set loss.w_online=1)")
  assert "Traceback" not in res.stderr and not (tmp_path / "w").exists()

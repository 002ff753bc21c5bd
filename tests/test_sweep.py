"""The Appendix C sweep: settings, traced parameters, per-setting results equal to separate
evaluate runs (VOT protocol and one-pass, static groups), resume, outputs.

The model is a random tiny DuML whose box deltas are scaled down (x 0.005): its boxes then stay
near the chosen anchor, so it follows the slowly moving target for a while and the settings
differ in failures and accuracy (with raw random weights every setting fails on the first
frame after each init, and a lane mix-up would go unnoticed).
"""
import json
import os
import shutil

import flax
import jax
import numpy as np
import pytest

from configs import duml as duml_config
from duml_jax.data import synthetic
from duml_jax.evaluation import evaluate_lib
from duml_jax.evaluation import sweep
from duml_jax.models import duml
from duml_jax.tracking import tracker as tracker_lib

SMALL = dict(memory_size=8, num_init_samples=3, init_iters=2)


@pytest.fixture(scope="module")
def tamed():
  """{'tiny': (config, variables), 'tiny-ofc5s': ...}: one model initialisation for both
  (OFC-5s takes DuML's variables without the online branch)."""
  out = {}
  for arg in ("tiny", "tiny-ofc5s"):
    c = evaluate_lib.with_tracking(duml_config.get_config(arg), SMALL, "otb")
    if not out:
      model = duml.build_model(c.model)
      v = duml.init_variables(model, jax.random.PRNGKey(0), c.model.exemplar_size,
                              c.model.search_size)
      p = flax.core.unfreeze(v["params"])
      for level in p["box_head"].values():
        if isinstance(level, dict):
          level["head2"] = jax.tree.map(lambda a: a * 0.005, level["head2"])
    else:
      online = ("online_features", "filter_init", "residual_fns")
      p = {k: a for k, a in p.items() if k not in online}
    out[arg] = (c, {**v, "params": p})
  return out


@pytest.fixture(scope="module")
def seq_dir(tmp_path_factory):
  """Two OTB-layout sequences (24 frames, 96 x 128): a 40 x 32 two-colour box moving slowly."""
  root = str(tmp_path_factory.mktemp("seqs"))
  for s in range(2):
    rng = np.random.default_rng(s)
    frames, boxes = [], []
    for t in range(24):
      img = rng.integers(40, 90, (96, 128, 3)).astype(np.uint8)
      x, y = 30 + 2 * t + 4 * s, 30 + t // 2
      img[y:y + 32, x:x + 40] = (220, 200, 60)
      img[y + 8:y + 24, x + 10:x + 30] = (40, 60, 200)
      frames.append(img)
      boxes.append([x, y, 40, 32])
    synthetic.write_sequence(root, f"sq{s}", frames, boxes)
  return root


# -- settings -------------------------------------------------------------------


def test_ranges_draws_are_seeded_typed_and_checked():
  c = duml_config.get_config("tiny")
  r = sweep.parse_ranges("window_influence=0.1:0.5; update_every=5:7")
  assert r == {"window_influence": (0.1, 0.5), "update_every": (5.0, 7.0)}
  a = sweep.sample_settings(c, r, 20, seed=3)
  assert a == sweep.sample_settings(c, r, 20, seed=3)
  assert a != sweep.sample_settings(c, r, 20, seed=4)
  assert all(0.1 <= s["window_influence"] <= 0.5 and round(s["window_influence"], 4) ==
             s["window_influence"] for s in a)
  assert {s["update_every"] for s in a} == {5, 6, 7}          # integers, both ends included
  assert all(isinstance(s["update_every"], int) for s in a)
  for bad in ("", "lr", "lr=0.5", "lr=0.5:0.1", "lr=a:b"):
    with pytest.raises(ValueError):
      sweep.parse_ranges(bad)
  with pytest.raises(KeyError, match="window_influense"):
    sweep.sample_settings(c, {"window_influense": (0., 1.)}, 2)
  with pytest.raises(ValueError, match="centre_from.*--grid"):
    sweep.sample_settings(c, {"centre_from": (0., 1.)}, 2)


def test_best_setting_flags_target_the_benchmark_entry_where_it_sets_the_key():
  c = duml_config.get_config("paper")
  assert "window_influence" in c.tracking.benchmarks.vot2018
  flags = sweep.setting_flags(c, {"window_influence": 0.3, "mu": 0.7}, "vot2018")
  assert flags == ["--config.tracking.benchmarks.vot2018.window_influence=0.3",
                   "--config.tracking.mu=0.7"]


def test_traced_split_keeps_shape_fields_static_and_merges_back():
  c = duml_config.get_config("tiny")
  p = tracker_lib.tracking_params(c)
  static, traced = sweep.split_params(p)
  assert set(traced) == set(sweep.TRACED) and static.window_influence is None
  assert static.search_size == p.search_size and static.memory_size == p.memory_size
  assert sweep.merge_params(static, traced) == p
  q = tracker_lib.tracking_params(c, window_influence=0.3, update_every=7)
  assert sweep.split_params(q)[0] == static                  # one compiled group
  assert sweep.split_params(tracker_lib.tracking_params(c, memory_size=p.memory_size + 1))[0] != static
  stacked = sweep.stack_traced([traced, sweep.split_params(q)[1]])
  assert stacked["update_every"].dtype == np.int32 and stacked["lr"].dtype == np.float32
  np.testing.assert_allclose(stacked["window_influence"], [p.window_influence, 0.3])


def test_refuses_a_folder_of_another_sweep_and_nano_configs(seq_dir, tmp_path):
  out = str(tmp_path / "out")
  sweep._check_meta(out, {"benchmark": "OTB", "variables": "abc"})
  sweep._check_meta(out, {"benchmark": "OTB", "variables": "abc"})   # same: accepted
  with pytest.raises(ValueError, match="another variables"):
    sweep._check_meta(out, {"benchmark": "OTB", "variables": "abd"})
  from configs import duml_nano  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match="DuML configs"):
    sweep.run_sweep(duml_nano.get_config("nanotrack"), None, "otb", seq_dir, out, [{}])


# -- the sweep against separate evaluate runs -----------------------------------


VOT_SETTINGS = [dict(window_influence=0.875, lr=0.125, update_every=5),
                dict(window_influence=0.5, penalty_k=0.25, update_every=3)]


@pytest.fixture(scope="module")
def vot_sweep(seq_dir, tamed, tmp_path_factory):
  c, v = tamed["tiny"]
  out = str(tmp_path_factory.mktemp("sweep") / "out")
  summary = sweep.run_sweep(c, v, "otb", seq_dir, out, VOT_SETTINGS, protocol="vot",
                            settings_per_chunk=2, batch_sequences=2)
  return c, v, out, summary


def test_vot_sweep_equals_separate_evaluate_runs(vot_sweep, seq_dir, tmp_path):
  c, v, out, summary = vot_sweep
  assert summary["benchmark"] == "otb (vot protocol)" and summary["num_settings"] == 2
  got = summary["settings"]
  for i, values in enumerate(VOT_SETTINGS):
    report = evaluate_lib.evaluate_model(
        evaluate_lib.with_tracking(c, values, "otb"), v, "otb", seq_dir, str(tmp_path / str(i)),
        protocol="vot", name="one", plot=False)
    ref = report["trackers"]["one"]
    assert got[i]["values"] == values
    assert got[i]["failures"] == ref["failures"], i
    assert got[i]["robustness"] == pytest.approx(ref["robustness"])
    # float32: the sweep's lanes are batched differently (see `adapter` tests).
    assert got[i]["accuracy"] == pytest.approx(ref["accuracy"], abs=2e-3), i
    for seq, r in ref["sequences"].items():
      assert json.load(open(os.path.join(got[i]["dir"], "score.json")))["failures"] == \
          got[i]["failures"]
      assert r["failures"] == pytest.approx(
          _sequence_failures(got[i]["dir"], seq)), (i, seq)
  # The two settings behave differently (else the comparison could not see a mix-up).
  assert (got[0]["failures"], round(got[0]["accuracy"], 3)) != (
      got[1]["failures"], round(got[1]["accuracy"], 3))
  assert got[0]["accuracy"] > 0.


def _sequence_failures(run_dir, seq):
  path = os.path.join(run_dir, sweep.TRACKER_NAME, "baseline", seq, f"{seq}_001.txt")
  return sum(1 for line in open(path) if line.strip() == "2")


def test_vot_sweep_outputs_cumulative_means_plot_and_best(vot_sweep):
  _, _, out, summary = vot_sweep
  on_disk = json.load(open(os.path.join(out, "sweep.json")))
  assert on_disk["cumulative"] == summary["cumulative"]
  a = [e["accuracy"] for e in summary["settings"]]
  r = [e["robustness"] for e in summary["settings"]]
  assert summary["cumulative"]["accuracy"] == pytest.approx([a[0], (a[0] + a[1]) / 2])
  assert summary["cumulative"]["robustness"] == pytest.approx([r[0], (r[0] + r[1]) / 2])
  assert summary["mean"]["failures"] == pytest.approx(
      np.mean([e["failures"] for e in summary["settings"]]))
  # 24-frame sequences are shorter than VOT2018's EAO range: EAO is None, accuracy decides.
  assert summary["mean"]["eao"] is None and on_disk["best"]["eao"] is None
  best = max(summary["settings"], key=lambda e: e["accuracy"])
  assert summary["best"]["index"] == best["index"]
  assert summary["best"]["flags"] == [f"--config.tracking.{k}={v:g}"
                                      for k, v in best["values"].items()]
  assert os.path.getsize(os.path.join(out, "cumulative.png")) > 1000
  text = sweep.format_summary(summary)
  assert "--config.tracking.window_influence" in text and "mean accuracy" in text


def test_killed_sweep_resumes_only_what_is_missing(vot_sweep, seq_dir, tmp_path, monkeypatch):
  c, v, out, summary = vot_sweep
  again = str(tmp_path / "again")
  shutil.copytree(out, again)
  # Killed while setting 1 was tracking sq1: its score and that result file are missing.
  run1 = os.path.join(again, "runs", os.path.basename(summary["settings"][1]["dir"]))
  os.remove(os.path.join(run1, "score.json"))
  shutil.rmtree(os.path.join(run1, sweep.TRACKER_NAME, "baseline", "sq1"))
  calls = []
  real = sweep._run_chunk

  def recording(model, variables, static, traced, dirs, sequences, fmt, **kw):
    calls.append([os.path.relpath(d, again) for d in dirs])
    return real(model, variables, static, traced, dirs, sequences, fmt, **kw)

  monkeypatch.setattr(sweep, "_run_chunk", recording)
  seen = []
  write_vot = sweep.writers.write_vot
  monkeypatch.setattr(sweep.writers, "write_vot",
                      lambda d, seq, *a, **k: seen.append(seq) or write_vot(d, seq, *a, **k))
  resumed = sweep.run_sweep(c, v, "otb", seq_dir, again, VOT_SETTINGS,
                            protocol="vot", settings_per_chunk=2, batch_sequences=2)
  assert calls == [[os.path.relpath(os.path.join(run1, sweep.TRACKER_NAME), again)]]
  assert seen == ["sq1"]                                    # sq0 of setting 1 was kept
  for a, b in zip(resumed["settings"], summary["settings"]):
    assert a["failures"] == b["failures"]
    assert a["accuracy"] == pytest.approx(b["accuracy"], abs=1e-6)
  # Nothing left: a third run tracks nothing; more settings reuse the scored ones.
  calls.clear()
  sweep.run_sweep(c, v, "otb", seq_dir, again, VOT_SETTINGS[::-1], protocol="vot")
  assert calls == []


def test_one_pass_sweep_with_static_groups_equals_separate_runs(seq_dir, tamed, tmp_path):
  """AUC on the one-pass protocol; `search_size` is static (a shape): two compiled groups."""
  c, v = tamed["tiny-ofc5s"]
  settings = [dict(window_influence=0.875),
              dict(window_influence=0.875, search_size=119),
              dict(window_influence=0.25, lr=0.5)]
  summary = sweep.run_sweep(c, v, "otb", seq_dir, str(tmp_path / "out"), settings,
                            settings_per_chunk=4, batch_sequences=1, plot=False)
  assert summary["best"]["index"] == int(np.argmax([e["success_auc"]
                                                    for e in summary["settings"]]))
  for i in (1,):          # the other group's traced values are compared in the VOT test
    report = evaluate_lib.evaluate_model(
        evaluate_lib.with_tracking(c, settings[i], "otb"), v, "otb", seq_dir,
        str(tmp_path / str(i)), name="one", plot=False)
    ref = report["trackers"]["one"]
    for k in ("success_auc", "precision"):
      assert summary["settings"][i][k] == pytest.approx(ref[k], abs=2e-3), (i, k)
  aucs = [e["success_auc"] for e in summary["settings"]]
  assert len({round(a, 3) for a in aucs}) == 3

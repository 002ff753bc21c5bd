"""evaluate.py with NanoTrack / DuML-nano configs (`configs/duml_nano.py`).

Config presets, overrides and their errors; the library path of evaluate.py
(`evaluate_lib.config_and_variables` + `evaluate_model`) end to end on a
2-sequence x 10-frame OTB-layout folder cut from the OTB sample: result files
in OTB format, report with every tracker, the NanoTrack config's boxes equal
to `nanotrack_tracker.NanoTracker`'s, cv2.TrackerNano as a baseline, DuML-nano
with meta-trained online params from a checkpoint; the CLI. Tests needing the
weights or frames skip (via `shared_dir` / `otb_sample`) when ../shared is absent.
"""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import duml_nano as nano_config
from duml_jax.convert import nanotrack as nano_convert
from duml_jax.data import benchmarks
from duml_jax.data import frames as frames_lib
from duml_jax import errors
from duml_jax.evaluation import baselines
from duml_jax.evaluation import evaluate_lib
from duml_jax.evaluation import metrics
from duml_jax.evaluation import nano
from duml_jax.models import duml_nano as dn
from duml_jax.tracking import nanotrack_tracker as ntt
from duml_jax.training import meta_nano

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEQS = ("Crossing", "MotorRolling")
FRAMES = 10


# ------------------------------------------------------------------- config ----


def test_presets_and_overrides():
  c = nano_config.get_config("nanotrack")
  assert (c.tracker, c.tracking.nanotrack.version) == ("nanotrack", "v2")
  assert "mu" not in c.tracking and "online_params" not in c.model
  assert c.model.weights == str(nano_convert.default_weights_dir())
  assert c.model.weights.endswith(os.path.join("shared", "weights", "nanotrack"))
  assert os.path.isabs(c.model.weights)
  d = nano_config.get_config(None)
  assert (d.name, d.tracker, d.tracking.mu, d.tracking.score_voting,
          d.tracking.offline_temperature, d.tracking.online_norm) == (
      "duml_nano", "duml_nano", 0.5, True, 3.0, "minmax")
  assert d.model.online_params == ""
  c = nano_config.get_config("duml_nano,mu=0.8,voting=0,version=v1,online_params=/x/meta")
  assert (c.tracking.mu, c.tracking.score_voting, c.tracking.nanotrack.version,
          c.model.online_params) == (0.8, False, "v1", "/x/meta")
  assert nano_config.get_config("onr").tracking.mu == 1.0
  assert nano_config.get_config("nanotrack,weights=/w").model.weights == "/w"
  assert nano_config.get_config("nanotrack").tracking.crop == "device"
  assert nano_config.get_config("nanotrack,crop=host").tracking.crop == "host"
  # The names say what runs.
  assert nano.tracker_name(nano_config.get_config("nanotrack")) == "NanoTrack-JAX-v2"
  assert evaluate_lib.tracker_name(nano_config.get_config("onr,voting=0")) == (
      "DuMLnano-v2-init-mu1")
  assert evaluate_lib.tracker_name(nano_config.get_config(
      "duml_nano,online_params=/m")) == "DuMLnano-v2-meta-mu0.5-T3-vote"
  one = nano_config.get_config("duml_nano,mu=0.8")
  one.unlock()
  one.tracking.offline_temperature = 1.
  assert evaluate_lib.tracker_name(one) == "DuMLnano-v2-init-mu0.8-vote"
  # mu 0 is the offline branch alone at its temperature: named by it.
  assert evaluate_lib.tracker_name(nano_config.get_config("duml_nano,mu=0,voting=0")) == (
      "DuMLnano-v2-init-mu0-T3")
  # Another online layer is named too, and builds the model that reads it.
  c = nano_config.get_config("duml_nano,online_layer=output+block3")
  assert c.model.online_layer == "output+block3"
  assert evaluate_lib.tracker_name(c) == "DuMLnano-v2-init-mu0.5-outputblock3-T3-vote"
  assert nano.build_model(c).online_layer == "output+block3"
  assert nano.build_model(nano_config.get_config("duml_nano")).online_layer == "output"


@pytest.mark.parametrize("arg,match", [
    ("duml_nano,mux=0.3", "unknown key 'mux'"),
    ("nanotrack,mu=0.5", "'mu' does not apply to the 'nanotrack' preset"),
    ("nanotrack,online_params=/m", "'online_params' does not apply"),
    ("nanotrak", "unknown preset 'nanotrak'"),
    ("duml_nano,mu=1.5", "mu=1.5 outside"),
    ("duml_nano,mu=abc", "mu='abc'"),
    ("duml_nano,version=v9", "version='v9'"),
    ("duml_nano,onr", "'onr' must be key=value"),
    ("nanotrack,crop=gpu", r"crop='gpu'; allowed: \('device', 'host'\)"),
    ("duml_nano,online_layer=block9", r"online_layer='block9'; allowed: \['block3', "),
    ("nanotrack,online_layer=block3", "'online_layer' does not apply"),
    ("duml_nano,crop=host", "'crop' does not apply to the 'duml_nano' preset "
                            r"\(only the 'nanotrack' tracker has a host crop\)"),
])
def test_config_errors_name_the_key(arg, match):
  with pytest.raises(ValueError, match=match):
    nano_config.get_config(arg)


def test_locked_config_and_bad_inputs_fail_clearly(tmp_path):
  c = nano_config.get_config("duml_nano")
  with pytest.raises(AttributeError, match="mux"):
    c.tracking.mux = 0.3                      # --config.tracking.mux=... fails the same way
  missing = tmp_path / "no_weights"
  c = nano_config.get_config(f"nanotrack,weights={missing}")
  with pytest.raises(FileNotFoundError, match=f"config.model.weights=.*{missing}"):
    nano.load_variables(c)
  with pytest.raises(ValueError, match="no online branch"):
    evaluate_lib.config_and_variables(nano_config.get_config("nanotrack"), str(tmp_path))
  with pytest.raises(ValueError, match="step=3"):
    evaluate_lib.config_and_variables(nano_config.get_config("onr"), None, 3)
  with pytest.raises(ValueError, match="disagree"):
    nano.with_online_params(nano_config.get_config("onr,online_params=/a"), "/b")
  with pytest.raises(ValueError, match="unknown baseline 'cv3_nano'"):
    baselines.make("cv3_nano")
  assert not nano.is_online_workdir(tmp_path)
  c = nano_config.get_config("nanotrack")
  c.tracker = "nanotrak"                    # e.g. --config.tracker=nanotrak
  with pytest.raises(ValueError, match="config.tracker='nanotrak'"):
    evaluate_lib.make_tracker(c, {})
  c = nano_config.get_config("duml_nano")
  c.model.online_layer = "block9"           # --config.model.online_layer=block9
  with pytest.raises(ValueError, match="config.model.online_layer='block9'"):
    evaluate_lib.make_tracker(c, {})
  c = nano_config.get_config("nanotrack")
  c.tracking.crop = "gpu"                   # --config.tracking.crop=gpu
  with pytest.raises(ValueError, match="config.tracking.crop='gpu'"):
    evaluate_lib.make_tracker(c, {})


# ---------------------------------------------------------------- real data ----


@pytest.fixture(scope="module")
def weights(shared_dir):
  d = shared_dir / "weights" / "nanotrack"
  if not (d / "nanotrackv2_nanotrack_backbone_sim.onnx").is_file():
    pytest.skip(f"{d}: NanoTrack weights not found")
  return d


@pytest.fixture(scope="module")
def mini_otb(otb_sample, tmp_path_factory):
  """An OTB-layout folder: the first FRAMES frames (symlinked) and boxes of SEQS."""
  root = tmp_path_factory.mktemp("otb_mini")
  for name in SEQS:
    src = otb_sample / name
    (root / name / "img").mkdir(parents=True)
    for f in sorted((src / "img").glob("*.jpg"))[:FRAMES]:
      os.symlink(f, root / name / "img" / f.name)
    lines = (src / "groundtruth_rect.txt").read_text().splitlines()[:FRAMES]
    (root / name / "groundtruth_rect.txt").write_text("\n".join(lines) + "\n")
  return root


def _results(out, tracker, seq):
  """0-based [x, y, w, h] rows of an OTB result file (written 1-based)."""
  rows = np.loadtxt(os.path.join(out, tracker, f"{seq}.txt"), delimiter=",", ndmin=2)
  rows[:, :2] -= 1.
  return rows


def test_nanotrack_config_through_evaluate(mini_otb, weights, tmp_path):
  out = str(tmp_path / "out")
  config, variables = evaluate_lib.config_and_variables(
      nano_config.get_config(f"nanotrack,weights={weights}"))
  report = evaluate_lib.evaluate_model(config, variables, "otb", str(mini_otb), out,
                                       baseline_names=("keep_first", "cv2_nano"))
  name = "NanoTrack-JAX-v2"
  assert set(report["trackers"]) == {name, "KeepFirstBox", "NanoTrack-cv2-v2"}
  for t in report["trackers"].values():
    assert set(t["sequences"]) == set(SEQS)
    assert 0. <= t["success_auc"] <= 1.
  assert os.path.exists(os.path.join(out, "report.json"))
  assert os.path.exists(os.path.join(out, "success_plot.png"))
  for seq in benchmarks.load_benchmark("otb", mini_otb):
    ours = _results(out, name, seq.name)
    assert ours.shape == (FRAMES, 4)
    np.testing.assert_allclose(ours[0], seq.boxes[0], atol=1e-3)   # frame 0: the init box
    # The same boxes as the tracker class run directly (to the files' 3 decimals).
    ref = ntt.NanoTracker(variables)
    frames = [frames_lib.read_frame(f) for f in seq.frames]
    ref.init(frames[0], np.asarray(seq.boxes[0]))
    direct = np.array([ref.update(f)[0] for f in frames[1:]])
    np.testing.assert_allclose(ours[1:], direct, atol=6e-4)
    # cv2.TrackerNano (int boxes) as the baseline: within a pixel of ours.
    cv = _results(out, "NanoTrack-cv2-v2", seq.name)
    assert np.abs(cv[1:] - ours[1:]).max() < 1. + 1e-3, seq.name
  # tracking.crop=host (OpenCV crop on the host): the same result files, byte for byte.
  host_config, _ = evaluate_lib.config_and_variables(
      nano_config.get_config(f"nanotrack,crop=host,weights={weights}"))
  assert evaluate_lib.make_single_tracker(host_config, variables).crop == "host"
  host_out = str(tmp_path / "out_host")
  evaluate_lib.evaluate_model(host_config, variables, "otb", str(mini_otb), host_out, plot=False)
  for seq in SEQS:
    with open(os.path.join(out, name, f"{seq}.txt")) as a, \
         open(os.path.join(host_out, name, f"{seq}.txt")) as b:
      assert a.read() == b.read(), seq


def test_duml_nano_configs_with_a_meta_checkpoint(mini_otb, weights, tmp_path):
  """DuML-nano (mu 0.8, voting) and ONR alone (onr) from a meta_nano workdir."""
  meta = tmp_path / "meta"
  meta.mkdir()
  online = dn.init_online_params(dn.build("v2"), jax.random.PRNGKey(0))
  online["residual_fns"]["filter_reg"] = online["residual_fns"]["filter_reg"] * 2.
  meta_nano.save_online_params(meta, online)
  assert nano.is_online_workdir(meta) and nano.is_online_workdir(meta / meta_nano.PARAMS_FILE)
  out = str(tmp_path / "out")
  names = []
  for arg in ("duml_nano,mu=0.8", "onr"):
    config, variables = evaluate_lib.config_and_variables(
        nano_config.get_config(f"{arg},weights={weights}"), str(meta))
    assert config.model.online_params == str(meta)
    np.testing.assert_array_equal(variables["params"]["residual_fns"]["filter_reg"],
                                  online["residual_fns"]["filter_reg"])     # loaded, not fresh
    report = evaluate_lib.evaluate_model(config, variables, "otb", str(mini_otb), out,
                                         sequences=["Crossing"], plot=False)
    names.append(evaluate_lib.tracker_name(config))
    assert names[-1] in report["trackers"]
    rows = _results(out, names[-1], "Crossing")
    assert rows.shape == (FRAMES, 4) and np.all(np.isfinite(rows))
  assert names == ["DuMLnano-v2-meta-mu0.8-T3-vote", "DuMLnano-v2-meta-mu1-vote"]
  # The fused map moves the box: mu 0.8 and ONR alone do not track alike.
  assert np.abs(_results(out, names[0], "Crossing") - _results(out, names[1], "Crossing")).max() > 0


def test_meta_version_mismatch_fails(weights, tmp_path):
  meta_nano.save_online_params(tmp_path, dn.init_online_params(dn.build("v2"),
                                                               jax.random.PRNGKey(0)))
  (tmp_path / meta_nano.LOG_FILE).write_text(json.dumps({"config": {"version": "v2"}}))
  c = nano_config.get_config(f"duml_nano,version=v1,weights={weights},online_params={tmp_path}")
  with pytest.raises(ValueError, match="meta-trained on NanoTrack v2"):
    nano.load_variables(c)
  (tmp_path / meta_nano.LOG_FILE).write_text(json.dumps({"config": {"version": "v2",
                                                                    "online_layer": "output"}}))
  c = nano_config.get_config(f"duml_nano,online_layer=block3,weights={weights},"
                             f"online_params={tmp_path}")
  with pytest.raises(ValueError, match="meta-trained on online_layer='output'"):
    nano.load_variables(c)


def test_cli(mini_otb, weights, tmp_path):
  out = str(tmp_path / "cli")
  cmd = [sys.executable, "evaluate.py", f"--config=configs/duml_nano.py:nanotrack,weights={weights}",
         "--benchmark=otb", f"--dataset_dir={mini_otb}", f"--output_dir={out}",
         "--sequences=Crossing", "--baselines=keep_first"]
  env = dict(os.environ, PYTHONPATH=ROOT)
  res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
  assert res.returncode == 0, res.stderr[-3000:]
  assert "NanoTrack-JAX-v2" in res.stdout
  report = json.load(open(os.path.join(out, "report.json")))
  assert set(report["trackers"]) == {"NanoTrack-JAX-v2", "KeepFirstBox"}
  # Video mode with the same config (a folder of frames).
  seq = benchmarks.load_benchmark("otb", mini_otb, sequences=["Crossing"])[0]
  box = ",".join(f"{v:g}" for v in seq.boxes[0])
  vid = subprocess.run(cmd[:3] + [f"--video={mini_otb / 'Crossing' / 'img'}", f"--init_box={box}",
                                  f"--output_dir={tmp_path / 'video'}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
  assert vid.returncode == 0, vid.stderr[-3000:]
  boxes = np.loadtxt(tmp_path / "video" / "img_nanotrack.txt", delimiter=",")
  assert boxes.shape == (FRAMES, 4)
  np.testing.assert_allclose(boxes[1:], _results(out, "NanoTrack-JAX-v2", "Crossing")[1:],
                             atol=6e-3)   # both written rounded (%.2f, %.3f)
  bad = subprocess.run(cmd[:2] + ["--config=configs/duml_nano.py:nanotrack,bogus=1"] + cmd[3:],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
  assert bad.returncode != 0 and "unknown key 'bogus'" in bad.stderr
  shift = subprocess.run(cmd + ["--init_shift=1"], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env=env)
  assert shift.returncode == 2 and "--init_shift=1: expected two" in shift.stderr


def test_init_shift(mini_otb, weights, tmp_path):
  # Every init box moved by (2, -1) px, the ground truth scored as it is; folders say so.
  out = str(tmp_path / "shift")
  config, variables = evaluate_lib.config_and_variables(
      nano_config.get_config(f"nanotrack,weights={weights}"))
  report = evaluate_lib.evaluate_model(config, variables, "otb", str(mini_otb), out, plot=False,
                                       sequences=["Crossing"], baseline_names=("keep_first",),
                                       init_shift=(2., -1.))
  name = "NanoTrack-JAX-v2-shift2_-1"
  assert set(report["trackers"]) == {name, "KeepFirstBox-shift2_-1"}
  seq = benchmarks.load_benchmark("otb", mini_otb, sequences=["Crossing"])[0]
  start = seq.boxes[0] + np.asarray([2., -1., 0., 0.])
  keep = _results(out, "KeepFirstBox-shift2_-1", "Crossing")
  np.testing.assert_allclose(keep, np.tile(start, (FRAMES, 1)), atol=1e-3)
  ref = ntt.NanoTracker(variables)
  frames = [frames_lib.read_frame(f) for f in seq.frames]
  ref.init(frames[0], start)
  direct = np.array([ref.update(f)[0] for f in frames[1:]])
  np.testing.assert_allclose(_results(out, name, "Crossing")[1:], direct, atol=6e-4)
  settings = json.load(open(os.path.join(out, name, "settings.json")))
  assert settings["init_shift"] == [2., -1.]
  # Scored against the unshifted ground truth (frame 0 counts as the ground truth).
  iou = metrics.rect_iou(keep[1:], seq.boxes[1:])
  want = metrics.one_pass_curves(np.concatenate([seq.boxes[:1], keep[1:]]), seq.boxes)
  assert report["trackers"]["KeepFirstBox-shift2_-1"]["success_auc"] == pytest.approx(
      float(want.success.mean()), abs=1e-6)
  assert iou.min() < 1.
  with pytest.raises(errors.UserError, match="one-pass runs only"):
    evaluate_lib.evaluate_model(config, variables, "otb", str(mini_otb), str(tmp_path / "v"),
                                protocol="vot", init_shift=(1., 0.))

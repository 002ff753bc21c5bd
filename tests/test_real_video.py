"""scripts/real_video.sh end to end on 2 real sequences x 20 frames, and its summary."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from duml_jax.evaluation import real_video
from tests import jax_cache

REPO = pathlib.Path(__file__).resolve().parents[1]
FRAMES = 20     # the CI size: 2 sequences x 20 frames


def _entry(aucs):
  return {"success_auc": sum(aucs.values()) / len(aucs), "precision": 0.5,
          "sequences": {s: {"success_auc": v, "precision": 0.5} for s, v in aucs.items()}}


def test_summary_names_and_paired_difference():
  rep = {"benchmark": "OTB", "trackers": {
      "NanoTrack-cv2-v2": _entry({"a": 0.5, "b": 0.6}),
      "NanoTrack-JAX": _entry({"a": 0.5, "b": 0.6}),
      "DuML-nano": _entry({"a": 0.6, "b": 0.55})}}
  s = real_video.summarise(rep)
  assert list(s["trackers"]) == ["NanoTrack-cv2", "NanoTrack-JAX", "DuML-nano"]
  p = s["duml_nano_vs_nanotrack_jax"]
  assert p["differences"] == pytest.approx({"a": 0.1, "b": -0.05})
  assert p["worst_sequence"] == "b"
  text = real_video.table(s)
  assert "+10.0" in text and "-5.0" in text and "DuML-nano - NanoTrack-JAX" in text
  # A second start (evaluate.py --init_shift=1,0): each sequence is the mean over starts.
  rep["trackers"].update({"NanoTrack-cv2-v2-shift1_0": _entry({"a": 0.3, "b": 0.6}),
                          "NanoTrack-JAX-shift1_0": _entry({"a": 0.3, "b": 0.4}),
                          "DuML-nano-shift1_0": _entry({"a": 0.6, "b": 0.45})})
  s = real_video.summarise(rep)
  assert s["starts"] == ["plain", "1,0"]
  jax_entry = s["trackers"]["NanoTrack-JAX"]
  assert jax_entry["result_folders"] == ["NanoTrack-JAX", "NanoTrack-JAX-shift1_0"]
  assert jax_entry["sequences"]["a"]["success_auc_per_start"] == [0.5, 0.3]
  assert jax_entry["success_auc"] == pytest.approx((0.4 + 0.5) / 2)
  assert s["duml_nano_vs_nanotrack_jax"]["differences"] == pytest.approx({"a": 0.2, "b": 0.})
  assert "mean over 2 starts" in real_video.table(s)
  # A tracker missing a start is an error, not a mean over fewer runs.
  del rep["trackers"]["DuML-nano-shift1_0"]
  with pytest.raises(KeyError, match="different starts"):
    real_video.summarise(rep)
  del rep["trackers"]["DuML-nano"]
  with pytest.raises(KeyError, match="DuML-nano"):
    real_video.summarise(rep)


def test_summary_online_branch_ablation():
  # DuML-nano-offline (mu 0) is its own entry, not a start of DuML-nano, and is paired with it.
  rep = {"benchmark": "OTB", "trackers": {
      "NanoTrack-cv2-v2": _entry({"a": 0.5, "b": 0.6}),
      "NanoTrack-JAX": _entry({"a": 0.5, "b": 0.6}),
      "DuML-nano": _entry({"a": 0.6, "b": 0.55}),
      "DuML-nano-offline": _entry({"a": 0.65, "b": 0.5}),
      "DuML-nano-shift1_0": _entry({"a": 0.6, "b": 0.55}),
      "NanoTrack-cv2-v2-shift1_0": _entry({"a": 0.5, "b": 0.6}),
      "NanoTrack-JAX-shift1_0": _entry({"a": 0.5, "b": 0.6}),
      "DuML-nano-offline-shift1_0": _entry({"a": 0.55, "b": 0.5})}}
  s = real_video.summarise(rep)
  assert list(s["trackers"]) == ["NanoTrack-cv2", "NanoTrack-JAX", "DuML-nano",
                                 "DuML-nano-offline"]
  assert s["trackers"]["DuML-nano"]["result_folders"] == ["DuML-nano", "DuML-nano-shift1_0"]
  p = s["duml_nano_vs_offline"]
  assert p["differences"] == pytest.approx({"a": 0.0, "b": 0.05})
  assert "(the online branch)" in real_video.table(s)
  del rep["trackers"]["DuML-nano-offline-shift1_0"]
  with pytest.raises(KeyError, match="different starts"):
    real_video.summarise(rep)


def _subset(src, dst, names):
  for name in names:
    (dst / name / "img").mkdir(parents=True)
    frames = sorted((src / name / "img").iterdir())[:FRAMES]
    for f in frames:
      shutil.copy(f, dst / name / "img" / f.name)
    rows = (src / name / "groundtruth_rect.txt").read_text().splitlines()[:FRAMES]
    (dst / name / "groundtruth_rect.txt").write_text("\n".join(rows) + "\n")


def test_real_video_script_end_to_end(otb_sample, shared_dir, tmp_path):
  weights = shared_dir / "weights" / "nanotrack"
  if not weights.is_dir():
    pytest.skip(f"{weights} not found: the NanoTrack weights are unavailable")
  data = tmp_path / "data"
  _subset(otb_sample, data, ["Crossing", "Freeman1"])
  env = dict(os.environ, DUML_PYTHON=sys.executable, NANO_WEIGHTS=str(weights),
             REAL_TRAIN=str(tmp_path / "no_real_train"), META_STEPS="1", META_BATCH="1",
             META_SYNTH_VIDEOS="2", META_SYNTH_FRAMES="12", JAX_PLATFORMS="cpu",
             **jax_cache.ENV)

  def run(out, **extra):
    r = subprocess.run(["bash", str(REPO / "scripts" / "real_video.sh"), str(data), str(out)],
                       env=dict(env, **extra), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r

  # The recommended DuML-nano (closed-form online start): nothing trained; two starts.
  out = tmp_path / "out"
  r = run(out, INIT_SHIFTS="1.0,0")
  rep = json.loads((out / "report.json").read_text())
  assert set(rep["trackers"]) == {"NanoTrack-cv2", "NanoTrack-JAX", "DuML-nano",
                                  "DuML-nano-offline"}
  assert rep["starts"] == ["plain", "1,0"]
  for t in rep["trackers"].values():
    assert set(t["sequences"]) == {"Crossing", "Freeman1"}
    assert 0. <= t["success_auc"] <= 1.
    assert all(len(v["success_auc_per_start"]) == 2 for v in t["sequences"].values())
  assert "DuML-nano - NanoTrack-JAX" in r.stdout and "Crossing" in r.stdout
  assert "(the online branch)" in r.stdout
  settings = json.loads((out / "results" / "DuML-nano-offline" / "settings.json").read_text())
  assert settings["config"]["tracking"]["mu"] == 0.
  assert not (out / "meta").exists()
  # Meta-trained online pieces (trained under OUT_DIR/meta, reused on rerun), at half the
  # frame rate: every 2nd frame, its own results folder and report.
  out = tmp_path / "out_meta"
  run(out, DUML_NANO_META="1", FRAME_STRIDE="2")
  params = out / "meta" / "online_params.npz"
  assert params.is_file()
  rep = json.loads((out / "report-every2.json").read_text())
  assert "--checkpoint" in rep["duml_nano_config"] and rep["frame_stride"] == 2
  assert len(list((out / "data-every2" / "Crossing" / "img").iterdir())) == FRAMES // 2
  assert (out / "results-every2" / "DuML-nano").is_dir() and not (out / "results").exists()
  mtime = params.stat().st_mtime
  r = run(out, DUML_NANO_META="1", FRAME_STRIDE="2")
  assert "reusing" in r.stdout and params.stat().st_mtime == mtime
  assert "one frame in 2 of each sequence" in r.stdout

"""Frames/s of DuML-nano vs the plain JAX NanoTrack tracker and cv2.TrackerNano.

Same frames, same process, same weights (NanoTrack v2). Prints one JSON
object. Frames are decoded before timing; compile time (first init + first
track) is reported apart; every step is waited for (numpy boxes). DuML-nano
runs with its default config (mu 0.5, NanoTrack's score at temperature 3, score
voting, re-detection) and the paper's schedule (10 init samples and 10
init SD-GN steps, 2 steps every 20 frames), so its per-frame time averages
the update frames in; its init (10 augmented crops through the backbone + 10
steps) is timed on its own. Companion of `benchmarks/nanotrack_speed.py`
(JAX vs OpenCV NanoTrack alone).

  PYTHONPATH=. python benchmarks/duml_nano_speed.py [--sequence ../shared/data/otb_sample/MotorRolling]
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import time

import cv2
import jax
import numpy as np

from duml_jax.convert.nanotrack import load_nanotrack
from duml_jax.data import benchmarks
from duml_jax.models import duml_nano as dn
from duml_jax.tracking import duml_nano_tracker as dnt
from duml_jax.tracking import nanotrack_tracker as ntt

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def _time(tracker, frames, box):
  """(compile_s, init_s, per-frame seconds) of a host tracker."""
  t0 = time.perf_counter()
  tracker.init(frames[0], box)
  tracker.update(frames[1])
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  tracker.init(frames[0], box)
  jax.block_until_ready(jax.tree.leaves(tracker.state))
  init_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for f in frames[1:]:
    tracker.update(f)
  return compile_s, init_s, (time.perf_counter() - t0) / (len(frames) - 1)


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--sequence", default=str(SHARED / "data" / "otb_sample" / "MotorRolling"))
  ap.add_argument("--weights", default=str(SHARED / "weights" / "nanotrack"))
  ap.add_argument("--frames", type=int, default=0, help="0: all")
  args = ap.parse_args()
  seq_dir = pathlib.Path(args.sequence)
  seq = benchmarks.load_benchmark("otb", seq_dir.parent, sequences=[seq_dir.name])[0]
  paths = seq.frames[:args.frames] if args.frames else seq.frames
  bgr = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]
  rgb = [np.ascontiguousarray(f[..., ::-1]) for f in bgr]
  box = np.round(np.asarray(seq.boxes[0], np.float64))
  weights = pathlib.Path(args.weights)
  nano = load_nanotrack(weights, "v2")

  res = {}
  c, i, per = _time(ntt.NanoTracker(nano), rgb, box)
  res["jax_nanotrack"] = dict(compile_s=round(c, 2), init_ms=round(1e3 * i, 1),
                              ms_per_frame=round(1e3 * per, 2), fps=round(1 / per, 1))
  model = dn.build("v2")
  variables = dn.from_nanotrack(nano, dn.init_online_params(model, jax.random.PRNGKey(0)))
  for name, kw in (("duml_nano_default", {}), ("duml_nano_mu0", dict(mu=0., score_voting=False))):
    t = dnt.DuMLNanoTracker(model, variables, dnt.params(dnt.default_config(), **kw))
    c, i, per = _time(t, rgb, box)
    res[name] = dict(
        compile_s=round(c, 2), init_ms=round(1e3 * i, 1), ms_per_frame=round(1e3 * per, 2),
        fps=round(1 / per, 1), filter_updates=int(t.state.num_updates))

  params = cv2.TrackerNano_Params()
  params.backbone = str(weights / "nanotrackv2_nanotrack_backbone_sim.onnx")
  params.neckhead = str(weights / "nanotrackv2_nanotrack_head_sim.onnx")
  ref = cv2.TrackerNano_create(params)
  rect = tuple(int(v) for v in box)
  t0 = time.perf_counter()
  ref.init(bgr[0], rect)
  init_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for f in bgr[1:]:
    ref.update(f)
  per = (time.perf_counter() - t0) / (len(bgr) - 1)
  res["cv2_nanotrack"] = dict(init_ms=round(1e3 * init_s, 1), ms_per_frame=round(1e3 * per, 2),
                              fps=round(1 / per, 1))
  base = res["jax_nanotrack"]["ms_per_frame"]
  print(json.dumps({
      "benchmark": "duml_nano_speed",
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "device": str(jax.devices()[0]), "cpu_count": os.cpu_count(),
      "machine": platform.machine(), "jax_version": jax.__version__,
      "opencv_version": cv2.__version__, "load_average_1min": round(os.getloadavg()[0], 2),
      "sequence": seq.name, "frame_hw": list(rgb[0].shape[:2]),
      "tracked_frames": len(rgb) - 1, **res,
      "duml_nano_over_jax_nanotrack_ms": round(
          res["duml_nano_default"]["ms_per_frame"] - base, 2),
  }))


if __name__ == "__main__":
  main()

"""Where the JAX NanoTrack tracker's per-frame time goes, next to cv2.TrackerNano's.

Times, in one process, each stage of a tracked frame separately -- the
search crop, the backbone, the head, the post-processing, the whole jitted
step and the host wrapper (`NanoTracker.update`: frame to device, step, box
back) -- and the matching OpenCV pieces: its crop (``copyMakeBorder`` +
``resize``, what ``cv2.TrackerNano`` does), the backbone and head ONNX graphs
through ``cv2.dnn`` and the whole ``TrackerNano.update``. The stages are
interleaved (every repeat times every stage once, ``--calls`` calls each),
so that load from other processes on a shared machine hits all of them
alike; the medians over ``--repeats`` are reported (min and max too).

``--crop device,host`` adds the stages of ``NanoTracker(crop='host')``
(``jax_hostcrop_*``; ``jax_host_update`` stays the default wrapper's): the
host crop (``channel_mean_host`` + ``crop_window_host``, OpenCV), the jitted
step from the crop (network + post-processing) and the host wrapper.

Every JAX call is waited for (``block_until_ready``). Inputs cycle over the
first ``--calls`` frames of the sequence; JAX inputs are on the device
before timing except for the host wrappers (which copy the frame or crop in,
as the runner does).

  python benchmarks/nanotrack_profile.py [--repeats 7 --calls 30] [--crop device,host]
"""
import argparse
import os
import pathlib
import sys
import time

import cv2
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common  # noqa: E402  pylint: disable=g-import-not-at-top
from duml_jax.convert.nanotrack import find_onnx, load_nanotrack  # noqa: E402
from duml_jax.models import nanotrack as nt  # noqa: E402
from duml_jax.tracking import nanotrack_tracker as ntt  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def jax_stages(variables, cfg, state, frames_dev, frames_host):
  """{stage: zero-argument callable of call index} for the JAX tracker."""
  backbone, head = nt.build(cfg.version)
  crop = ntt.jit(lambda s, f: ntt.search_crop(cfg, s, f)[0])
  bb = ntt.jit(backbone.apply)
  hd = ntt.jit(head.apply)

  def post_fn(s, cls, loc, f):
    _, scale_z = ntt.search_geometry(cfg, s.size)
    score = ntt.foreground(cls[0])
    best, penalty, boxes = ntt.select(cfg, score, loc[0], s, scale_z)
    lr = penalty[best] * score.reshape(-1)[best] * cfg.lr
    return ntt.move(cfg, s, boxes[best], lr, scale_z, f.shape[:2])
  post = ntt.jit(post_fn)
  x = crop(state, frames_dev[0])
  xf = bb(variables["backbone"], x)
  cls, loc = hd(variables["head"], state.z_feat, xf)
  tracker = ntt.NanoTracker(variables, cfg)
  tracker.state = state
  n = len(frames_dev)
  return {
      "crop": lambda i: crop(state, frames_dev[i % n]),
      "backbone": lambda i: bb(variables["backbone"], x),
      "head": lambda i: hd(variables["head"], state.z_feat, xf),
      "postprocess": lambda i: post(state, cls, loc, frames_dev[i % n]),
      "step": lambda i: ntt._track(variables, cfg, state, frames_dev[i % n]),  # pylint: disable=protected-access
      "host_update": lambda i: tracker.update(frames_host[i % n]),
  }


def jax_host_stages(variables, cfg, state, frames_host):
  """{stage: callable} for ``NanoTracker(crop='host')``: host crop, step from the crop, wrapper."""
  window = [int(v) for v in np.asarray(ntt.search_window(cfg, state))]
  hw = frames_host[0].shape[:2]
  buf = ntt.aligned_empty((cfg.instance_size, cfg.instance_size, 3))
  crop = lambda f: ntt.search_crop_host(cfg, f, window, buf)   # what the wrapper does
  patches = [jax.device_put(ntt.search_crop_host(cfg, f, window)) for f in frames_host]
  tracker = ntt.NanoTracker(variables, cfg, crop="host")
  tracker.state = state
  n = len(frames_host)
  return {
      "crop": lambda i: crop(frames_host[i % n]),
      "step": lambda i: ntt._track_crop(variables, cfg, state, patches[i % n], hw),  # pylint: disable=protected-access
      "update": lambda i: tracker.update(frames_host[i % n]),
  }


def cv2_stages(weights, version, frames_bgr, box):
  """{stage: callable} for OpenCV: crop, backbone / head through cv2.dnn, TrackerNano.update."""
  onnx = find_onnx(weights, version)
  bnet = cv2.dnn.readNetFromONNX(str(onnx["backbone"]))
  hnet = cv2.dnn.readNetFromONNX(str(onnx["head"]))
  x, y, w, h = box
  side = int(2 * np.sqrt((w + (w + h) // 2) * (h + (w + h) // 2)))
  cx, cy = x + w / 2, y + h / 2
  x0, y0 = int(cx) - (side + 1) // 2, int(cy) - (side + 1) // 2

  def crop(f):
    fh, fw = f.shape[:2]
    pads = [max(0, -y0), max(0, y0 + side - fh), max(0, -x0), max(0, x0 + side - fw)]
    padded = cv2.copyMakeBorder(f, *pads, cv2.BORDER_CONSTANT, value=cv2.mean(f))
    roi = padded[y0 + pads[0]:y0 + pads[0] + side, x0 + pads[2]:x0 + pads[2] + side]
    return cv2.resize(roi, (255, 255))

  blob_x = cv2.dnn.blobFromImage(crop(frames_bgr[0]), 1.0, swapRB=True)
  bnet.setInput(blob_x)
  xf = bnet.forward().copy()
  blob_z = cv2.dnn.blobFromImage(cv2.resize(crop(frames_bgr[0]), (127, 127)), 1.0, swapRB=True)
  bnet.setInput(blob_z)
  zf = bnet.forward().copy()

  def backbone():
    bnet.setInput(blob_x)
    return bnet.forward()

  def head():
    hnet.setInput(zf, "input1")
    hnet.setInput(xf, "input2")
    return hnet.forward(["output1", "output2"])

  params = cv2.TrackerNano_Params()
  params.backbone, params.neckhead = str(onnx["backbone"]), str(onnx["head"])
  tracker = cv2.TrackerNano_create(params)
  tracker.init(frames_bgr[0], box)
  n = len(frames_bgr)
  return {"crop": lambda i: crop(frames_bgr[i % n]), "backbone": lambda i: backbone(),
          "head": lambda i: head(), "update": lambda i: tracker.update(frames_bgr[i % n])}


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--sequence", default=str(SHARED / "data" / "otb_sample" / "MotorRolling"))
  ap.add_argument("--weights", default=str(SHARED / "weights" / "nanotrack"))
  ap.add_argument("--version", default="v2")
  ap.add_argument("--repeats", type=int, default=7)
  ap.add_argument("--calls", type=int, default=30)
  ap.add_argument("--crop", default="device",
                  help="'device' (the default tracker's stages) or 'device,host' (and the "
                       "stages of NanoTracker(crop='host'))")
  args = ap.parse_args()
  modes = common.crop_modes(args.crop, ntt.CROP_MODES)
  if modes[0] != "device":          # the host stages are timed beside the device ones
    raise SystemExit(f"--crop={args.crop!r}: 'device' or 'device,host'")
  seq = pathlib.Path(args.sequence)
  paths, box = common.otb_sequence(seq)
  paths = paths[:args.calls]
  bgr = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]
  rgb = [np.ascontiguousarray(f[..., ::-1]) for f in bgr]
  variables = jax.device_put(load_nanotrack(args.weights, args.version))
  cfg = ntt.freeze(ntt.default_config())
  state = ntt.init(variables, cfg, rgb[0], np.asarray(box, np.float32))
  dev = [jnp.asarray(f) for f in rgb]
  stages = {f"jax_{k}": v for k, v in jax_stages(variables, cfg, state, dev, rgb).items()}
  if "host" in modes:
    stages.update({f"jax_hostcrop_{k}": v for k, v in jax_host_stages(
        variables, cfg, state, rgb).items()})
  stages.update({f"cv2_{k}": v for k, v in cv2_stages(
      pathlib.Path(args.weights), args.version, bgr, box).items()})
  for fn in stages.values():      # compile / warm up
    jax.block_until_ready(fn(0))
  times = {k: [] for k in stages}
  for _ in range(args.repeats):
    for k, fn in stages.items():
      t0 = time.perf_counter()
      for i in range(args.calls):
        jax.block_until_ready(fn(i))
      times[k].append((time.perf_counter() - t0) / args.calls)
  res = common.header("nanotrack_profile", {"version": args.version, "sequence": seq.name,
                                            "repeats": args.repeats, "calls": args.calls,
                                            "crop": modes})
  res["opencv_version"] = cv2.__version__
  res["frame_hw"] = list(bgr[0].shape[:2])
  res["median_ms"] = {k: round(1e3 * float(np.median(v)), 3) for k, v in times.items()}
  res["min_ms"] = {k: round(1e3 * float(np.min(v)), 3) for k, v in times.items()}
  res["max_ms"] = {k: round(1e3 * float(np.max(v)), 3) for k, v in times.items()}
  common.finish(res)


if __name__ == "__main__":
  main()

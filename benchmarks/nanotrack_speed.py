"""Per-frame time of the JAX NanoTrack tracker vs cv2.TrackerNano, same frames, same process.

Prints one JSON object. Frames are decoded before timing. Both trackers run
over the sequence in lockstep, frame by frame, in alternating order (JAX
first on even frames of even repeats, cv2 first otherwise), so that load from
other processes on a shared machine falls on both alike; the sequence is
tracked ``--repeats`` times. The JAX tracker's compile time (first `init` +
first `track` call, each including one run) is reported separately. Every JAX
step is waited for (the host class returns numpy boxes), so its time is end
to end per frame: host->device frame copy, device crop, backbone, head,
post-processing, box back to the host.

``--crop`` names the `NanoTracker` crop modes to time (comma-separated, each
a tracker of its own in the same lockstep; the order rotates over all
trackers): 'device' (the default; keys ``jax_*``) and 'host' (OpenCV crop on
the host, only the crop sent to the device; keys ``jax_host_*``).

``*_ms_per_frame`` is total time / frames over all repeats; ``*_median_ms``
the median frame; ``jax_over_cv2`` (``jax_host_over_cv2``) the ratio of the
totals, also per repeat.

  python benchmarks/nanotrack_speed.py [--sequence ../shared/data/otb_sample/MotorRolling]
  python benchmarks/nanotrack_speed.py --crop device,host
  python benchmarks/nanotrack_speed.py --onnx_dir=export/nano   # + cv2 on our exported graphs

``--onnx_dir`` (a ``python -m duml_jax.export --format=onnx`` folder of a
NanoTrack config) adds ``cv2_export``: cv2.TrackerNano running the graphs
exported from the JAX model, in the same lockstep.
"""
import argparse
import os
import pathlib
import sys
import time

import cv2
import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common  # noqa: E402  pylint: disable=g-import-not-at-top
from duml_jax.convert.nanotrack import find_onnx, load_nanotrack  # noqa: E402
from duml_jax.tracking import nanotrack_tracker as ntt  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / 'shared'


def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--sequence', default=str(SHARED / 'data' / 'otb_sample' / 'MotorRolling'))
  ap.add_argument('--weights', default=str(SHARED / 'weights' / 'nanotrack'))
  ap.add_argument('--version', default='v2')
  ap.add_argument('--frames', type=int, default=0, help='0: all')
  ap.add_argument('--repeats', type=int, default=3)
  ap.add_argument('--onnx_dir', default=None,
                  help='also time cv2.TrackerNano on the graphs duml_jax.export wrote here')
  ap.add_argument('--crop', default='device',
                  help=f'comma-separated NanoTracker crop modes to time, of {ntt.CROP_MODES}')
  args = ap.parse_args()
  modes = common.crop_modes(args.crop, ntt.CROP_MODES)
  key = {m: 'jax' if m == 'device' else f'jax_{m}' for m in modes}   # JSON key prefixes

  seq = pathlib.Path(args.sequence)
  paths, box = common.otb_sequence(seq)
  if args.frames:
    paths = paths[:args.frames]
  if len(paths) < 2:
    raise SystemExit(f'{seq}: need at least 2 frames, found {len(paths)}')
  bgr = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]
  rgb = [np.ascontiguousarray(f[..., ::-1]) for f in bgr]
  weights = pathlib.Path(args.weights)
  onnx = find_onnx(weights, args.version)

  res = common.header('nanotrack_speed', {'version': args.version, 'sequence': seq.name,
                                          'repeats': args.repeats, 'crop': modes})
  variables = load_nanotrack(weights, args.version)
  trackers, compile_s = {}, {}
  for m in modes:
    trackers[key[m]] = tracker = ntt.NanoTracker(variables, ntt.default_config(), crop=m)
    t0 = time.perf_counter()
    tracker.init(rgb[0], np.array(box, float))
    jax.block_until_ready(tracker.state)
    tracker.update(rgb[1])
    compile_s[key[m]] = time.perf_counter() - t0

  params = cv2.TrackerNano_Params()
  params.backbone, params.neckhead = str(onnx['backbone']), str(onnx['head'])
  exported = None
  if args.onnx_dir:
    exported = cv2.TrackerNano_Params()
    exported.backbone = str(pathlib.Path(args.onnx_dir) / 'nanotrack_backbone.onnx')
    exported.neckhead = str(pathlib.Path(args.onnx_dir) / 'nanotrack_head.onnx')
  names = list(trackers) + ['cv2'] + (['cv2_export'] if exported else [])
  times = {k: [] for k in names}
  per_repeat = {k: [] for k in trackers}
  for r in range(args.repeats):
    ref = cv2.TrackerNano_create(params)
    ref.init(bgr[0], box)
    for tracker in trackers.values():
      tracker.init(rgb[0], np.array(box, float))
    steps = {k: (lambda i, t=t: t.update(rgb[i])) for k, t in trackers.items()}
    steps['cv2'] = lambda i: ref.update(bgr[i])
    if exported:
      ours = cv2.TrackerNano_create(exported)
      ours.init(bgr[0], box)
      steps['cv2_export'] = lambda i, o=ours: o.update(bgr[i])
    rep = {k: 0. for k in names}
    for i in range(1, len(paths)):
      first = (i + r) % len(names)     # two trackers: JAX first on even i + r, as before
      for name in names[first:] + names[:first]:
        t = time.perf_counter()
        steps[name](i)
        dt = time.perf_counter() - t
        times[name].append(dt)
        rep[name] += dt
    for k in trackers:
      per_repeat[k].append(round(rep[k] / rep['cv2'], 3))

  n = len(times['cv2'])
  total = {k: float(np.sum(v)) for k, v in times.items()}
  res.update({
      'opencv_version': cv2.__version__, 'cv2_threads': cv2.getNumThreads(),
      'nanotrack_version': args.version, 'sequence': seq.name,
      'frame_hw': list(bgr[0].shape[:2]), 'tracked_frames': len(paths) - 1,
      'repeats': args.repeats})
  for k in names:
    if k in compile_s:
      res[f'{k}_compile_s'] = round(compile_s[k], 2)
    res.update({f'{k}_fps': round(n / total[k], 1),
                f'{k}_ms_per_frame': round(1e3 * total[k] / n, 2),
                f'{k}_median_ms': round(1e3 * float(np.median(times[k])), 2)})
  for k in trackers:
    res[f'{k}_over_cv2'] = round(total[k] / total['cv2'], 3)
    res[f'{k}_over_cv2_per_repeat'] = per_repeat[k]
  if exported:
    res['cv2_export_over_cv2'] = round(total['cv2_export'] / total['cv2'], 3)
  if 'jax' in trackers and 'jax_host' in trackers:
    res['jax_host_over_jax'] = round(total['jax_host'] / total['jax'], 3)
  common.finish(res)


if __name__ == '__main__':
  main()

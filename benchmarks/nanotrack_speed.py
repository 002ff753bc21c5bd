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

``*_ms_per_frame`` is total time / frames over all repeats; ``*_median_ms``
the median frame; ``jax_over_cv2`` the ratio of the totals, also per repeat.

  python benchmarks/nanotrack_speed.py [--sequence ../shared/data/otb_sample/MotorRolling]
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
  args = ap.parse_args()

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
                                          'repeats': args.repeats})
  tracker = ntt.NanoTracker(load_nanotrack(weights, args.version), ntt.default_config())
  t0 = time.perf_counter()
  tracker.init(rgb[0], np.array(box, float))
  jax.block_until_ready(tracker.state)
  tracker.update(rgb[1])
  compile_s = time.perf_counter() - t0

  params = cv2.TrackerNano_Params()
  params.backbone, params.neckhead = str(onnx['backbone']), str(onnx['head'])
  times = {'jax': [], 'cv2': []}
  per_repeat = []
  for r in range(args.repeats):
    ref = cv2.TrackerNano_create(params)
    ref.init(bgr[0], box)
    tracker.init(rgb[0], np.array(box, float))
    steps = {'jax': lambda i: tracker.update(rgb[i]), 'cv2': lambda i: ref.update(bgr[i])}
    rep = {'jax': 0., 'cv2': 0.}
    for i in range(1, len(paths)):
      order = ('jax', 'cv2') if (i + r) % 2 == 0 else ('cv2', 'jax')
      for name in order:
        t = time.perf_counter()
        steps[name](i)
        dt = time.perf_counter() - t
        times[name].append(dt)
        rep[name] += dt
    per_repeat.append(round(rep['jax'] / rep['cv2'], 3))

  n = len(times['jax'])
  total = {k: float(np.sum(v)) for k, v in times.items()}
  res.update({
      'opencv_version': cv2.__version__, 'cv2_threads': cv2.getNumThreads(),
      'nanotrack_version': args.version, 'sequence': seq.name,
      'frame_hw': list(bgr[0].shape[:2]), 'tracked_frames': len(paths) - 1,
      'repeats': args.repeats, 'jax_compile_s': round(compile_s, 2),
      'jax_fps': round(n / total['jax'], 1), 'jax_ms_per_frame': round(1e3 * total['jax'] / n, 2),
      'jax_median_ms': round(1e3 * float(np.median(times['jax'])), 2),
      'cv2_fps': round(n / total['cv2'], 1), 'cv2_ms_per_frame': round(1e3 * total['cv2'] / n, 2),
      'cv2_median_ms': round(1e3 * float(np.median(times['cv2'])), 2),
      'jax_over_cv2': round(total['jax'] / total['cv2'], 3),
      'jax_over_cv2_per_repeat': per_repeat,
  })
  common.finish(res)


if __name__ == '__main__':
  main()

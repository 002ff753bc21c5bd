"""Frames/s of the JAX NanoTrack tracker vs cv2.TrackerNano, same frames, same process.

Prints one JSON object. Frames are decoded before timing; the JAX tracker's
compile time (first `init` + first `track` call, each including one run) is
reported separately from its steady-state speed. Every JAX step is waited for
(the host class returns numpy boxes), so frames/s is end-to-end per frame:
host->device frame copy, device crop, backbone, head, post-processing.

  python benchmarks/nanotrack_speed.py [--sequence ../shared/data/otb_sample/MotorRolling]
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
from duml_jax.tracking import nanotrack_tracker as ntt

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / 'shared'


def _first_box(seq_dir):
  line = (seq_dir / 'groundtruth_rect.txt').read_text().splitlines()[0]
  x, y, w, h = (float(v) for v in line.replace('\t', ',').replace(' ', ',').split(',') if v)
  return (int(round(x - 1)), int(round(y - 1)), int(round(w)), int(round(h)))  # 1-based GT


def main():
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--sequence', default=str(SHARED / 'data' / 'otb_sample' / 'MotorRolling'))
  ap.add_argument('--weights', default=str(SHARED / 'weights' / 'nanotrack'))
  ap.add_argument('--version', default='v2')
  ap.add_argument('--frames', type=int, default=0, help='0: all')
  args = ap.parse_args()

  seq = pathlib.Path(args.sequence)
  paths = sorted((seq / 'img').glob('*.jpg'))
  if args.frames:
    paths = paths[:args.frames]
  if len(paths) < 2:
    raise SystemExit(f'{seq}: need at least 2 frames, found {len(paths)}')
  bgr = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]
  rgb = [np.ascontiguousarray(f[..., ::-1]) for f in bgr]
  box = _first_box(seq)
  weights = pathlib.Path(args.weights)

  variables = load_nanotrack(weights, args.version)
  tracker = ntt.NanoTracker(variables, ntt.default_config())
  t0 = time.perf_counter()
  tracker.init(rgb[0], np.array(box, float))
  jax.block_until_ready(tracker.state)
  tracker.update(rgb[1])
  compile_s = time.perf_counter() - t0
  tracker.init(rgb[0], np.array(box, float))
  t0 = time.perf_counter()
  for f in rgb[1:]:
    tracker.update(f)
  jax_s = time.perf_counter() - t0

  params = cv2.TrackerNano_Params()
  params.backbone = str(weights / f'nanotrack{args.version}_nanotrack_backbone_sim.onnx')
  params.neckhead = str(weights / f'nanotrack{args.version}_nanotrack_head_sim.onnx')
  ref = cv2.TrackerNano_create(params)
  ref.init(bgr[0], box)
  t0 = time.perf_counter()
  for f in bgr[1:]:
    ref.update(f)
  cv2_s = time.perf_counter() - t0

  n = len(paths) - 1
  print(json.dumps({
      'benchmark': 'nanotrack_speed',
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
      'device': str(jax.devices()[0]),
      'device_kind': jax.devices()[0].device_kind,
      'cpu_count': os.cpu_count(),
      'machine': platform.machine(),
      'jax_version': jax.__version__,
      'opencv_version': cv2.__version__,
      'nanotrack_version': args.version,
      'sequence': seq.name,
      'frame_hw': list(bgr[0].shape[:2]),
      'tracked_frames': n,
      'jax_compile_s': round(compile_s, 2),
      'jax_fps': round(n / jax_s, 1),
      'jax_ms_per_frame': round(1000 * jax_s / n, 2),
      'cv2_fps': round(n / cv2_s, 1),
      'cv2_ms_per_frame': round(1000 * cv2_s / n, 2),
  }))


if __name__ == '__main__':
  main()

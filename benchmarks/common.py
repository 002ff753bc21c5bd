"""Shared pieces of the DuML benchmark scripts: machine description, timing, synthetic frames.

Every script prints one JSON object whose first keys come from `header()`.
"""
import datetime
import json
import os
import platform
import resource
import time

import jax
import numpy as np


def use_online_filter(impl):
  """'conv' (the library's `online.apply_filter`, whatever it is) or 'taps' (the tap-matmul form).

  'taps' replaces `duml_jax.models.online.apply_filter` in this process only,
  to measure the fix proposed in `online_filter_micro.py`; the library file
  is not changed.
  """
  if impl == "conv":
    return
  if impl != "taps":
    raise ValueError(f"--online-filter={impl!r}: conv | taps")
  from benchmarks import online_filter_micro  # pylint: disable=g-import-not-at-top
  from duml_jax.models import online  # pylint: disable=g-import-not-at-top
  online.apply_filter = online_filter_micro.apply_filter_taps


def crop_modes(text, allowed):
  """'device,host' -> ['device', 'host'] (a `--crop` flag): distinct modes, each one of
  `allowed`; exits naming the flag otherwise."""
  modes = [m.strip() for m in text.split(',') if m.strip()]
  bad = [m for m in modes if m not in allowed]
  if bad or not modes or len(set(modes)) != len(modes):
    raise SystemExit(f'--crop={text!r}: give distinct modes of {tuple(allowed)}')
  return modes


def load_average():
  """(1, 5, 15)-minute load averages, rounded."""
  return [round(v, 2) for v in os.getloadavg()]


def max_rss_mib():
  """Peak resident memory of this process (Linux reports KiB)."""
  return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024., 1)


def device_memory():
  """`memory_stats()` of device 0 (peak/in-use bytes) where the backend has it, else None."""
  stats = jax.devices()[0].memory_stats()
  if not stats:
    return None
  keep = ("peak_bytes_in_use", "bytes_in_use", "bytes_limit")
  return {k: int(stats[k]) for k in keep if k in stats}


def header(benchmark, config):
  d = jax.devices()[0]
  return {"benchmark": benchmark,
          "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
          "device": str(d), "device_kind": d.device_kind, "backend": jax.default_backend(),
          "num_devices": jax.device_count(), "cpu_count": os.cpu_count(),
          "machine": platform.machine(), "jax_version": jax.__version__,
          "config": config, "load_average_start": load_average()}


def finish(result):
  result["load_average_end"] = load_average()
  result["max_rss_mib"] = max_rss_mib()
  print(json.dumps(result), flush=True)


def timed(fn, *args):
  """(result, seconds) of fn(*args) with every output waited for."""
  t0 = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  return out, time.perf_counter() - t0


def time_repeats(fn, repeats, warmup=1):
  """Per-call seconds of `fn()` (outputs waited for): warm-up calls first, then `repeats`."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return times


def summary(times):
  """Median / min / mean milliseconds of a list of seconds."""
  t = np.asarray(times) * 1e3
  return {"median_ms": round(float(np.median(t)), 3), "min_ms": round(float(t.min()), 3),
          "mean_ms": round(float(t.mean()), 3), "n": int(t.size)}


def otb_sequence(seq_dir):
  """(frame paths, first box as the ints cv2 takes) of an OTB-layout sequence folder."""
  from duml_jax.data import benchmarks  # pylint: disable=g-import-not-at-top
  seq_dir = os.path.abspath(seq_dir)
  seq = benchmarks.load_benchmark("otb", os.path.dirname(seq_dir),
                                  sequences=[os.path.basename(seq_dir)])[0]
  return seq.frames, tuple(int(v) for v in np.round(seq.boxes[0]))


def synthetic_frames(num_frames, height=360, width=640, seed=0):
  """A textured target moving over a textured background: (frames uint8 (T,H,W,3), first box xywh).

  Content does not change the work of the tracker step (static shapes); it
  only keeps the online branch's flags (lost / distractor) plausible.
  """
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  bg = (96 + 40 * np.sin(xx / 23.) * np.cos(yy / 31.))[..., None] * np.ones(3, np.float32)
  bg = bg + rng.normal(0, 8, (height, width, 3))
  tex = (128 + 100 * np.sign(np.sin(np.arange(64) / 3.)))[:, None] * np.ones(64)[None]
  tex = np.stack([tex, tex.T, 255 - tex], -1)
  frames = np.empty((num_frames, height, width, 3), np.uint8)
  w, h = 64, 48
  for t in range(num_frames):
    cx = width / 2 + 0.3 * width * np.sin(t / 25.)
    cy = height / 2 + 0.25 * height * np.sin(t / 17.)
    f = bg.copy()
    x0, y0 = int(cx - w / 2), int(cy - h / 2)
    f[y0:y0 + h, x0:x0 + w] = tex[:h, :w]
    frames[t] = np.clip(f, 0, 255).astype(np.uint8)
  cx, cy = width / 2, height / 2
  return frames, np.array([int(cx - w / 2), int(cy - h / 2), w, h], np.float32)

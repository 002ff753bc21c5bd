"""Frames/s of the full DuML tracker step, per localization form, one sequence and N lanes.

Prints one JSON object. What is timed, per frame: the host frame (uint8,
360x640 by default) goes in, the jitted `tracker.step` (`track` +
`refine_filter`) runs the device crop, backbone, offline heads, online
scores, Eq. 1 fusion, post-processing with or without score voting, the
memory update and (when scheduled or on a distractor) the SD-GN filter
update, and the box comes out to the host (waited for). Online updates are
thus amortised over the sequence; the JSON gives how many frames ran one.
Random weights: the speed does not depend on them, only the flags do; with
random weights nearly every frame would be judged lost (no updates), so the
not-found threshold is disabled unless `--allow-lost`.

Compile time (first `init` and first `track` call, each including one run)
is reported separately and never mixed into frames/s.

Lanes: `DuMLBatchTracker` (vmap over N sequences, padded frames, one jitted
step) with N lanes, all frames of a step given together.

  python benchmarks/track_speed.py --config tiny --frames 100 --lanes 1,8,64
  python benchmarks/track_speed.py --config paper --frames 10 --lanes 1 \
      --forms duml,duml-novote,ofc5s,onr
"""
import argparse
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from configs import duml as duml_configs  # noqa: E402
from duml_jax.models import duml as duml_lib  # noqa: E402
from duml_jax.tracking import adapter  # noqa: E402
from duml_jax.tracking import tracker  # noqa: E402

# form name -> config overrides
FORMS = {
    "duml": "offline=OFC-5s,online=ONR,voting=1",
    "duml-novote": "offline=OFC-5s,online=ONR,voting=0",
    "ofc5s": "offline=OFC-5s,online=none,voting=1",
    "ofc5s-novote": "offline=OFC-5s,online=none,voting=0",
    "onr": "offline=none,online=ONR,voting=1",
}


def build(preset, form, never_lost=False):
  """Config, model, random variables and tracking params of a form.

  `never_lost` sets `not_found_threshold` to -inf so that, with random
  weights, frames are not all judged lost: the scheduled filter updates
  (every `update_every` frames) then run as on a real sequence.
  """
  cfg = duml_configs.get_config(f"{preset},{FORMS[form]}")
  model = duml_lib.build_model(cfg.model)
  variables = duml_lib.init_variables(model, jax.random.PRNGKey(0))
  overrides = {"not_found_threshold": float("-inf")} if never_lost else {}
  return cfg, model, variables, tracker.tracking_params(cfg, **overrides)


def one_sequence(model, variables, tcfg, frames, box):
  """Direct jitted `tracker.init` / `tracker.step` (track + due filter refinement) on one sequence."""
  size = np.array([frames.shape[2], frames.shape[1]], np.float32)
  t0 = time.perf_counter()
  state = jax.block_until_ready(tracker.init(model, variables, tcfg, frames[0], box, size))
  init_first = time.perf_counter() - t0
  t0 = time.perf_counter()
  state, out = tracker.step(model, variables, tcfg, state, frames[1])
  np.asarray(out["box"])
  track_first = time.perf_counter() - t0
  t0 = time.perf_counter()
  jax.block_until_ready(tracker.init(model, variables, tcfg, frames[0], box, size))
  init_s = time.perf_counter() - t0
  times, updates, flags = [], 0, []
  for f in frames[2:]:
    t0 = time.perf_counter()
    state, out = tracker.step(model, variables, tcfg, state, f)
    np.asarray(out["box"])
    times.append(time.perf_counter() - t0)
    updates += int(out["iters"] > 0)
    flags.append(int(out["flag"]))
  total = sum(times)
  return {"frames_timed": len(times), "fps": round(len(times) / total, 2),
          "ms_per_frame": round(1e3 * total / len(times), 2), "step": common.summary(times),
          "frames_with_filter_update": updates,
          "flags": {n: flags.count(i) for i, n in enumerate(tracker.FLAG_NAMES)},
          "init_ms": round(1e3 * init_s, 1),
          "first_init_call_s": round(init_first, 2), "first_track_call_s": round(track_first, 2)}


def lanes(model, variables, tcfg, frames, box, n):
  """`DuMLBatchTracker` with n lanes: total frames/s over all lanes."""
  bt = adapter.DuMLBatchTracker(model, variables, tcfg, n)
  mask = np.ones(n, bool)
  # Lane i starts i frames later in the same video (different crops per lane).
  lane_frames = lambda t: [frames[min(t + i, len(frames) - 1)] for i in range(n)]
  t0 = time.perf_counter()
  bt.init(lane_frames(0), np.repeat(box[None], n, 0), mask)
  jax.block_until_ready(bt.state)
  init_first = time.perf_counter() - t0
  t0 = time.perf_counter()
  bt.update(lane_frames(1), mask)
  update_first = time.perf_counter() - t0
  steps = len(frames) - 2
  times = []
  for t in range(2, len(frames)):
    fr = lane_frames(t)
    t0 = time.perf_counter()
    bt.update(fr, mask)
    times.append(time.perf_counter() - t0)
  total = sum(times)
  return {"lanes": n, "steps_timed": steps, "total_fps": round(n * steps / total, 2),
          "ms_per_step": round(1e3 * total / steps, 2), "step": common.summary(times),
          "first_init_call_s": round(init_first, 2),
          "first_update_call_s": round(update_first, 2)}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", default="tiny", help="preset: tiny | paper | resnet18")
  p.add_argument("--forms", default="duml,duml-novote,ofc5s,onr",
                 help=f"comma-separated, from {sorted(FORMS)}")
  p.add_argument("--frames", type=int, default=100, help="frames of the one-sequence run")
  p.add_argument("--lanes", default="1,8", help="lane counts for the vmap runs ('' for none)")
  p.add_argument("--lane-frames", type=int, default=20, help="steps of each lane run")
  p.add_argument("--lane-forms", default="duml", help="forms run with lanes")
  p.add_argument("--allow-lost", action="store_true",
                 help="keep the config's not_found_threshold (random weights: most frames "
                      "judged lost, so no filter updates run)")
  p.add_argument("--online-filter", default="conv",
                 help="conv (library) | taps (proposed fix, patched in this process)")
  args = p.parse_args(argv)
  common.use_online_filter(args.online_filter)

  frames, box = common.synthetic_frames(max(args.frames, args.lane_frames))
  result = common.header("track_speed", args.config)
  result["online_filter"] = args.online_filter
  result.update(frame_hw=list(frames.shape[1:3]), never_lost=not args.allow_lost, forms={})
  for form in args.forms.split(","):
    cfg, model, variables, tcfg = build(args.config, form, never_lost=not args.allow_lost)
    entry = {"overrides": FORMS[form],
             "one_sequence": one_sequence(model, variables, tcfg, frames[:args.frames], box)}
    if form in args.lane_forms.split(",") and args.lanes:
      entry["lanes"] = [lanes(model, variables, tcfg, frames[:args.lane_frames], box, int(n))
                        for n in args.lanes.split(",")]
    result["forms"][form] = entry
    print(f"# {form}: {entry['one_sequence']['fps']} fps", file=sys.stderr, flush=True)
  common.finish(result)


if __name__ == "__main__":
  main()

"""Every device figure of the project in one prepared run, written to one JSON file.

A lent accelerator is short (15 minutes of device time, start-up included), so this runs
the figures in order of importance under a wall-clock budget, writes the JSON after each
figure (a kill keeps what was measured) and records each figure's command-line
equivalent (the script that measures the same thing on its own):

  1. tracker frames/s at one sequence, `paper` config (ResNet-50, 255 search, 360x640
     frames): DuML and OFC-5s in float32 (the targets: >= 300 and >= 600 frames/s);
  2. the training step of `paper` at the paper's per-device batch (28): examples/s,
     model FLOP/s over the device's dense bf16 peak (`PEAK_BF16_TFLOPS`), peak memory;
  3. total frames/s with N lanes (`DuMLBatchTracker`, N = 8, 64, 256; target 64 lanes
     >= 5,000), stopping at the first N that runs out of memory;
  4. the same one-sequence figures with `dtype=bfloat16`;
  5. NanoTrack's and DuML-nano's trackers (random weights: speed does not depend on them);
  6. Appendix B: interpolated vs dilated ResNet-50 (`backbone_speed.py`'s functions);
  7. DuML without voting and ONR alone, float32 and bfloat16;
  8. the training step at the largest per-device batch that fits (estimated from 2.).
Compile time is always reported apart from the timed steps. Figures reuse the library's
jitted functions through `track_speed.py`, `train_speed.py`, `flops.py`,
`duml_nano_speed.py` and `backbone_speed.py`.

`--smoke` runs the same code path on CPU with the `tiny` config and tiny sizes (a test
runs it). On a GPU: `bash benchmarks/gpu_run.sh` (wheels, time limit, $OUT).

  python benchmarks/gpu_suite.py --out gpu_suite.json            # on the device
  python benchmarks/gpu_suite.py --smoke --out /tmp/smoke.json   # CPU, tiny
"""
import argparse
import json
import os
import subprocess
import sys
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import backbone_speed  # noqa: E402
from benchmarks import common  # noqa: E402
from benchmarks import duml_nano_speed  # noqa: E402
from benchmarks import flops as flops_lib  # noqa: E402
from benchmarks import track_speed  # noqa: E402
from benchmarks import train_speed  # noqa: E402
from duml_jax.models import duml as duml_lib  # noqa: E402
from duml_jax.training import objectives  # noqa: E402
from duml_jax.training import parallel  # noqa: E402
from duml_jax.training import trainer  # noqa: E402

# Dense bf16 tensor-core peak per device kind (vendor datasheets, no sparsity), matched as a
# case-insensitive substring of `device.device_kind`, first match wins (PCIe before SXM).
# H200 is the H100's chip with more memory: the same arithmetic peak.
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.), ("H100", 989.), ("H200", 989.), ("GH200", 989.),
                    ("A100", 312.), ("L40S", 362.), ("L4", 121.))

FULL = dict(preset="paper", train_preset="paper", frames=60, lanes=(8, 64, 256), lane_frames=12, train_batch=28,
            train_steps=5, nano_frames=60, appendix=dict(template_size=127, search_size=255,
                                                         iters=20, track_frames=30, width=64))
# The smoke's training figure uses the pair-wise form: the same `train_step_figures` path
# (the sequence-wise tiny step took 5 minutes to compile on a loaded 2-core VM, 2026-12-05).
SMOKE = dict(preset="tiny", train_preset="tiny,online=none", frames=5, lanes=(2,), lane_frames=4, train_batch=1,
             train_steps=1, nano_frames=4, appendix=dict(template_size=63, search_size=127,
                                                          iters=2, track_frames=0, width=8))


def peak_bf16_flops(device_kind):
  """Dense bf16 FLOP/s of a device kind from `PEAK_BF16_TFLOPS`, None when unknown (CPU)."""
  for key, tflops in PEAK_BF16_TFLOPS:
    if key.lower() in device_kind.lower():
      return tflops * 1e12
  return None


def _commit():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    return subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True, timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return os.environ.get("DUML_COMMIT", "unknown")   # the device copy may lack .git


def _is_oom(err):
  text = f"{type(err).__name__} {err}"
  return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


class Suite:
  """Runs figures in order under a wall-clock budget; rewrites the JSON after each one."""

  def __init__(self, out_path, budget_s, header):
    self.out_path, self.budget_s, self.t0 = out_path, budget_s, time.perf_counter()
    self.result = dict(header, figures={}, budget_s=budget_s)
    self.write()

  def elapsed(self):
    return time.perf_counter() - self.t0

  def write(self):
    self.result["elapsed_s"] = round(self.elapsed(), 1)
    tmp = self.out_path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(self.result, f, indent=1)
    os.replace(tmp, self.out_path)

  def run(self, name, command, fn):
    """Records fn()'s dict under `name` (or its error / a budget skip); returns it or None."""
    entry = {"command": command}
    if self.elapsed() > self.budget_s:
      entry["skipped"] = f"wall-clock budget of {self.budget_s} s spent"
    else:
      t0 = time.perf_counter()
      try:
        entry.update(fn())
      except Exception as err:  # pylint: disable=broad-except
        entry["error"] = f"{type(err).__name__}: {str(err)[:600]}"
        entry["out_of_memory"] = _is_oom(err)
        if not entry["out_of_memory"]:
          entry["traceback"] = traceback.format_exc()[-2000:]
      entry["wall_s"] = round(time.perf_counter() - t0, 1)
    self.result["figures"][name] = entry
    self.write()
    print(f"# {name}: {entry.get('error') or entry.get('skipped') or 'ok'} "
          f"({self.elapsed():.0f} s)", file=sys.stderr, flush=True)
    return None if ("error" in entry or "skipped" in entry) else entry


# -- figures -------------------------------------------------------------------------------


def tracker_one_sequence(preset, form, dtype, frames, box):
  cfg, model, variables, tcfg = track_speed.build(f"{preset},dtype={dtype}", form)
  del cfg
  return track_speed.one_sequence(model, variables, tcfg, frames, box)


def tracker_lanes(preset, n, frames, box):
  _, model, variables, tcfg = track_speed.build(preset, "duml")
  return track_speed.lanes(model, variables, tcfg, frames, box, n)


def _synthetic_batch(cfg, global_batch, seed=0):
  """Random crops and in-crop boxes shaped as the data pipeline's batches of `cfg`'s form."""
  rng = np.random.default_rng(seed)
  m, d = cfg.model, cfg.data
  zs, xs = m.exemplar_size, m.search_size
  img = lambda *s: rng.integers(0, 256, s, dtype=np.uint8)

  def boxes(*lead):
    wh = rng.uniform(0.15, 0.4, lead + (2,)) * xs
    xy = xs / 2. - wh / 2. + rng.uniform(-0.1, 0.1, lead + (2,)) * xs
    return np.concatenate([xy, wh], -1).astype(np.float32)
  b = global_batch
  if objectives.training_mode(m) == "sequence":
    s, q = int(d.num_support), int(d.num_query)
    return {"support_template": img(b, s, zs, zs, 3), "support_search": img(b, s, xs, xs, 3),
            "support_box": boxes(b, s), "query_search": img(b, q, xs, xs, 3),
            "query_box": boxes(b, q), "negative": np.zeros((b,), bool)}
  return {"template": img(b, zs, zs, 3), "search": img(b, xs, xs, 3),
          "search_box": boxes(b), "negative": np.zeros((b,), bool)}


def model_flops_per_example(cfg, model, per_device_batch):
  """XLA's FLOP count of the loss's value and gradient per example (flops.py's train figure),
  from the lowered (not compiled) computation."""
  b = per_device_batch
  batch = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                       _synthetic_batch(cfg, b))
  variables = jax.eval_shape(lambda: duml_lib.init_variables(
      model, jax.random.PRNGKey(0), cfg.model.exemplar_size, cfg.model.search_size))
  loss_fn = objectives.make_loss_fn(model, cfg)

  def grad_step(v, batch):
    return jax.value_and_grad(loss_fn, has_aux=True)(
        v["params"], v["batch_stats"], batch, jax.random.PRNGKey(0), (("train", True),))
  cost = flops_lib.lowered_cost(grad_step, variables, batch)
  return cost["flops"] / b


def train_step_figures(preset, per_device_batch, steps, peak):
  """The library train step (shard_map over all devices, SGD, NaN guard) on a synthetic
  device-resident batch: examples/s, model FLOP/s and its share of the bf16 peak, memory."""
  n_dev = jax.device_count()
  cfg = train_speed.make_config(preset, per_device_batch * n_dev, "/tmp/duml_gpu_suite", 1)
  mesh = parallel.make_mesh()
  model = duml_lib.build_model(cfg.model, axis_name=parallel.DATA_AXIS)
  flop_model = duml_lib.build_model(cfg.model)
  state = parallel.replicate(trainer.create_train_state(cfg, model, jax.random.PRNGKey(0)),
                             mesh)
  batch = parallel.shard_batch(_synthetic_batch(cfg, cfg.batch_size), mesh)
  mem_before = common.device_memory()
  step_fn = parallel.make_train_step(objectives.make_loss_fn(model, cfg), mesh,
                                     donate=jax.default_backend() != "cpu")
  flags = {"train": True, "backbone_train": True}
  t0 = time.perf_counter()
  state, metrics = step_fn(state, batch, flags)
  jax.block_until_ready(metrics)
  first = time.perf_counter() - t0
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    state, metrics = step_fn(state, batch, flags)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  step_s = float(np.median(times))
  per_example = model_flops_per_example(cfg, flop_model, per_device_batch)
  achieved = per_example * cfg.batch_size / step_s / n_dev        # per device
  return {"per_device_batch": per_device_batch, "global_batch": cfg.batch_size,
          "devices": n_dev, "mode": objectives.training_mode(cfg.model),
          "first_step_s_with_compile": round(first, 2), "step": common.summary(times),
          "examples_per_s": round(cfg.batch_size / step_s, 2),
          "model_gflops_per_example": round(per_example / 1e9, 3),
          "achieved_tflops_per_device": round(achieved / 1e12, 3),
          "peak_bf16_tflops": None if peak is None else round(peak / 1e12, 1),
          "fraction_of_bf16_peak": None if peak is None else round(achieved / peak, 4),
          "loss_finite": bool(metrics["is_finite"]), "device_memory_before": mem_before,
          "device_memory_after": common.device_memory(),
          "input": "synthetic batch resident on the devices (the data pipeline is timed by "
                   "train_speed.py)",
          "flops_note": "XLA cost analysis of the loss's value and gradient (flops.py); a "
                        "scan body (the SD-GN inner loop) may be counted once"}


def largest_batch(fig28, per_device_batch):
  """Per-device batch that should fill 90% of the allocator's limit, from the batch-28 run's
  peak over the memory held before it (activations grow with the batch), down to a multiple
  of 4; None without memory statistics."""
  before, after = fig28.get("device_memory_before"), fig28.get("device_memory_after")
  if not before or not after or "bytes_limit" not in after:
    return None
  base = before["bytes_in_use"]
  per_example = (after["peak_bytes_in_use"] - base) / per_device_batch
  if per_example <= 0:
    return None
  b = int((0.9 * after["bytes_limit"] - base) / per_example) // 4 * 4
  return b if b > per_device_batch else None


def nano_trackers(frames_n):
  """NanoTrack and DuML-nano (paper schedule) frames/s on synthetic frames, random weights."""
  from duml_jax.models import duml_nano as dn  # pylint: disable=g-import-not-at-top
  from duml_jax.models import nanotrack as nt  # pylint: disable=g-import-not-at-top
  from duml_jax.tracking import duml_nano_tracker as dnt  # pylint: disable=g-import-not-at-top
  from duml_jax.tracking import nanotrack_tracker as ntt  # pylint: disable=g-import-not-at-top
  frames, box = common.synthetic_frames(frames_n)
  frames = list(frames)
  out = {}
  nano = nt.init_variables(jax.random.PRNGKey(0), "v2")
  c, i, per = duml_nano_speed._time(ntt.NanoTracker(nano), frames, box)  # pylint: disable=protected-access
  out["nanotrack"] = dict(compile_s=round(c, 2), init_ms=round(1e3 * i, 1),
                          ms_per_frame=round(1e3 * per, 3), fps=round(1 / per, 1))
  model = dn.build("v2")
  variables = dn.from_nanotrack(nano, dn.init_online_params(model, jax.random.PRNGKey(1)))
  t = dnt.DuMLNanoTracker(model, variables, dnt.params(dnt.default_config()))
  c, i, per = duml_nano_speed._time(t, frames, box)  # pylint: disable=protected-access
  out["duml_nano"] = dict(compile_s=round(c, 2), init_ms=round(1e3 * i, 1),
                          ms_per_frame=round(1e3 * per, 3), fps=round(1 / per, 1),
                          filter_updates=int(t.state.num_updates))
  out["frames_timed"] = frames_n - 1
  return out


def appendix_b(preset, params, interpolated_ofc5s):
  """Backbone forwards of both ResNet-50s, the dilated OFC-5s tracker step, the ratios; the
  interpolated OFC-5s figure is figure 1's (same function, same frames) when given."""
  p = params
  out = {}
  with backbone_speed.narrowed(p["width"]):
    for name in backbone_speed.BACKBONES:
      out[name] = {"backbone": backbone_speed.backbone_forward(
          name, p["template_size"], p["search_size"], p["iters"])}
    if p["track_frames"]:
      frames, box = common.synthetic_frames(p["track_frames"] + 2)
      out["resnet50_dilated"]["ofc5s_track_step"] = backbone_speed.ofc5s_step(
          preset, "resnet50_dilated", frames, box)
      out["resnet50"]["ofc5s_track_step"] = (
          interpolated_ofc5s or backbone_speed.ofc5s_step(preset, "resnet50", frames, box))
  i, d = out["resnet50"], out["resnet50_dilated"]
  ratio = {"backbone": round(d["backbone"]["template_search"]["median_ms"]
                             / i["backbone"]["template_search"]["median_ms"], 3)}
  if p["track_frames"]:
    ratio["ofc5s_track_step"] = round(d["ofc5s_track_step"]["ms_per_frame"]
                                      / i["ofc5s_track_step"]["ms_per_frame"], 3)
  out.update(dilated_over_interpolated=ratio, width=p["width"], paper_ratio=round(90 / 46, 2))
  return out


# -- driver --------------------------------------------------------------------------------


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--out", required=True, help="JSON file (rewritten after every figure)")
  ap.add_argument("--smoke", action="store_true", help="CPU, tiny config and sizes")
  ap.add_argument("--budget-s", type=float, default=None,
                  help="no new figure starts after this many seconds (default 330; none "
                       "with --smoke, whose test wants every figure)")
  args = ap.parse_args(argv)
  s = SMOKE if args.smoke else FULL
  budget = args.budget_s if args.budget_s is not None else (1e9 if args.smoke else 330.)
  preset = s["preset"]
  kind = jax.devices()[0].device_kind
  peak = peak_bf16_flops(kind)
  header = common.header("gpu_suite", preset)
  header.update(commit=_commit(), smoke=args.smoke, peak_bf16_tflops=None if peak is None
                else peak / 1e12, platform_version=getattr(jax.devices()[0].client,
                                                           "platform_version", None))
  suite = Suite(args.out, budget, header)
  frames, box = common.synthetic_frames(max(s["frames"], s["lane_frames"]))
  one = frames[:s["frames"]]
  tcmd = ("python benchmarks/track_speed.py --config {p} --frames {f} --lanes '' "
          "--forms {form}")

  def tracker(form, dtype):
    p = f"{preset},dtype={dtype}"
    return suite.run(f"track_{form}_{dtype}",
                     tcmd.format(p=p, f=s["frames"], form=form),
                     lambda: tracker_one_sequence(preset, form, dtype, one, box))

  forms_f32 = ("duml", "ofc5s") if not args.smoke else ("duml",)
  first = {form: tracker(form, "float32") for form in forms_f32}
  tb = s["train_batch"]
  tp = s["train_preset"]
  train_cmd = (f"python benchmarks/train_speed.py --config {tp} --batch {{b}} "
               f"--steps {s['train_steps']}  # + benchmarks/flops.py --config {tp}")
  fig28 = suite.run(f"train_per_device_batch_{tb}", train_cmd.format(b=tb * jax.device_count()),
                    lambda: train_step_figures(tp, tb, s["train_steps"], peak))
  for n in s["lanes"]:
    lane = suite.run(f"lanes_{n}", f"python benchmarks/track_speed.py --config {preset} "
                     f"--forms duml --lanes {n} --lane-frames {s['lane_frames']} --frames 2",
                     lambda n=n: tracker_lanes(preset, n, frames[:s["lane_frames"]], box))
    if lane is None and suite.result["figures"][f"lanes_{n}"].get("out_of_memory"):
      break
  for form in ("duml", "ofc5s") if not args.smoke else ("duml",):
    tracker(form, "bfloat16")
  suite.run("nano_trackers", "PYTHONPATH=. python benchmarks/duml_nano_speed.py (real weights "
            "and sequence; here random weights, synthetic frames)",
            lambda: nano_trackers(s["nano_frames"]))
  a = s["appendix"]
  ofc = first.get("ofc5s")
  suite.run("appendix_b_backbones",
            f"python benchmarks/backbone_speed.py --preset {preset} --template-size "
            f"{a['template_size']} --search-size {a['search_size']} --iters {a['iters']} "
            f"--track-frames {a['track_frames']} --width {a['width']}",
            lambda: appendix_b(preset, a, None if ofc is None or preset != "paper"
                               else {k: ofc[k] for k in ofc if k not in ("command", "wall_s")}))
  if not args.smoke:
    for form in ("duml-novote", "onr"):
      for dtype in ("float32", "bfloat16"):
        tracker(form, dtype)
  big = largest_batch(fig28, tb) if fig28 else None
  if big is None:
    suite.result["figures"]["train_largest_batch"] = {
        "skipped": "no device memory statistics (CPU) or the batch-28 run failed"}
    suite.write()
  else:
    suite.run(f"train_per_device_batch_{big}", train_cmd.format(b=big * jax.device_count()),
              lambda: dict(train_step_figures(tp, big, s["train_steps"], peak),
                           chosen_as="largest estimated to fit (largest_batch)"))
  suite.result["done"] = True
  suite.write()
  print(json.dumps({"out": args.out, "elapsed_s": round(suite.elapsed(), 1),
                    "figures": sorted(suite.result["figures"])}))


if __name__ == "__main__":
  main()

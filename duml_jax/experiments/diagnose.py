"""Why a CPU-sized checkpoint loses the target: failure analysis on the validation split.

  python -m duml_jax.experiments.diagnose --workdir=WORKDIR [--num_sequences=16 --frames=150]

Tracks each synthetic validation sequence (`synthetic.VALIDATION_SEEDS`, never the
held-out ones) one pass with the checkpoint's tracking settings and reports:

1. **Loss events**: frames where the IoU with the ground truth falls below ``lost_iou``
   after a frame at or above it, each classified from the scene that rendered the video:
   ``occluded`` (the target's visible fraction fell below 0.5 in the 5 frames up to it),
   ``on_object`` (the tracked box overlaps another object of the scene -- a look-alike
   distractor or the occluder -- with IoU > 0.2), else ``other``; with, on the frame before,
   the tracked / true size ratio and the centre error in target sizes.
2. **Scale response**: every ``every`` frames of the same tracks, the state is set to the
   true centre and the true size times k (``scales``) and the box measured once
   (`tracker.measure`, nothing updated). ``log(measured size / true size)`` is 0 for every
   k for a perfect box head; its mean at k = 1 is the size bias, and its slope over log k
   the fraction of a wrong scale the box does not correct in one frame (0 ideal, 1 none).
   With the size smoothing rate lr the tracked log-size error settles near
   bias / (1 - slope).
3. **The box head on training pairs** (`training_pairs_size_bias`): the same log-size error
   on the data pipeline's crops of training videos, with their augmentation and centred at
   the nominal scale (no shift / scale / zoom), to tell a bias of the head itself from a
   train / track mismatch.

Writes ``WORKDIR/diagnose/report.json`` (or ``--out``) and prints a summary.
"""
import functools
import json
import os
from typing import Dict, Sequence

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from duml_jax import cli
from duml_jax import console
from duml_jax.data import benchmarks
from duml_jax.data import frames as frames_lib
from duml_jax.data import synthetic
from duml_jax.evaluation import metrics
from duml_jax.experiments import tune
from duml_jax.evaluation import writers
from duml_jax.tracking import tracker as tracker_lib

SCALES = (0.6, 0.8, 1.0, 1.25, 1.6)
KINDS = ("occluded", "on_object", "other")


def scene_objects(scene) -> np.ndarray:
  """(K, T, 4) xywh boxes of every object of a `synthetic.Scene` other than the target."""
  out = [np.stack([cx - w / 2, cy - h / 2, w, h], -1)
         for _, cx, cy, w, h in list(scene.behind) + list(scene.front)]
  return np.stack(out) if out else np.zeros((0, len(scene.boxes), 4))


def loss_events(pred, gt, visible, objects, lost_iou=0.1, object_iou=0.2,
                occluded_below=0.5, occlusion_frames=5):
  """Loss events of one track (see the module docstring).

  Args:
    pred, gt: (T, 4) xywh tracked and true boxes (frame 0 = the init box).
    visible: (T,) visible fraction of the target.
    objects: (K, T, 4) xywh boxes of the scene's other objects.
  Returns:
    A list of {'frame', 'kind', 'size_ratio', 'centre_error', 'object_iou'}.
  """
  pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
  ious = metrics.rect_iou(pred, gt)
  lost = ious < lost_iou
  events = []
  for t in range(1, len(gt)):
    if not lost[t] or lost[t - 1]:
      continue
    on_obj = max([float(metrics.rect_iou(pred[t:t + 1], o[t:t + 1])[0]) for o in objects] + [0.])
    vis = float(np.min(visible[max(0, t - occlusion_frames + 1):t + 1]))
    kind = ("occluded" if vis < occluded_below else
            "on_object" if on_obj > object_iou else "other")
    p, g = pred[t - 1], gt[t - 1]
    g_size = np.sqrt(max(g[2] * g[3], 1e-12))
    events.append({
        "frame": t, "kind": kind, "object_iou": on_obj,
        "size_ratio": float(np.sqrt(max(p[2] * p[3], 0.)) / g_size),
        "centre_error": float(np.hypot(*((p[:2] + p[2:] / 2) - (g[:2] + g[2:] / 2))) / g_size),
    })
  return events


def scale_slope(log_k: Sequence[float], log_err: Sequence[float]) -> float:
  """Least-squares slope of the measured log-size error over log k."""
  return float(np.polyfit(np.asarray(log_k, np.float64), np.asarray(log_err, np.float64),
                          1)[0])


def log_size_errors(pred_deltas, target_deltas, mask):
  """log(predicted / true size) of the anchors in `mask`: 0.5 (dw + dh) of the predicted
  minus that of the target SiamRPN offsets (`labels.box_targets`), (..., 4) each."""
  p, t = np.asarray(pred_deltas, np.float64), np.asarray(target_deltas, np.float64)
  m = np.asarray(mask, bool)
  return (0.5 * (p[..., 2] + p[..., 3]) - 0.5 * (t[..., 2] + t[..., 3]))[m]


def training_pairs_size_bias(config, variables, num_pairs=256, augment=True, seed=12345,
                             radius=0.6):
  """Mean log-size error of the box head on training pairs (the data pipeline's crops of
  *training* videos, first support template x first query search), at the anchors within
  `radius` cells of the target centre, inference-mode BatchNorm.

  With ``augment=False`` the search and template crops have no shift, scale or zoom
  augmentation (the target centred at the nominal scale, what a tracker whose state is right
  crops): a bias there is the head's own, not a train / track mismatch.
  """
  from duml_jax import config_lib  # pylint: disable=g-import-not-at-top
  from duml_jax import labels as labels_lib  # pylint: disable=g-import-not-at-top
  from duml_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from duml_jax.models import duml as duml_lib  # pylint: disable=g-import-not-at-top
  from duml_jax.training import objectives  # pylint: disable=g-import-not-at-top
  from duml_jax.training import trainer  # pylint: disable=g-import-not-at-top
  d = trainer.data_config(config)
  if not augment:
    for aug in (d.search_aug, d.template_aug):
      for key in ("shift", "scale", "zoom"):
        aug[key] = 0.0
  fn = pipeline.SampleFn(d, pipeline.load_sources(d), seed)
  exs = [fn(i) for i in range(int(num_pairs))]
  if "query_search" in exs[0]:
    z = np.stack([e["support_template"][0] for e in exs])
    x = np.stack([e["query_search"][0] for e in exs])
    box = np.stack([e["query_box"][0] for e in exs])
  else:
    keep = [e for e in exs if not e["negative"]]
    z, x = np.stack([e["template"] for e in keep]), np.stack([e["search"] for e in keep])
    box = np.stack([e["search_box"] for e in keep])
  model = duml_lib.build_model(config.model)
  out = jax.jit(lambda v, a, b: model.apply(v, a, b, train=False))(
      variables, jnp.asarray(z, jnp.float32), jnp.asarray(x, jnp.float32))
  anchors = objectives.offline_anchors(config.model, config_lib.box_anchors(config.model))
  box = jnp.asarray(box, jnp.float32)
  pos = jax.vmap(lambda b: labels_lib.centre_radius_labels(anchors, b, radius=radius))(box)
  targets = jax.vmap(lambda b: labels_lib.box_targets(anchors, b))(box)
  errs = log_size_errors(out["box"][..., :4], targets, np.asarray(pos) == 1)
  return {"mean": float(errs.mean()), "median": float(np.median(errs)), "n": int(errs.size),
          "pairs": int(len(box))}


@functools.partial(jax.jit, static_argnums=(0, 2))
def _measured_size(model, variables, tcfg, state, frame):
  """(w, h) in frame pixels of the box `tracker.measure` chooses from `state`."""
  m = tracker_lib.measure(model, variables, tcfg, state, frame)
  return m["box_crop"][2:] / m["scale_z"]


def diagnose_sequence(model, variables, tcfg, frames, gt, scene, scales=SCALES, every=10):
  """Tracks one sequence; returns (per-sequence record, {k: [log errors]})."""
  h, w = frames[0].shape[:2]
  image_size = np.array([w, h], np.float32)
  state = tracker_lib.init(model, variables, tcfg, frames[0], gt[0], image_size)
  pred, errs = [np.asarray(gt[0], np.float32)], {k: [] for k in scales}
  for t in range(1, len(frames)):
    if t % every == 0:
      g = np.asarray(gt[t - 1], np.float32)
      for k in scales:
        probe = state.replace(centre=jnp.asarray(g[:2] + g[2:] / 2),
                              size=jnp.asarray(g[2:] * k))
        wh = np.asarray(_measured_size(model, variables, tcfg, probe, frames[t]), np.float64)
        errs[k].append(float(np.log(np.sqrt(max(wh[0] * wh[1], 1e-12)) /
                                    np.sqrt(max(gt[t][2] * gt[t][3], 1e-12)))))
    state, out = tracker_lib.step(model, variables, tcfg, state, frames[t])
    pred.append(np.asarray(out["box"], np.float32))
  pred = np.stack(pred)
  visible = np.array([synthetic.render_frame(scene, i)[1] for i in range(len(frames))])
  events = loss_events(pred, gt, visible, scene_objects(scene))
  ious = metrics.rect_iou(pred, gt)
  size_err = np.log(np.sqrt(np.maximum(pred[:, 2] * pred[:, 3], 1e-12)) /
                    np.sqrt(np.maximum(gt[:, 2] * gt[:, 3], 1e-12)))
  record = {"mean_iou": float(ious.mean()), "events": events,
            "mean_abs_log_size_error": float(np.abs(size_err).mean()),
            "mean_log_size_error": float(size_err.mean()),
            "num_objects": int(len(scene.behind) + len(scene.front))}
  return record, errs


def diagnose(config, variables, out_dir, num_sequences=16, num_frames=150, scales=SCALES,
             every=10, benchmark=tune.BENCHMARK):
  """Runs the analysis on the first `num_sequences` validation sequences; returns the report."""
  from duml_jax.models import duml as duml_lib  # pylint: disable=g-import-not-at-top
  tune.check_untouched(config)
  if 1.0 not in scales:
    raise ValueError(f"scales {tuple(scales)} must include 1.0 (the size bias)")
  folder = tune.validation_dir(config, out_dir, num_sequences, num_frames)
  seqs = benchmarks.load_benchmark("otb", folder)
  model = duml_lib.build_model(config.model)
  tcfg = tracker_lib.tracking_params(config, benchmark)
  difficulty = synthetic.SyntheticConfig.from_dict(dict(config.data.synthetic.difficulty))
  per_seq, all_errs = [], {k: [] for k in scales}
  for i, seq in enumerate(seqs):
    seed = synthetic.VALIDATION_SEEDS[i]
    if seq.name != synthetic.sequence_name(seed):
      raise ValueError(f"validation sequence {i} is {seq.name!r}, expected "
                       f"{synthetic.sequence_name(seed)!r} ({folder})")
    frames = [frames_lib.read_frame(p) for p in seq.frames]
    gt = np.asarray(seq.boxes, np.float32)
    scene = synthetic.make_scene(seed, len(frames), int(config.data.synthetic.height),
                                 int(config.data.synthetic.width), difficulty)
    if not np.allclose(scene.boxes, gt, atol=0.02):
      raise ValueError(f"{seq.name}: ground truth in {folder} does not match the scene of "
                       f"seed {seed} (stale sequence folder?)")
    record, errs = diagnose_sequence(model, variables, tcfg, frames, gt, scene, scales, every)
    record["sequence"] = seq.name
    per_seq.append(record)
    for k in scales:
      all_errs[k] += errs[k]
    print(f"[diagnose] {i + 1}/{len(seqs)} {seq.name}: mean IoU {record['mean_iou']:.2f}, "
          f"{len(record['events'])} loss events", flush=True)
  events = [e for r in per_seq for e in r["events"]]
  counts = {k: sum(e["kind"] == k for e in events) for k in KINDS}
  log_k = [float(np.log(k)) for k in scales for _ in all_errs[k]]
  flat = [v for k in scales for v in all_errs[k]]
  response = {f"{k:g}": {"mean": float(np.mean(all_errs[k])),
                         "sd": float(np.std(all_errs[k])), "n": len(all_errs[k])}
              for k in scales}
  training_pairs = {name: training_pairs_size_bias(config, variables, augment=aug)
                    for name, aug in (("augmented", True), ("nominal", False))}
  report = {
      "checkpoint_config": config.name, "benchmark_settings": benchmark,
      "num_sequences": len(seqs), "num_frames": int(num_frames),
      "mean_iou": float(np.mean([r["mean_iou"] for r in per_seq])),
      "loss_events": counts,
      "size_ratio_before_loss_median": (float(np.median([e["size_ratio"] for e in events]))
                                        if events else None),
      "scale_response": response,
      "size_bias": response["1"]["mean"],
      "scale_slope": scale_slope(log_k, flat) if len(set(log_k)) > 1 else None,
      "training_pairs_size_bias": training_pairs,
      "sequences": per_seq,
  }
  os.makedirs(out_dir, exist_ok=True)
  writers.atomic_write_text(os.path.join(out_dir, "report.json"), json.dumps(report, indent=1))
  return report


def summary(report) -> str:
  lines = [f"{report['num_sequences']} validation sequences x {report['num_frames']} frames: "
           f"mean IoU {report['mean_iou']:.3f}",
           "loss events: " + ", ".join(f"{k} {v}" for k, v in report["loss_events"].items())]
  if report["size_ratio_before_loss_median"] is not None:
    lines.append(f"tracked / true size on the frame before a loss (median): "
                 f"{report['size_ratio_before_loss_median']:.2f}")
  lines.append("scale response, log(measured / true size) at true centre, size x k: " +
               ", ".join(f"k={k} {v['mean']:+.3f} (sd {v['sd']:.3f})"
                         for k, v in report["scale_response"].items()))
  tp = report.get("training_pairs_size_bias")
  if tp:
    lines.append(f"box head on training pairs (inference BN), log(predicted / true size): "
                 f"{tp['augmented']['mean']:+.3f} with the training augmentation, "
                 f"{tp['nominal']['mean']:+.3f} centred at the nominal scale")
  if report["scale_slope"] is not None:
    lines.append(f"size bias {report['size_bias']:+.3f}, slope {report['scale_slope']:.2f} "
                 f"(0 = the box corrects a wrong scale in one frame, 1 = not at all)")
  return "\n".join(lines)


def _define_flags():
  flags.DEFINE_string("workdir", None, "training workdir (checkpoint + config)")
  flags.DEFINE_string("out", None, "output folder (default WORKDIR/diagnose)")
  flags.DEFINE_integer("num_sequences", 16, "validation sequences")
  flags.DEFINE_integer("frames", 150, "frames per validation sequence")
  flags.DEFINE_integer("every", 10, "scale probe every this many frames")
  flags.mark_flags_as_required(["workdir"])


def main(argv):
  del argv
  console.quiet_other_libraries()
  from duml_jax import checkpoint  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  variables, config = checkpoint.restore_variables(f.workdir)
  out = f.out or os.path.join(f.workdir, "diagnose")
  report = diagnose(config, variables, out, f.num_sequences, f.frames, every=f.every)
  print(summary(report))
  print(f"report: {os.path.join(out, 'report.json')}")


if __name__ == "__main__":
  _define_flags()
  cli.run(main)

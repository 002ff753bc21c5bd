"""Evaluating trackers on benchmarks: the library behind evaluate.py.

`evaluate_model` tracks a benchmark's sequences with the tracker of a config
-- whatever its family (`families`: DuML, `configs/duml.py`, N sequences at a
time through `jax.vmap` when ``batch_sequences > 1``; NanoTrack / DuML-nano on
pretrained NanoTrack weights, `configs/duml_nano.py`) --, writes result files
in the benchmark's own format, scores them and writes ``report.json`` + plots;
`score_only` scores result files already in the output folder (any
tracker's). `evaluate_after_training` is what
`experiments.train_eval.train_and_evaluate` runs on held-out synthetic
sequences and on an OTB-layout folder.
"""
import dataclasses
import os
from typing import Optional, Sequence as Seq, Tuple

from absl import logging
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from duml_jax import checkpoint as ckpt_lib
from duml_jax import errors
from duml_jax.data import benchmarks
from duml_jax.data import synthetic
from duml_jax.evaluation import baselines
from duml_jax.evaluation import families
from duml_jax.evaluation import nano
from duml_jax.evaluation import provenance
from duml_jax.evaluation import runner
from duml_jax.tracking import tracker as tracker_lib

# evaluate.py benchmark name -> (reader name, runner/scoring benchmark name, tracking overrides)
BENCHMARKS = {
    "otb2015": ("otb2015", "OTB2015", "otb2015"),
    "otb": ("otb", "OTB", "otb"),
    "vot2018": ("vot2018", "VOT2018", "vot2018"),
    "vot2019": ("vot2019", "VOT2019", "vot2019"),
    "nfs30": ("nfs30", "NFS30", "nfs30"),
    "uav123": ("uav123", "UAV123", "uav123"),
    "lasot": ("lasot", "LaSOT", "lasot"),
    "trackingnet": ("trackingnet", "TrackingNet", "trackingnet"),
    "got10k": ("got10k", "GOT-10k", "got10k"),
}


def _bench(name):
  if name not in BENCHMARKS:
    raise ValueError(f"unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}")
  return BENCHMARKS[name]


def tracker_name(config):
  """A result-folder name that says which form (or NanoTrack / DuML-nano variant) it is."""
  return families.family(config).tracker_name(config)


def config_and_variables(config=None, checkpoint: Optional[str] = None,
                         step: Optional[int] = None):
  """(config, variables) of evaluate.py's --config / --checkpoint / --step.

  DuML: `checkpoint` is a train.py workdir (its saved config unless `config`
  is given; `step` default: the latest); with only a config, a randomly
  initialised model (a smoke test, not a tracker). NanoTrack / DuML-nano
  configs: NanoTrack's weights from ``config.model.weights``; `checkpoint`, if
  given, is a meta_nano workdir of DuML-nano's online params (it sets
  ``config.model.online_params``).
  """
  return families.family(config).config_and_variables(config, checkpoint, step)


def checkpoint_source(config, checkpoint: Optional[str] = None, step: Optional[int] = None):
  """{'checkpoint', 'checkpoint_step'} of evaluate.py's --checkpoint / --step, recorded with
  the results (`provenance`). DuML: the step is resolved (latest by default) so that the
  step restored is the step recorded; NanoTrack / DuML-nano: `step` as given.

  Raises:
    errors.UserError: a DuML checkpoint folder that does not exist or holds no checkpoint
      (checked first: orbax would create the folder).
  """
  if not checkpoint:
    return {"checkpoint": None, "checkpoint_step": step}
  if families.name_of(config) != "duml" or nano.is_online_workdir(checkpoint):
    return {"checkpoint": checkpoint, "checkpoint_step": step}
  folder = os.path.join(os.path.expanduser(checkpoint), ckpt_lib.CHECKPOINT_DIR)
  if not os.path.isdir(folder):
    raise errors.UserError(f"checkpoint {checkpoint}: no {ckpt_lib.CHECKPOINT_DIR}/ folder "
                           "there; give a train.py workdir (or a meta_nano workdir)")
  if step is None:
    manager = ckpt_lib.CheckpointManager(checkpoint, async_save=False)
    try:
      step = manager.latest_step()
    finally:
      manager.close()
    if step is None:
      raise errors.UserError(f"checkpoint {checkpoint}: {folder} holds no checkpoint")
  return {"checkpoint": checkpoint, "checkpoint_step": int(step)}


def resolve(config=None, checkpoint: Optional[str] = None, step: Optional[int] = None,
            online_config=None):
  """`config_and_variables` of evaluate.py's --config / --checkpoint / --step, where a
  meta_nano workdir given without a config takes ``online_config()`` (the caller's
  ``configs/duml_nano.py:duml_nano``; evaluation does not import configs)."""
  if config is None and checkpoint and nano.is_online_workdir(checkpoint):
    if online_config is None:
      raise errors.ConfigError(f"checkpoint {checkpoint} is a meta_nano workdir: give "
                               "--config=configs/duml_nano.py:duml_nano with it")
    config = online_config()
  return config_and_variables(config, checkpoint, step)


def make_tracker(config, variables, benchmark: Optional[str] = None, batch_size: int = 1,
                 name: Optional[str] = None, devices=None):
  """A `runner.BatchTracker` running the config's tracker.

  DuML: `config.tracking` + the benchmark's overrides (`tracking.benchmarks`); lanes sharded
  over `devices` (default: as many of this process's devices as divide `batch_size`).
  NanoTrack / DuML-nano: `config.tracking` as it is (cv2.TrackerNano's values
  on every benchmark); `variables` from `config_and_variables`.
  """
  return families.family(config).make_tracker(config, variables, benchmark, batch_size, name,
                                              devices)


def make_single_tracker(config, variables, name: Optional[str] = None):
  """A one-sequence tracker (``init(frame, box)``, ``update(frame) -> (box, score)``), e.g.
  for the video mode."""
  return families.family(config).make_single_tracker(config, variables, name)


def make_baselines(config, names: Seq[str], batch_size: int = 1):
  """The baselines `names` (`baselines.NAMES`); 'cv2_nano' reads the ONNX graphs of a
  NanoTrack config's weights folder and version (others: the default folder, v2)."""
  kw = families.family(config).baseline_kwargs(config)
  return [baselines.make(b, batch_size, **kw) for b in names]


def load_sequences(benchmark, dataset_dir, split=None, sequences=None):
  reader, _, _ = _bench(benchmark)
  if benchmark == "got10k" and split is None:
    split = "val"
  return benchmarks.load_benchmark(reader, dataset_dir, split=split, sequences=sequences)


def run_name(benchmark, split=None, protocol=None):
  """The runner's benchmark name (result layout + metrics) for a run."""
  _, name, _ = _bench(benchmark)
  if protocol == "vot":
    return "VOT2018"
  if protocol is not None:
    raise ValueError(f"unknown protocol {protocol!r}; known: vot")
  if benchmark == "got10k":
    return "GOT-10k-test" if (split or "val").lower() == "test" else "GOT-10k-val"
  return name


def evaluate_model(config, variables, benchmark, dataset_dir, output_dir, *, split=None,
                   sequences: Optional[Seq[str]] = None, batch_sequences: int = 1,
                   name: Optional[str] = None, baseline_names: Seq[str] = (),
                   protocol: Optional[str] = None, plot=True, overwrite=False,
                   source: Optional[dict] = None, devices=None,
                   init_shift: Tuple[float, float] = (0., 0.)):
  """Tracks, writes results, scores; returns the report (None for test splits).

  Lanes (`batch_sequences`) are sharded over this process's devices. With several processes
  (`jax.distributed`), each tracks its `process_share` of the sequences and writes their
  result files (atomically, so a killed run resumes); process 0 waits for all, scores every
  sequence and writes report.json and the plots; the other processes return None.

  Args:
    config, variables: a DuML config and its variables, or a NanoTrack /
      DuML-nano config (`configs/duml_nano.py`) and `config_and_variables`'.
    baseline_names: also run these reference trackers (`baselines.NAMES`:
      'keep_first', 'mil', 'cv2_nano').
    protocol: None (the benchmark's own) or 'vot' to run the VOT supervised
      re-initialisation protocol on a one-pass benchmark's sequences (used for
      VOT-style A/R/EAO on synthetic sequences; EAO uses VOT2018's range).
    overwrite: results of other settings already under ``output_dir/<name>``
      are refused (False), replaced (True) or replaced only when stale
      ("stale"); same settings resume (`runner.run_one_pass`).
    source: where `variables` came from (`checkpoint_source`), recorded with
      the results' settings (`provenance.settings`).
    devices: this process's devices the lanes are sharded over (default: all local ones).
    init_shift: (dx, dy) pixels added to every init box (the ground truth is scored as it
      is): a tracker's sensitivity to its start, OTB's spatial-robustness idea at the
      pixel scale. Nonzero: every result folder is named ``<name>-shift<dx>_<dy>``.
  """
  _, _, overrides = _bench(benchmark)
  bench_name = run_name(benchmark, split, protocol)
  seqs = load_sequences(benchmark, dataset_dir, split, sequences)
  index, count = jax.process_index(), jax.process_count()
  mine = process_share(seqs, index, count)
  shifted = any(float(v) != 0. for v in init_shift)
  suffix = ""
  if shifted:
    if protocol is not None:
      raise errors.UserError(f"init_shift={tuple(init_shift)} applies to one-pass runs only, "
                             f"not protocol={protocol!r} (its re-inits use the ground truth)")
    mine = [shift_init(s, init_shift) for s in mine]
    suffix = shift_suffix(init_shift)
    name = (name or tracker_name(config)) + suffix
  devices = list(jax.local_devices() if devices is None else devices)
  n = lanes_for(batch_sequences, len(mine), len(devices))
  trackers = [make_tracker(config, variables, overrides, n, name, devices)]
  trackers[0].settings = provenance.settings(config, variables, **(source or {}))
  if shifted:
    trackers[0].settings["init_shift"] = [float(v) for v in init_shift]
  for b in make_baselines(config, baseline_names, n):
    b.name += suffix
    trackers.append(b)
  logging.info("evaluating %s on %s (process %d of %d: %d of %d sequences, %d lanes over %d "
               "devices) -> %s", trackers[0].name, benchmark, index, count, len(mine),
               len(seqs), n, len(devices), output_dir)
  for trk in trackers:
    runner.run_benchmark(trk, mine, output_dir, bench_name, overwrite=overwrite)
  if count > 1:
    # Every process's result files exist (each written atomically) before process 0 scores.
    multihost_utils.sync_global_devices(f"evaluate {bench_name} {output_dir}")
    if index != 0:
      return None
  return runner.evaluate(bench_name, seqs, output_dir, tracker_names=[t.name for t in trackers],
                         plot=plot)


def shift_suffix(init_shift) -> str:
  """The result-folder suffix of a nonzero `init_shift`: '-shift1_-1' (no comma: folder
  names are comma-separated in evaluate.py --trackers)."""
  return "-shift" + "_".join(f"{float(v):g}" for v in init_shift)


def shift_init(seq, init_shift):
  """`seq` whose init box (row ``start_frame``) is moved by (dx, dy) pixels; the other rows
  (scored) are unchanged."""
  boxes = np.array(seq.boxes, np.float64)
  s = seq.start_frame
  boxes[s, :2] += np.asarray(init_shift, np.float64)
  if not np.isfinite(boxes[s]).all():
    raise errors.UserError(f"sequence {seq.name}: no init box at frame {s} to shift")
  return dataclasses.replace(seq, boxes=boxes)


def lanes_for(batch_sequences: int, num_sequences: int, num_devices: int) -> int:
  """Lanes of one process: `batch_sequences` (at most its sequences, at least 1) rounded up to
  a multiple of its devices, which the lanes are sharded over (idle lanes cost little)."""
  n = max(1, min(int(batch_sequences), int(num_sequences)))
  return -(-n // num_devices) * num_devices


def process_share(sequences, index: int, count: int):
  """The sequences process `index` of `count` tracks: longest first, each to the process with
  the fewest frames so far (ties: the lowest index). Every process computes the same split from
  the same list, and a rerun with the same list resumes each share."""
  if count == 1:
    return list(sequences)
  load = [0] * count
  owner = {}
  for i in sorted(range(len(sequences)), key=lambda i: (-len(sequences[i]), i)):
    p = min(range(count), key=lambda q: (load[q], q))
    owner[i] = p
    load[p] += len(sequences[i])
  return [s for i, s in enumerate(sequences) if owner[i] == index]


def score_only(benchmark, dataset_dir, output_dir, tracker_names: Seq[str] = (), split=None,
               sequences=None, protocol: Optional[str] = None, plot=True):
  """Scores result files already under ``output_dir/<tracker>/`` (all trackers found by default)."""
  bench_name = run_name(benchmark, split, protocol)
  seqs = load_sequences(benchmark, dataset_dir, split, sequences)
  names = list(tracker_names) or sorted(
      d for d in os.listdir(output_dir) if os.path.isdir(os.path.join(output_dir, d)))
  if not names:
    raise errors.UserError(f"no tracker result folders in {output_dir}: nothing to score")
  return runner.evaluate(bench_name, seqs, output_dir, tracker_names=names, plot=plot)


def sequence_set_dir(config, root, prefix, seeds, num_frames, allowed=synthetic.EVAL_SEEDS):
  """Writes (once) the synthetic sequences of `seeds` under `root/<prefix>_<n>x<frames>`
  (difficulty and size of `config.data.synthetic`); returns the folder."""
  seeds = list(seeds)
  folder = os.path.join(root, f"{prefix}_{len(seeds)}x{int(num_frames)}")
  done = os.path.join(folder, ".complete")
  if not os.path.exists(done):
    cfg = synthetic.SyntheticConfig.from_dict(dict(config.data.synthetic.difficulty))
    synthetic.make_sequence_set(seeds, folder, num_frames=int(num_frames),
                                height=int(config.data.synthetic.height),
                                width=int(config.data.synthetic.width), config=cfg,
                                allowed=allowed)
    open(done, "w").close()
  return folder


def synthetic_eval_dir(config, root):
  """Writes (once) the held-out synthetic sequences of `config.eval`; returns their folder."""
  n = int(config.eval.synthetic_sequences)
  return sequence_set_dir(config, root, "synthetic", synthetic.EVAL_SEEDS[:n],
                          config.eval.synthetic_frames)


def _cast_like(current, value, name):
  """`value` as the type of the config's `current` value; ValueError naming `name` if it is not."""
  if isinstance(current, bool):
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
      return value.lower() in ("true", "1")
    if isinstance(value, (bool, int, float)) and float(value) in (0., 1.):
      return bool(value)
  elif isinstance(current, (int, float)):
    try:
      cast = type(current)(value)
    except (TypeError, ValueError):
      cast = None
    if cast is not None and not isinstance(value, bool) and (
        not isinstance(current, int) or float(value) == cast):
      return cast
  elif isinstance(current, str):
    if isinstance(value, str):
      return value
  else:
    return value
  raise ValueError(f"{name} is {type(current).__name__} ({current!r}); got {value!r}")


def with_tracking(config, values, benchmark: Optional[str] = "otb"):
  """A copy of `config` with `values` set in config.tracking and, where that
  benchmark's entry of `tracking.benchmarks` sets the same key (it would
  override them), there too; values are cast to the key's type."""
  c = ml_collections.ConfigDict(config.to_dict())
  # Keys with a default in TrackingParams may be missing from configs saved before they existed.
  defaults = {f.name: f.default for f in dataclasses.fields(tracker_lib.TrackingParams)
              if f.default is not dataclasses.MISSING}
  for k, v in values.items():
    if k == "benchmarks" or (k not in c.tracking and k not in defaults):
      raise KeyError(f"{k!r} is not a key of config.tracking")
    current = c.tracking[k] if k in c.tracking else defaults[k]
    c.tracking[k] = _cast_like(current, v, f"config.tracking.{k}")
    bench = c.tracking.benchmarks.get(benchmark) if benchmark else None
    if bench is not None and k in bench:
      bench[k] = c.tracking[k]
  return c


def evaluate_after_training(config, variables, workdir):
  """Held-out synthetic (one-pass and VOT protocol) and OTB-folder evaluation; {name: report}."""
  reports = {}
  bs = int(config.eval.batch_sequences)
  out = os.path.join(workdir, "eval")
  # Results of an earlier training run in this workdir (other weights) are replaced; an
  # evaluation of these weights that was cut short resumes.
  kw = dict(batch_sequences=bs, baseline_names=("keep_first",), overwrite="stale")
  if config.eval.synthetic_sequences:
    root = os.path.join(workdir, "eval_data")
    if jax.process_index() == 0:      # written once, then read by every process
      synthetic_eval_dir(config, root)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"eval_data {root}")
    folder = synthetic_eval_dir(config, root)
    reports["synthetic"] = evaluate_model(
        config, variables, "otb", folder, os.path.join(out, "synthetic"), **kw)
    reports["synthetic_vot"] = evaluate_model(
        config, variables, "otb", folder, os.path.join(out, "synthetic_vot"), protocol="vot",
        **kw)
  sample = os.path.expanduser(config.eval.otb_sample_dir or "")
  if sample:
    if os.path.isdir(sample):
      reports["otb_sample"] = evaluate_model(
          config, variables, "otb", sample, os.path.join(out, "otb_sample"), **kw)
    else:
      logging.warning("config.eval.otb_sample_dir=%s does not exist: skipped", sample)
  return reports

"""Appendix C: a tracker scored over many tracking hyper-parameter settings in one pass.

A and R of one model can vary a lot with the SiamRPN++ post-processing values (window
influence, penalty_k, size smoothing lr, ...); the paper reports their mean over 140 settings
and the cumulative mean as more settings are added (Fig. 7). Usage:

  python -m duml_jax.evaluation.sweep --checkpoint=W --benchmark=vot2018 --dataset_dir=D \
      --output_dir=OUT --num_settings=140 [--seed=0] \
      [--ranges='window_influence=0.05:0.65;penalty_k=0.001:0.6;lr=0.1:0.8']
  python -m duml_jax.evaluation.sweep --checkpoint=W --benchmark=otb --dataset_dir=D \
      --output_dir=OUT --grid='window_influence=0.2,0.4;mu=0.6,0.8'
  python -m duml_jax.evaluation.sweep --checkpoint=W --benchmark=synthetic --protocol=vot \
      --output_dir=OUT --num_settings=140      # the config's held-out synthetic sequences

Settings are drawn uniformly (seeded, rounded to 4 decimals so the printed flags reproduce
them) from `--ranges` (integer keys: integers) or are the product of `--grid`. Each setting is
the config's `tracking` section with the benchmark's overrides and the setting's values
(`evaluate_lib.with_tracking`), exactly what evaluate.py would run with those
``--config.tracking...`` flags.

How it runs. A lane is one (setting, sequence) pair. The fields of `TRACED` enter only
arithmetic, so they are passed to `tracker.init` / `track` / `refine_state` as a pytree of
traced arrays, one value per setting, and one compiled program serves every setting: lanes are
a (sequences, settings) grid, `jax.vmap` over settings inside `jax.vmap` over sequences (the
frame of a sequence is read once and broadcast to its settings), sharded over the local devices
along the settings axis (`NamedSharding`). One compilation per padded frame shape (and per
power-of-two count of lanes being (re)initialised or refined at once), not per setting. Every
other `TrackingParams` field is static: those that fix a shape, a Python branch or a loop count
(search/exemplar size, stride, anchor shapes, memory_size, num_init_samples, init_iters,
update_iters, distractor_iters, score_voting, online_norm, centre_from,
init_samples_min_weight): settings that differ in them are run as separate groups, each
compiled once.

The protocols are the runner's own per-lane generators (`runner._vot_job` re-initialises a
lane 5 frames after a failure, `runner._one_pass_job`): the lanes of one sequence advance
frame by frame together, a lane waiting for its re-initialisation frame sits idle. Result files
are written per (setting, sequence) in the benchmark's format (atomically) under
``OUT/runs/<setting key>/DuML/``, each setting's scores to ``score.json`` once its sequences are
done, so a killed sweep resumes where it stopped, and any later sweep into the same folder
(another grid, more settings) reuses the settings already scored. Per-setting results equal
separate evaluate.py runs up to float32 rounding (lanes batched differently round
differently, as in `adapter`).

Output: ``OUT/sweep.json`` (per setting: values, A, R, failures, EAO, or AUC / precision on
one-pass benchmarks; their means; the cumulative means; the best setting by EAO / AUC / AO),
``OUT/cumulative.png`` (Fig. 7), and the best setting printed as ``--config.tracking...`` flags.
DuML configs only (NanoTrack / DuML-nano have their own tracker).
"""
import concurrent.futures
import dataclasses
import functools
import hashlib
import itertools
import json
import os
import time
from typing import Dict, List, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import jax.numpy as jnp
import numpy as np

from duml_jax import cli
from duml_jax import console
from duml_jax.data import frames as frames_lib
from duml_jax.evaluation import evaluate_lib
from duml_jax.evaluation import families
from duml_jax.evaluation import progress as progress_lib
from duml_jax.evaluation import runner
from duml_jax.evaluation import writers
from duml_jax.models import duml as duml_lib
from duml_jax.tracking import adapter
from duml_jax.tracking import tracker as tracker_lib

# TrackingParams fields that only enter arithmetic: traced, one value per lane.
TRACED = ("context_amount", "penalty_k", "window_influence", "lr", "min_size", "mu",
          "voting_sigma", "voting_eps", "update_every", "update_lr", "distractor_lr",
          "not_found_threshold", "distractor_threshold", "distractor_window",
          "onc_pos_iou", "onc_neg_iou", "online_scale", "online_offset",
          "offline_temperature",
          "mu_scale_uncertain", "mu_scale_lost", "mu_scale_disagree", "disagree_threshold",
          "mu_scale_offline_unsure", "offline_unsure_threshold")
_INT_TRACED = ("update_every",)
# SiamRPN post-processing search space of TracKit's tuning scripts (the paper names window
# influence and penalty_k and says "etc.").
DEFAULT_RANGES = {"window_influence": (0.05, 0.65), "penalty_k": (0.001, 0.6),
                  "lr": (0.1, 0.8)}
# Per layout: the metric that picks the best setting, and the two whose cumulative means
# are plotted (Fig. 7: A and R).
HEADLINE = {writers.VOT: "eao", writers.ONE_PASS: "success_auc", writers.GOT10K: "ao"}
CURVES = {writers.VOT: ("accuracy", "robustness"),
          writers.ONE_PASS: ("success_auc", "precision"), writers.GOT10K: ("ao", "sr50")}
TRACKER_NAME = "DuML"
SYNTHETIC = "synthetic"


# -- settings ------------------------------------------------------------------


def _value(text: str):
  try:
    return float(text)
  except ValueError:
    return text                 # a word (e.g. centre_from=score_peak); typed by with_tracking


def parse_grid(text: str) -> Dict[str, List]:
  """'a=1,2;b=0.5;c=x' -> {'a': [1.0, 2.0], 'b': [0.5], 'c': ['x']} (keys of config.tracking).

  Numbers become floats, anything else stays a word; `with_tracking` casts each value to
  its key's type and refuses one that is not (e.g. a word for a numeric key)."""
  grid = {}
  for part in filter(None, (p.strip() for p in text.split(";"))):
    if "=" not in part:
      raise ValueError(f"--grid entry {part!r}: expected KEY=V1,V2,...")
    key, values = part.split("=", 1)
    key = key.strip()
    grid[key] = [_value(v.strip()) for v in values.split(",") if v.strip()]
    if not grid[key]:
      raise ValueError(f"--grid entry {part!r}: no value")
  if not grid:
    raise ValueError("--grid is empty")
  return grid


def combinations(grid: Dict[str, Sequence]) -> List[Dict]:
  """Every combination of a grid, keys sorted, the last key varying fastest."""
  keys = sorted(grid)
  return [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]


def parse_ranges(text: str) -> Dict[str, tuple]:
  """'a=0.1:0.5;b=5:20' -> {'a': (0.1, 0.5), 'b': (5.0, 20.0)}."""
  out = {}
  for part in filter(None, (p.strip() for p in text.split(";"))):
    key, sep, span = part.partition("=")
    lo, sep2, hi = span.partition(":")
    try:
      lo, hi = float(lo), float(hi)
    except ValueError:
      lo = hi = None
    if not (sep and sep2) or lo is None or not lo <= hi:
      raise ValueError(f"--ranges entry {part!r}: expected KEY=LOW:HIGH with LOW <= HIGH")
    out[key.strip()] = (lo, hi)
  if not out:
    raise ValueError("--ranges is empty")
  return out


def sample_settings(config, ranges: Dict[str, tuple], num: int, seed: int = 0) -> List[Dict]:
  """`num` settings drawn uniformly from `ranges` with a seeded generator (keys in sorted
  order, one draw per key and setting); keys whose config value is an int draw integers
  in [low, high], floats are rounded to 4 decimals."""
  if num < 1:
    raise ValueError(f"num_settings={num}: need at least 1")
  defaults = {f.name: f.default for f in dataclasses.fields(tracker_lib.TrackingParams)
              if f.default is not dataclasses.MISSING}
  kinds = {}
  for k in sorted(ranges):
    if k == "benchmarks" or (k not in config.tracking and k not in defaults):
      raise KeyError(f"--ranges key {k!r} is not a key of config.tracking")
    current = config.tracking[k] if k in config.tracking else defaults[k]
    if isinstance(current, bool) or not isinstance(current, (int, float)):
      raise ValueError(f"--ranges key {k!r}: config.tracking.{k} is "
                       f"{type(current).__name__}; use --grid for it")
    kinds[k] = int if isinstance(current, int) else float
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(num):
    s = {}
    for k in sorted(ranges):
      lo, hi = ranges[k]
      s[k] = (int(rng.integers(int(np.ceil(lo)), int(np.floor(hi)) + 1)) if kinds[k] is int
              else round(float(rng.uniform(lo, hi)), 4))
    out.append(s)
  return out


def _fmt(v):
  return f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def setting_flags(config, values, overrides: Optional[str]):
  """evaluate.py flags that set `values`: in the benchmark's entry of tracking.benchmarks
  where that entry sets the key (it would override config.tracking), else in tracking."""
  bench = config.tracking.benchmarks.get(overrides) if overrides else None
  out = []
  for k, v in values.items():
    where = (f"tracking.benchmarks.{overrides}" if bench is not None and k in bench
             else "tracking")
    out.append(f"--config.{where}.{k}={_fmt(v)}")
  return out


# -- traced tracking parameters ------------------------------------------------


def split_params(params: tracker_lib.TrackingParams):
  """(static part: `params` with the `TRACED` fields set to None, a hashable key and jit
  static argument; {traced field: value})."""
  return (dataclasses.replace(params, **{k: None for k in TRACED}),
          {k: getattr(params, k) for k in TRACED})


def stack_traced(values: Sequence[Dict]):
  """[{field: value}] -> {field: (K,) array} (int32 for integer fields, else float32)."""
  return {k: np.asarray([v[k] for v in values],
                        np.int32 if k in _INT_TRACED else np.float32) for k in TRACED}


def merge_params(static, traced):
  """The `TrackingParams` of one lane inside a trace: static fields + traced scalars."""
  return dataclasses.replace(static, **traced)


def _pick(traced, k):
  return jax.tree.map(lambda a: a[k], traced)


@functools.lru_cache(maxsize=16)
def _lane_fns(model, static, mesh):
  """Jitted (zeros, init, step, refine) on (sequences, settings) lane grids of one static
  part; states are sharded along the settings axis over `mesh`."""
  lanes = NamedSharding(mesh, P(None, "lanes"))
  donate = jax.default_backend() != "cpu"
  init_one = tracker_lib.init.__wrapped__     # the un-jitted init: tcfg holds tracers here

  def constrain(states):
    return jax.lax.with_sharding_constraint(states, lanes)

  def put(states, slot, k, new):
    return constrain(jax.tree.map(lambda a, n: a.at[slot, k].set(n), states, new))

  def zeros(variables, traced, num_slots, num_settings):
    one = jax.eval_shape(
        lambda v, tr: init_one(model, v, merge_params(static, tr),
                               jnp.zeros((64, 64, 3), jnp.uint8), jnp.ones(4), jnp.ones(2)),
        variables, _pick(traced, 0))
    return jax.tree.map(lambda s: jnp.zeros((num_slots, num_settings) + s.shape, s.dtype), one)

  def init(variables, traced, states, frames, sizes, slot, k, boxes):
    def one(s, kk, box):
      return init_one(model, variables, merge_params(static, _pick(traced, kk)), frames[s],
                      box, sizes[s])
    return put(states, slot, k, jax.vmap(one)(slot, k, boxes))

  def step(variables, traced, states, frames, mask):
    def one(tr, st, frame):
      return tracker_lib._track(model, variables, merge_params(static, tr), st, frame)  # pylint: disable=protected-access
    # Inner vmap: the settings of one sequence share its frame; outer: the sequences.
    new, out = jax.vmap(jax.vmap(one, in_axes=(0, 0, None)), in_axes=(None, 0, 0))(
        traced, states, frames)
    keep = lambda n, o: jnp.where(mask.reshape(mask.shape + (1,) * (n.ndim - 2)), n, o)
    return constrain(jax.tree.map(keep, new, states)), out

  def refine(variables, traced, states, slot, k, iters):
    def one(kk, st, n):
      return tracker_lib.refine_state(model, variables, merge_params(static, _pick(traced, kk)),
                                      st, n)
    sub = jax.tree.map(lambda a: a[slot, k], states)
    return put(states, slot, k, jax.vmap(one)(k, sub, iters))

  return (jax.jit(zeros, static_argnums=(2, 3), out_shardings=lanes),
          jax.jit(init, donate_argnums=(2,) if donate else ()),
          jax.jit(step, donate_argnums=(2,) if donate else ()),
          jax.jit(refine, donate_argnums=(2,) if donate else ()))


def _mesh():
  return jax.sharding.Mesh(np.asarray(jax.local_devices()), ("lanes",))


def _round_up(v, m):
  return -(-int(v) // m) * m


def _bucket(idx: np.ndarray, cap: int):
  """Lane indices padded (repeating the last) to a power of two <= cap: few compilations."""
  n = min(1 << (len(idx) - 1).bit_length(), cap)
  return np.concatenate([idx, np.repeat(idx[-1:], n - len(idx))]).astype(np.int32)


# -- the lane driver -----------------------------------------------------------


class _Progress:
  """Logs (setting, sequence) pairs done, lane-frames, frames/s and ETA every `every_s`."""

  def __init__(self, num_pairs, num_frames, every_s):
    self.num_pairs, self.num_frames, self.every_s = num_pairs, num_frames, every_s
    self.pairs = self.frames = 0
    self.t0 = self.last = time.perf_counter()

  @property
  def fps(self):
    return self.frames / max(time.perf_counter() - self.t0, 1e-9)

  def step(self, frames=0, pairs=0, force=False, what=""):
    self.frames += frames
    self.pairs += pairs
    now = time.perf_counter()
    if not force and now - self.last < self.every_s:
      return
    self.last = now
    fps = self.fps
    eta = (self.num_frames - self.frames) / fps if fps > 0 else float("inf")
    logging.info("sweep%s: settings x sequences %d/%d, frames %d/%d, %.1f frames/s, ETA %s",
                 what, self.pairs, self.num_pairs, self.frames, self.num_frames, fps,
                 progress_lib.hms(eta))


@dataclasses.dataclass
class _Slot:
  seq: object
  lanes: list      # per setting: [generator, pending request] or None (done / not run)


def _protocol_job(fmt, seq, skip_initialize):
  if fmt.layout == writers.VOT:
    return runner._vot_job(seq, 1, skip_initialize)  # pylint: disable=protected-access
  return runner._one_pass_job(seq, 1)  # pylint: disable=protected-access


def _write_result(fmt, tracker_dir, seq, value):
  """What `runner.run_vot_baseline` / `run_one_pass` write for one sequence."""
  runs, times = value
  if fmt.layout == writers.VOT:
    writers.write_vot(tracker_dir, seq.name, runs, times, one_based=seq.one_based,
                      box_format=fmt.box_format)
  elif fmt.layout == writers.GOT10K:
    writers.write_got10k(tracker_dir, seq.name, runs, times, one_based=seq.one_based,
                         repetitions=fmt.repetitions, box_format=fmt.box_format)
  else:
    writers.write_one_pass(tracker_dir, seq.name, runs[0], times[:, 0],
                           one_based=seq.one_based, box_format=fmt.box_format)


def _run_chunk(model, variables, static, traced, tracker_dirs, sequences, fmt, *, num_slots,
               num_lanes_settings, progress, read_frame, skip_initialize=5,
               pad_multiple=64):
  """Tracks every (setting of `tracker_dirs`, sequence) pair not yet done.

  Args:
    traced: {field: (K,)} traced values of the K settings of this chunk.
    tracker_dirs: K result folders, one per setting.
    num_lanes_settings: settings axis length (K padded to a multiple of the devices).
  """
  mesh = _mesh()
  zeros_fn, init_fn, step_fn, refine_fn = _lane_fns(model, static, mesh)
  k_real, kc, ns = len(tracker_dirs), num_lanes_settings, num_slots
  pad = {f: np.concatenate([v, np.repeat(v[-1:], kc - k_real)]) for f, v in traced.items()}
  traced_dev = jax.device_put(pad, NamedSharding(mesh, P("lanes")))
  replicated = NamedSharding(mesh, P())
  variables = jax.device_put(variables, replicated)
  states = zeros_fn(variables, traced_dev, ns, kc)
  todo = [s for s in sequences
          if any(not writers.is_done(fmt, d, s.name) for d in tracker_dirs)]
  queue = iter(todo)
  slots = [None] * ns

  def refill(j):
    slots[j] = None
    for seq in queue:
      lanes = [None] * kc
      for k, d in enumerate(tracker_dirs):
        if not writers.is_done(fmt, d, seq.name):
          gen = _protocol_job(fmt, seq, skip_initialize)
          lanes[k] = [gen, next(gen)]
      slots[j] = _Slot(seq, lanes)
      return

  for j in range(ns):
    refill(j)
  pool = concurrent.futures.ThreadPoolExecutor(min(ns, 8)) if ns > 1 else None
  try:
    while any(slots):
      t = [min(l[1].frame for l in s.lanes if l) if s else None for s in slots]
      busy = [j for j in range(ns) if slots[j]]
      args = [(slots[j].seq.frames[t[j]], slots[j].seq.name, t[j]) for j in busy]
      images = list(pool.map(lambda a: read_frame(*a), args) if pool
                    else (read_frame(*a) for a in args))
      frames = [None] * ns
      for j, img in zip(busy, images):
        frames[j] = img
      stacked, sizes = adapter.pad_frames(frames, pad_multiple)
      stacked = jax.device_put(stacked, replicated)     # once for init and step
      init_lanes, upd = [], np.zeros((ns, kc), bool)
      for j in busy:
        for k, lane in enumerate(slots[j].lanes):
          if lane and lane[1].frame == t[j]:
            if isinstance(lane[1], runner._Init):  # pylint: disable=protected-access
              init_lanes.append((j, k))
            else:
              upd[j, k] = True
      seconds = np.zeros((ns, kc))
      out_boxes = np.full((ns, kc, 4), np.nan)
      out_scores = np.zeros((ns, kc))
      if init_lanes:
        t0 = time.perf_counter()
        idx = _bucket(np.asarray([j * kc + k for j, k in init_lanes]), ns * kc)
        slot, kk = idx // kc, idx % kc
        boxes = np.stack([np.asarray(slots[j].lanes[k][1].box, np.float32)
                          for j, k in zip(slot, kk)])
        states = init_fn(variables, traced_dev, states, stacked, sizes, slot, kk, boxes)
        jax.block_until_ready(states)
        for j, k in init_lanes:
          seconds[j, k] = (time.perf_counter() - t0) / len(init_lanes)
          out_boxes[j, k] = slots[j].lanes[k][1].box
          out_scores[j, k] = 1.0
      if upd.any():
        t0 = time.perf_counter()
        states, out = step_fn(variables, traced_dev, states, stacked, jnp.asarray(upd))
        out = jax.device_get(out)
        due = np.flatnonzero((upd & (out["iters"] > 0)).reshape(-1))
        if due.size:   # SD-GN steps due on some lanes (schedule, distractors)
          idx = _bucket(due, ns * kc)
          states = refine_fn(variables, traced_dev, states, idx // kc, idx % kc,
                             out["iters"].reshape(-1)[idx])
          jax.block_until_ready(states)
        seconds[upd] = (time.perf_counter() - t0) / upd.sum()
        out_boxes[upd] = np.asarray(out["box"], np.float64)[upd]
        out_scores[upd] = np.asarray(out["score"], np.float64)[upd]
      served = len(init_lanes) + int(upd.sum())
      progress.step(frames=served)
      for j in busy:
        s = slots[j]
        for k, lane in enumerate(s.lanes):
          if not lane or lane[1].frame != t[j]:
            continue
          try:
            lane[1] = lane[0].send(runner._Step(  # pylint: disable=protected-access
                out_boxes[j, k].copy(), float(out_scores[j, k]), float(seconds[j, k]),
                (frames[j].shape[1], frames[j].shape[0])))
          except StopIteration as stop:
            s.lanes[k] = None
            _write_result(fmt, tracker_dirs[k], s.seq, stop.value)
            progress.step(pairs=1)
        if not any(s.lanes):
          refill(j)
  finally:
    if pool is not None:
      pool.shutdown(wait=True)


# -- the sweep -----------------------------------------------------------------


def _params_key(params) -> str:
  text = json.dumps(dataclasses.asdict(params), sort_keys=True, default=list)
  return hashlib.sha1(text.encode()).hexdigest()[:12]


def variables_fingerprint(variables) -> str:
  h = hashlib.sha1()
  for leaf in jax.tree.leaves(variables):
    a = np.asarray(leaf)
    h.update(str((a.shape, a.dtype)).encode())
    h.update(a.tobytes())
  return h.hexdigest()[:16]


def _scalars(result):
  return {k: v for k, v in result.items()
          if isinstance(v, (int, float)) or v is None}


def _check_meta(out_dir, meta):
  path = os.path.join(out_dir, "meta.json")
  if os.path.exists(path):
    old = json.load(open(path))
    if old != meta:
      diff = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
      raise ValueError(f"{path}: this folder holds a sweep of another {', '.join(diff)}; "
                       f"use another output folder")
  else:
    os.makedirs(out_dir, exist_ok=True)
    writers.atomic_write_text(path, json.dumps(meta, indent=1))


def run_sweep(config, variables, benchmark, dataset_dir, output_dir, settings: Sequence[Dict],
              *, split=None, sequences=None, protocol=None, settings_per_chunk=35,
              batch_sequences=2, log_every_s=10.0, read_frame=None, plot=True, label=None):
  """Scores `settings` (dicts of config.tracking values) on a benchmark; returns the summary
  (also ``output_dir/sweep.json``). Arguments as `evaluate_lib.evaluate_model`; `label` names
  the data in the summary and plot (default: the benchmark, with the protocol if given)."""
  if families.name_of(config) != "duml":
    raise ValueError("the sweep runs DuML configs (tracking/tracker.py); NanoTrack / "
                     "DuML-nano configs are not supported")
  if not settings:
    raise ValueError("no settings to sweep")
  _, _, overrides = evaluate_lib._bench(benchmark)  # pylint: disable=protected-access
  bench_name = evaluate_lib.run_name(benchmark, split, protocol)
  fmt = writers.benchmark_format(bench_name)
  label = label or (f"{benchmark} ({protocol} protocol)" if protocol else fmt.name)
  seqs = evaluate_lib.load_sequences(benchmark, dataset_dir, split, sequences)
  runner._check_names(seqs)  # pylint: disable=protected-access
  if fmt.layout != writers.VOT:
    runner._require_ground_truth(bench_name, seqs)  # pylint: disable=protected-access
  _check_meta(output_dir, {"benchmark": bench_name, "sequences": [s.name for s in seqs],
                           "variables": variables_fingerprint(variables)})
  model = duml_lib.build_model(config.model)
  params = [tracker_lib.tracking_params(evaluate_lib.with_tracking(config, v, overrides),
                                        overrides) for v in settings]
  keys = [_params_key(p) for p in params]
  run_dirs = [os.path.join(output_dir, "runs", key) for key in keys]
  score_path = lambda i: os.path.join(run_dirs[i], "score.json")
  # Settings with equal parameters share a folder: run the first of each, once.
  first = {}
  for i, key in enumerate(keys):
    first.setdefault(key, i)
  todo = [i for i in first.values() if not os.path.exists(score_path(i))]
  groups = {}
  for i in todo:
    groups.setdefault(split_params(params[i])[0], []).append(i)
  n_dev = len(jax.local_devices())
  ns = max(1, min(int(batch_sequences), len(seqs)))
  chunks = []
  for static, members in groups.items():
    kc = min(int(settings_per_chunk), len(members))
    chunks += [(static, members[c:c + kc], _round_up(kc, n_dev))
               for c in range(0, len(members), kc)]
  pending = [(i, s) for i in todo for s in seqs if not writers.is_done(
      fmt, os.path.join(run_dirs[i], TRACKER_NAME), s.name)]
  logging.info("sweep: %d settings (%d to run, %d static groups, %d chunks), %d sequences, "
               "%d x %d lanes on %d devices -> %s", len(settings), len(todo), len(groups),
               len(chunks), len(seqs), ns, max((c[2] for c in chunks), default=0), n_dev,
               output_dir)
  progress = _Progress(len(pending), sum(len(s) for _, s in pending), log_every_s)
  read = frames_lib.read_frame if read_frame is None else read_frame
  for c, (static, members, kc) in enumerate(chunks):
    dirs = [os.path.join(run_dirs[i], TRACKER_NAME) for i in members]
    traced = stack_traced([split_params(params[i])[1] for i in members])
    _run_chunk(model, variables, static, traced, dirs, seqs, fmt, num_slots=ns,
               num_lanes_settings=kc, progress=progress, read_frame=read)
    for i in members:
      result = runner.score(bench_name, seqs, run_dirs[i], [TRACKER_NAME])[TRACKER_NAME]
      writers.atomic_write_text(score_path(i), json.dumps(
          {"values": settings[i], **_scalars(result)}, indent=1))
    progress.step(force=True, what=f" chunk {c + 1}/{len(chunks)}")
  return summarise(config, settings, [score_path(first[k]) for k in keys],
                   fmt, overrides, output_dir, plot=plot, frames_per_s=progress.fps,
                   label=label)


def cumulative_mean(values):
  v = np.asarray(values, np.float64)
  return (np.cumsum(v) / np.arange(1, len(v) + 1)).tolist()


def summarise(config, settings, score_paths, fmt, overrides, output_dir, *, plot=True,
              frames_per_s=None, label=None):
  """sweep.json, cumulative.png and the best setting from the per-setting scores."""
  entries = []
  for i, (values, path) in enumerate(zip(settings, score_paths)):
    score = json.load(open(path))
    score.pop("values", None)
    entries.append({"index": i, "values": values, "dir": os.path.dirname(path), **score})
  headline = HEADLINE[fmt.layout]
  a_key, r_key = CURVES[fmt.layout]
  num = lambda v: np.nan if v is None else float(v)
  # EAO is undefined (None) on sequences shorter than its range: then accuracy decides.
  best = max(entries, key=lambda e: (np.nan_to_num(num(e.get(headline)), nan=-np.inf),
                                     np.nan_to_num(num(e.get(a_key)), nan=-np.inf)))
  metric_keys = [k for k in entries[0] if k not in ("index", "values", "dir", "fps")]
  summary = writers._plain({  # pylint: disable=protected-access
      "benchmark": label or fmt.name, "num_settings": len(entries),
      "mean": {k: float(np.mean([num(e.get(k)) for e in entries])) for k in metric_keys},
      "cumulative": {a_key: cumulative_mean([num(e[a_key]) for e in entries]),
                     r_key: cumulative_mean([num(e[r_key]) for e in entries])},
      "best": {"index": best["index"], "values": best["values"], headline: best[headline],
               "flags": setting_flags(config, best["values"], overrides)},
      "frames_per_s": frames_per_s,
      "settings": entries,
  })
  os.makedirs(output_dir, exist_ok=True)
  writers.atomic_write_text(os.path.join(output_dir, "sweep.json"),
                            json.dumps(summary, indent=1))
  if plot:
    from duml_jax.evaluation import plots  # pylint: disable=g-import-not-at-top
    plots.plot_cumulative([e[a_key] for e in entries], [e[r_key] for e in entries],
                          os.path.join(output_dir, "cumulative.png"), names=(a_key, r_key),
                          title=f"{len(entries)} tracking settings on {label or fmt.name}")
  return summary


def format_summary(summary) -> str:
  a_key, r_key = list(summary["cumulative"])
  m, b = summary["mean"], summary["best"]
  headline = [k for k in b if k not in ("index", "values", "flags")][0]
  num = lambda v: "-" if v is None else f"{v:.4g}"
  lines = [f"{summary['num_settings']} settings on {summary['benchmark']}: mean "
           + ", ".join(f"{k} {num(m.get(k))}" for k in (a_key, r_key, headline)),
           f"best ({headline} {num(b[headline])}, setting {b['index']}): " + " ".join(b["flags"])]
  return "\n".join(lines)


# -- command line ----------------------------------------------------------------


def _define_flags():
  """Flags, defined only when run as a script (the module is imported next to others)."""
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file("config", None, "Config (default: the checkpoint's).",
                                  lock_config=True)
  flags.DEFINE_string("checkpoint", None, "train.py workdir")
  flags.DEFINE_integer("step", None, "checkpoint step (default: latest)")
  flags.DEFINE_enum("benchmark", None, sorted(evaluate_lib.BENCHMARKS) + [SYNTHETIC],
                    "benchmark; 'synthetic': the config's held-out synthetic sequences")
  flags.DEFINE_string("dataset_dir", None, "the benchmark's folder (synthetic: where the "
                      "sequences are written, default OUTPUT_DIR/eval_data)")
  flags.DEFINE_string("output_dir", None, "results, sweep.json, cumulative.png")
  flags.DEFINE_integer("num_settings", 140, "settings drawn from --ranges")
  flags.DEFINE_integer("seed", 0, "seed of the drawn settings")
  flags.DEFINE_string("ranges", None, "KEY=LOW:HIGH;... (default: " + ";".join(
      f"{k}={lo:g}:{hi:g}" for k, (lo, hi) in DEFAULT_RANGES.items()) + ")")
  flags.DEFINE_string("grid", None, "KEY=V1,V2;... : every combination instead of draws")
  flags.DEFINE_enum("protocol", None, ["vot"], "run the VOT re-init protocol instead")
  flags.DEFINE_string("split", None, "got10k: val (default); lasot/trackingnet too")
  flags.DEFINE_list("sequences", [], "only these sequences")
  flags.DEFINE_integer("settings_per_chunk", 35, "settings tracked at once (lanes axis 2)")
  flags.DEFINE_integer("batch_sequences", 2, "sequences tracked at once (lanes axis 1)")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  console.quiet_other_libraries()
  f = flags.FLAGS
  if not (f.output_dir and f.benchmark):
    raise app.UsageError("--benchmark and --output_dir are required")
  if f.grid and f.ranges:
    raise app.UsageError("give --grid or --ranges, not both")
  if not (f.checkpoint or f.config):
    raise app.UsageError("give --checkpoint (a train.py workdir) and/or --config")
  config, variables = evaluate_lib.config_and_variables(f.config, f.checkpoint, f.step)
  benchmark, dataset_dir, label = f.benchmark, f.dataset_dir, None
  if benchmark == SYNTHETIC:
    label = "held-out synthetic" + (f" ({f.protocol} protocol)" if f.protocol else "")
    benchmark = "otb"
    dataset_dir = evaluate_lib.synthetic_eval_dir(
        config, dataset_dir or os.path.join(f.output_dir, "eval_data"))
  elif not dataset_dir:
    raise app.UsageError("--dataset_dir is required")
  if f.grid:
    settings = combinations(parse_grid(f.grid))
  else:
    ranges = parse_ranges(f.ranges) if f.ranges else DEFAULT_RANGES
    settings = sample_settings(config, ranges, f.num_settings, f.seed)
  summary = run_sweep(config, variables, benchmark, dataset_dir, f.output_dir, settings,
                      split=f.split, sequences=f.sequences or None, protocol=f.protocol,
                      settings_per_chunk=f.settings_per_chunk,
                      batch_sequences=f.batch_sequences, label=label)
  print(format_summary(summary))


if __name__ == "__main__":
  _define_flags()
  cli.run(main)

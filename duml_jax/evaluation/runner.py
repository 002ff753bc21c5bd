"""Evaluation protocols driving any batched tracker, with resume, and scoring.

The tracker interface is `BatchTracker`: N lanes advanced together, each lane
(re)initialised or updated under a boolean mask. The runner gives each lane a
sequence; when a lane's sequence ends, the lane is refilled with the next
sequence not yet done and re-initialised through the mask. Results do not
depend on the number of lanes for a tracker whose lanes are independent.

Protocols:
* `run_one_pass` (OPE: OTB, UAV123, NfS, LaSOT, TrackingNet, GOT-10k): init
  on ``seq.boxes[seq.start_frame]``, track to the end; frames before the start
  frame are written as NaN. GOT-10k gets 3 result files per sequence: a
  deterministic tracker (``tracker.deterministic``, default True) is run once
  and the run is written 3 times, otherwise it is run 3 times.
* `run_vot_baseline` (VOT supervised): a failure is a frame whose
  vot-toolkit overlap with the ground truth is 0; the tracker is
  re-initialised 5 frames after the failure frame.

Each sequence's files are written atomically when it finishes; on a rerun the
finished sequences are skipped (resume). Per-frame time is the wall time of
the batched tracker call divided by the number of lanes it advanced.
"""
import concurrent.futures
import dataclasses
import os
import time
from typing import Callable, Optional, Protocol, runtime_checkable

from absl import logging
import numpy as np

from duml_jax.data import frames as frames_lib
from duml_jax.evaluation import metrics
from duml_jax.evaluation import progress as progress_lib
from duml_jax.evaluation import provenance
from duml_jax.evaluation import writers


@runtime_checkable
class BatchTracker(Protocol):
  """N independent tracking lanes advanced together.

  Attributes:
    name: result folder name (``OUT/<name>/``).
    batch_size: number of lanes N.
    deterministic: optional; False makes GOT-10k run 3 times (default True).
    settings: optional; the record of what made its results
      (`provenance.settings`), kept in ``OUT/<name>/settings.json``: a rerun
      with other settings is refused unless ``overwrite`` (None: unchecked).

  Methods:
    init(frames, boxes, mask): (re)initialise every lane i with ``mask[i]``
      on ``frames[i]`` (uint8 RGB HxWx3) and ``boxes[i]`` (``x, y, w, h``
      0-based). ``frames[i]`` is None and ``boxes[i]`` meaningless where
      ``mask[i]`` is False; those lanes keep their state.
    update(frames, mask) -> (boxes (N, 4), confidence (N,)): advance lanes
      where ``mask[i]`` by one frame; values of other lanes are ignored.
  """
  name: str
  batch_size: int

  def init(self, frames, boxes, mask) -> None:
    ...

  def update(self, frames, mask):
    ...


class SequentialAdapter:
  """A `BatchTracker` made of N simple trackers, one per lane.

  A simple tracker has ``init(frame, box)`` and ``update(frame) -> (box,
  score)``; `factory()` creates a fresh one at every (re)initialisation.
  """

  def __init__(self, factory, batch_size=1, name="tracker",
               deterministic=True):
    self.name = name
    self.batch_size = int(batch_size)
    self.deterministic = deterministic
    self._factory = factory
    self._lanes = [None] * self.batch_size

  def init(self, frames, boxes, mask):
    for i in np.flatnonzero(mask):
      tracker = self._factory()
      tracker.init(frames[i], np.asarray(boxes[i], np.float64))
      self._lanes[i] = tracker

  def update(self, frames, mask):
    boxes = np.full((self.batch_size, 4), np.nan)
    scores = np.zeros(self.batch_size)
    for i in np.flatnonzero(mask):
      if self._lanes[i] is None:
        raise RuntimeError(f"{self.name}: lane {i} updated before init")
      box, score = self._lanes[i].update(frames[i])
      boxes[i], scores[i] = np.asarray(box, np.float64), float(score)
    return boxes, scores


# --------------------------------------------------------------------------
# Lane scheduling. A job is a generator per sequence that yields `_Init` /
# `_Update` requests, receives a `_Step` for each, and returns what the
# sequence's writer needs.


@dataclasses.dataclass(frozen=True)
class _Init:
  frame: int
  box: np.ndarray


@dataclasses.dataclass(frozen=True)
class _Update:
  frame: int


@dataclasses.dataclass(frozen=True)
class _Step:
  box: np.ndarray
  score: float
  seconds: float
  size: tuple  # image (width, height)


@dataclasses.dataclass
class _Job:
  seq: object
  gen: object
  finish: Callable


def _drive(tracker, jobs, read_frame, progress, read_threads=0):
  """Runs `jobs` on the tracker's lanes until all have finished.

  With ``read_threads > 0`` the lanes' frames of one step are decoded by a
  thread pool (OpenCV releases the GIL); results do not change.
  """
  n = int(tracker.batch_size)
  pool = (concurrent.futures.ThreadPoolExecutor(read_threads)
          if read_threads > 0 else None)
  try:
    _drive_lanes(tracker, n, iter(jobs), read_frame, progress, pool)
  finally:
    progress.close()
    if pool is not None:
      pool.shutdown(wait=True)


def _drive_lanes(tracker, n, queue, read_frame, progress, pool):
  """The lane loop of `_drive`."""
  lanes = [None] * n  # [job, pending request]

  def refill(i):
    lanes[i] = None
    for job in queue:
      lanes[i] = [job, next(job.gen)]
      return

  for i in range(n):
    refill(i)
  while any(lanes):
    init_mask, upd_mask = np.zeros(n, bool), np.zeros(n, bool)
    init_frames, upd_frames = [None] * n, [None] * n
    init_boxes = np.zeros((n, 4))
    sizes = [None] * n
    busy = [i for i in range(n) if lanes[i] is not None]
    args = [(lanes[i][0].seq.frames[lanes[i][1].frame], lanes[i][0].seq.name,
             lanes[i][1].frame) for i in busy]
    images = (pool.map(lambda a: read_frame(*a), args) if pool is not None
              else (read_frame(*a) for a in args))
    for i, img in zip(busy, images):
      req = lanes[i][1]
      sizes[i] = (img.shape[1], img.shape[0])
      if isinstance(req, _Init):
        init_mask[i], init_frames[i], init_boxes[i] = True, img, req.box
      else:
        upd_mask[i], upd_frames[i] = True, img
    seconds = np.zeros(n)
    out_boxes, out_scores = np.full((n, 4), np.nan), np.zeros(n)
    if init_mask.any():
      t0 = time.perf_counter()
      tracker.init(init_frames, init_boxes.copy(), init_mask.copy())
      seconds[init_mask] = (time.perf_counter() - t0) / init_mask.sum()
      out_boxes[init_mask] = init_boxes[init_mask]
      out_scores[init_mask] = 1.0
    if upd_mask.any():
      t0 = time.perf_counter()
      boxes, scores = tracker.update(upd_frames, upd_mask.copy())
      seconds[upd_mask] = (time.perf_counter() - t0) / upd_mask.sum()
      out_boxes[upd_mask] = np.asarray(boxes, np.float64)[upd_mask]
      out_scores[upd_mask] = np.asarray(scores, np.float64)[upd_mask]
    progress.step(frames=int(init_mask.sum() + upd_mask.sum()))
    for i, lane in enumerate(lanes):
      if lane is None:
        continue
      job = lane[0]
      try:
        lane[1] = job.gen.send(_Step(out_boxes[i].copy(), out_scores[i],
                                     float(seconds[i]), sizes[i]))
      except StopIteration as stop:
        job.finish(stop.value)
        progress.step(seqs=1)
        refill(i)


def _check_names(sequences):
  names = [s.name for s in sequences]
  dup = {n for n in names if names.count(n) > 1}
  if dup:
    raise ValueError(f"duplicate sequence names: {sorted(dup)}")


def _threads(tracker, read_threads):
  if read_threads is not None:
    return int(read_threads)
  n = int(tracker.batch_size)
  return min(n, 8) if n > 1 else 0


def _frame_reader(read_frame):
  return frames_lib.read_frame if read_frame is None else read_frame


def _check_size(seq, first, first_size, f, size):
  """Frames of one sequence must share a size (boxes are clipped to it, crops assume it)."""
  if size != first_size:
    raise frames_lib.FrameError(
        f"sequence {seq.name!r}: frame {f} ({seq.frames[f]}) is {size[0]}x{size[1]} but "
        f"frame {first} ({seq.frames[first]}) is {first_size[0]}x{first_size[1]}: all frames "
        "of a sequence must have one size")


# --------------------------------------------------------------------------
# One-pass (OPE, GOT-10k).


def _one_pass_job(seq, runs):
  """Tracks `seq` `runs` times; returns ([boxes per run], times (N, runs))."""
  n, s = len(seq), seq.start_frame
  init_box = np.asarray(seq.boxes[s], np.float64)
  if not np.all(np.isfinite(init_box)):
    raise ValueError(f"sequence {seq.name}: no init box at frame {s}")
  all_boxes, all_times = [], np.zeros((n, runs))
  for r in range(runs):
    boxes = np.full((n, 4), np.nan)
    step = yield _Init(s, init_box)
    boxes[s], all_times[s, r], size = init_box, step.seconds, step.size
    for f in range(s + 1, n):
      step = yield _Update(f)
      _check_size(seq, s, size, f, step.size)
      boxes[f], all_times[f, r] = step.box, step.seconds
    all_boxes.append(boxes)
  return all_boxes, all_times


def run_one_pass(tracker, sequences, out_dir, benchmark="OTB", *,
                 read_frame=None, log_every_s=10.0, write_zip=None,
                 read_threads=None, overwrite=False):
  """One-pass evaluation of `tracker` on `sequences` with resume.

  Args:
    tracker: a `BatchTracker`.
    sequences: `duml_jax.data.sequence.Sequence` objects.
    out_dir: the benchmark's output folder; results go to
      ``out_dir/<tracker.name>/`` in the benchmark's format (`writers`).
    benchmark: benchmark name (`writers.benchmark_format`): one-pass or
      GOT-10k layout.
    read_frame: ``(path, seq_name, index) -> uint8 RGB`` (default
      `duml_jax.data.frames.read_frame`).
    log_every_s: seconds between progress log lines (`progress.Progress`:
      a live bar instead when stderr is a terminal).
    read_threads: threads decoding the lanes' frames (default
      ``min(batch_size, 8)`` when there is more than one lane, else none).
    write_zip: write the submission zip (default: TrackingNet, and GOT-10k
      when the name ends in "test" or every sequence has
      ``attributes["split"] == "test"``).
    overwrite: results of other settings already in the tracker's folder
      are refused (False), replaced (True: the folder is emptied first) or
      replaced only when the settings differ ("stale"); `provenance.prepare`.

  Returns:
    The tracker's result folder.
  """
  fmt = writers.benchmark_format(benchmark)
  if fmt.layout == writers.VOT:
    raise ValueError(f"{benchmark}: use run_vot_baseline for VOT")
  _check_names(sequences)
  tracker_dir = os.path.join(out_dir, tracker.name)
  runs = 1
  if fmt.layout == writers.GOT10K and not getattr(tracker, "deterministic",
                                                  True):
    runs = fmt.repetitions

  def finisher(seq):
    def finish(value):
      boxes, times = value
      if fmt.layout == writers.GOT10K:
        writers.write_got10k(tracker_dir, seq.name, boxes, times,
                             one_based=seq.one_based,
                             repetitions=fmt.repetitions,
                             box_format=fmt.box_format)
      else:
        writers.write_one_pass(tracker_dir, seq.name, boxes[0], times[:, 0],
                               one_based=seq.one_based,
                               box_format=fmt.box_format)
    return finish

  provenance.prepare(tracker_dir, getattr(tracker, "settings", None), overwrite)
  todo = _pending(fmt, tracker_dir, sequences)
  jobs = (_Job(s, _one_pass_job(s, runs), finisher(s)) for s in todo)
  progress = progress_lib.Progress(f"{tracker.name} on {benchmark}", len(todo),
                       runs * sum(len(s) - s.start_frame for s in todo),
                       log_every_s)
  _drive(tracker, jobs, _frame_reader(read_frame), progress,
         _threads(tracker, read_threads))
  if write_zip is None:
    write_zip = fmt.submission_zip or (
        fmt.layout == writers.GOT10K and bool(sequences) and all(
            s.attributes.get("split") == "test" for s in sequences))
  if write_zip:
    path = writers.write_submission_zip(
        fmt, tracker_dir, [s.name for s in sequences],
        os.path.join(out_dir, f"{tracker.name}.zip"))
    logging.info("submission zip: %s", path)
  return tracker_dir


def _pending(fmt, tracker_dir, sequences, vot_repetitions=1):
  todo = [s for s in sequences
          if not writers.is_done(fmt, tracker_dir, s.name, vot_repetitions)]
  if len(todo) < len(sequences):
    logging.info("%s: %d/%d sequences already done, skipped", tracker_dir,
                 len(sequences) - len(todo), len(sequences))
  return todo


# --------------------------------------------------------------------------
# VOT baseline (supervised, re-initialising).


def vot_ground_truth(seq):
  """Ground-truth regions of a VOT sequence (0-based), one array per frame.

  Polygons, else boxes; rows the file gave as 4 numbers (the loader marks
  them in ``attributes["rectangle_rows"]``) stay rectangles, since vot-toolkit
  rasterises a rectangle one pixel narrower than its corner polygon and
  initialises the tracker with the rectangle itself.
  """
  boxes = np.asarray(seq.boxes, np.float64)
  if seq.polygons is None:
    return list(boxes)
  rects = seq.attributes.get("rectangle_rows")
  if rects is None:
    rects = np.zeros(len(boxes), bool)
  return [b if r else p for b, p, r in zip(
      boxes, np.asarray(seq.polygons, np.float64), rects)]


def _file_regions(regions, one_based):
  return [writers.to_file_coords(g, one_based) for g in regions]


def _vot_job(seq, runs, skip):
  """Supervised protocol; returns ([trajectory per run], times (N, runs))."""
  n = len(seq)
  gt = vot_ground_truth(seq)
  gt_file = _file_regions(gt, seq.one_based)
  trajectories, all_times = [], np.zeros((n, runs))
  size = None     # of frame 0, the first frame initialised on
  for r in range(runs):
    traj = [metrics.VOT_SKIPPED] * n
    f = 0
    while f < n:
      step = yield _Init(f, metrics.vot_init_box(gt[f]))
      size = step.size if size is None else size
      _check_size(seq, 0, size, f, step.size)
      traj[f], all_times[f, r] = metrics.VOT_INIT, step.seconds
      f += 1
      while f < n:
        step = yield _Update(f)
        _check_size(seq, 0, size, f, step.size)
        all_times[f, r] = step.seconds
        box = step.box
        ok = np.all(np.isfinite(box)) and metrics.vot_overlap(
            writers.to_file_coords(box, seq.one_based), gt_file[f],
            step.size) > 0
        if not ok:
          traj[f] = metrics.VOT_FAILURE
          f += skip
          break
        traj[f] = box
        f += 1
    trajectories.append(traj)
  return trajectories, all_times


def run_vot_baseline(tracker, sequences, out_dir, benchmark="VOT2018", *,
                     repetitions=1, skip_initialize=5, read_frame=None,
                     log_every_s=10.0, read_threads=None, overwrite=False):
  """VOT baseline experiment (vot-toolkit 0.9 ``SupervisedExperiment``).

  Each lane starts at frame 0 with the "preserve area" box of the ground
  truth (`metrics.vot_init_box`). A frame whose overlap (`metrics.vot_overlap`,
  clipped to the image, in file coordinates) is 0 is a failure (code 2); the
  next ``skip_initialize - 1`` frames are skipped (code 0) and the lane is
  re-initialised (code 1) ``skip_initialize`` frames after the failure.

  Args:
    tracker: a `BatchTracker`.
    sequences: VOT `Sequence` objects (polygons or boxes as ground truth).
    out_dir: results go to ``out_dir/<tracker.name>/baseline/<seq>/``.
    benchmark: VOT edition name (for the format).
    repetitions: runs per sequence (``<seq>_001.txt`` ...); the toolkit uses
      15 for stochastic trackers, 1 suffices for a deterministic one.
    skip_initialize: frames from failure to re-initialisation.
    read_frame, log_every_s, read_threads, overwrite: as `run_one_pass`.

  Returns:
    The tracker's result folder.
  """
  fmt = writers.benchmark_format(benchmark)
  if fmt.layout != writers.VOT:
    raise ValueError(f"{benchmark} is not a VOT benchmark")
  _check_names(sequences)
  tracker_dir = os.path.join(out_dir, tracker.name)

  def finisher(seq):
    def finish(value):
      trajs, times = value
      writers.write_vot(tracker_dir, seq.name, trajs, times,
                        one_based=seq.one_based, box_format=fmt.box_format)
    return finish

  provenance.prepare(tracker_dir, getattr(tracker, "settings", None), overwrite)
  todo = _pending(fmt, tracker_dir, sequences, repetitions)
  jobs = (_Job(s, _vot_job(s, repetitions, skip_initialize), finisher(s))
          for s in todo)
  progress = progress_lib.Progress(f"{tracker.name} on {benchmark}", len(todo),
                       repetitions * sum(len(s) for s in todo), log_every_s)
  _drive(tracker, jobs, _frame_reader(read_frame), progress,
         _threads(tracker, read_threads))
  return tracker_dir


def run_benchmark(tracker, sequences, out_dir, benchmark, **kwargs):
  """`run_vot_baseline` for VOT benchmarks, else `run_one_pass`."""
  if writers.benchmark_format(benchmark).layout == writers.VOT:
    return run_vot_baseline(tracker, sequences, out_dir, benchmark, **kwargs)
  return run_one_pass(tracker, sequences, out_dir, benchmark, **kwargs)


# --------------------------------------------------------------------------
# Scoring result files (ours or other trackers').


def image_size(seq):
  """(width, height) from ``attributes['image_size']`` or the first frame."""
  size = seq.attributes.get("image_size") or seq.attributes.get("resolution")
  if size is not None:
    return int(size[0]), int(size[1])
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(seq.frames[0]) as im:
      return im.size
  except OSError as e:
    raise frames_lib.FrameError(
        f"cannot read the size of {seq.frames[0]} (sequence {seq.name})") from e


def _fps(time_files):
  """got10k's speed: mean over sequences of mean(1 / t) over t > 0."""
  speeds = []
  for path in time_files:
    if os.path.exists(path):
      t = np.asarray(writers.read_times(path), np.float64).reshape(-1)
      t = t[np.isfinite(t) & (t > 0)]
      if t.size:
        speeds.append(float(np.mean(1.0 / t)))
  return float(np.mean(speeds)) if speeds else None


def _require_ground_truth(benchmark, sequences):
  for s in sequences:
    gt = s.boxes[s.start_frame + 1:]
    if len(gt) and np.isfinite(gt).all(axis=1).any():
      return
  raise ValueError(f"{benchmark}: no ground truth after the first frame "
                   f"(test split?); submit the result files instead")


def score_one_pass(sequences, tracker_dir, benchmark="OTB"):
  """`metrics.one_pass_summary` of the ``<seq>.txt`` files in `tracker_dir`.

  `Sequence.absent` frames count as failures only where the benchmark says
  so (LaSOT, `writers.BenchmarkFormat.absent_fails`).
  """
  fmt = writers.benchmark_format(benchmark)
  _require_ground_truth(benchmark, sequences)
  curves = {}
  for s in sequences:
    pred = writers.read_one_pass(tracker_dir, s.name, one_based=s.one_based)
    if len(pred) != len(s):
      raise writers.ResultFileError(f"{tracker_dir}/{s.name}.txt: {len(pred)} boxes for "
                                    f"{len(s)} frames")
    curves[s.name] = metrics.one_pass_curves(
        pred, s.boxes, start_frame=s.start_frame,
        absent=s.absent if fmt.absent_fails else None)
  out = metrics.one_pass_summary(curves)
  out["fps"] = _fps([writers.one_pass_paths(tracker_dir, s.name)[1]
                     for s in sequences])
  return out


def score_got10k(sequences, tracker_dir, benchmark="GOT-10k"):
  """`metrics.got10k_summary` (val split) of the runs in `tracker_dir`.

  Visible frames: ``attributes['cover'] > 0`` when the reader provides it,
  else not ``absent``. Boxes are clipped to the image in file coordinates.
  """
  _require_ground_truth(benchmark, sequences)
  ious = {}
  for s in sequences:
    runs = writers.read_got10k(tracker_dir, s.name, one_based=s.one_based)
    cover = s.attributes.get("cover")
    if cover is not None:
      visible = np.asarray(cover) > 0
    elif s.absent is not None:
      visible = ~np.asarray(s.absent, bool)
    else:
      visible = None
    ious[s.name] = metrics.got10k_sequence_ious(
        [writers.to_file_coords(r, s.one_based) for r in runs],
        writers.to_file_coords(s.boxes, s.one_based), visible=visible,
        bound=image_size(s))
  out = metrics.got10k_summary(ious)
  out["fps"] = _fps([writers.got10k_paths(tracker_dir, s.name)[1]
                     for s in sequences])
  return out


def score_vot(sequences, tracker_dir, benchmark="VOT2018", burnin=10):
  """`metrics.vot_summary` of the baseline runs in `tracker_dir`."""
  fmt = writers.benchmark_format(benchmark)
  stats = {}
  for s in sequences:
    runs = writers.read_vot(tracker_dir, s.name, one_based=s.one_based)
    runs = [[e if np.isscalar(e) else writers.to_file_coords(e, s.one_based)
             for e in traj] for traj in runs]
    stats[s.name] = metrics.vot_sequence_stats(
        runs, _file_regions(vot_ground_truth(s), s.one_based),
        bounds=image_size(s), burnin=burnin)
  out = metrics.vot_summary(stats, fmt.eao_range)
  out["fps"] = _fps([writers.vot_paths(tracker_dir, s.name)[1]
                     for s in sequences])
  return out


def score(benchmark, sequences, out_dir, tracker_names):
  """Scores each folder ``out_dir/<name>``; returns the report's "trackers"."""
  layout = writers.benchmark_format(benchmark).layout
  fn = {writers.ONE_PASS: score_one_pass, writers.GOT10K: score_got10k,
        writers.VOT: score_vot}[layout]
  return {name: fn(sequences, os.path.join(out_dir, name), benchmark)
          for name in tracker_names}


def evaluate(benchmark, sequences, out_dir, trackers=(), tracker_names=(),
             plot=True, **run_kwargs):
  """Runs `trackers`, scores them and `tracker_names`, writes report + plots.

  Returns:
    The report dict (also in ``out_dir/report.json``), or None when the
    benchmark has no public ground truth (test splits: zips are written).
  """
  names = list(tracker_names)
  for tracker in trackers:
    run_benchmark(tracker, sequences, out_dir, benchmark, **run_kwargs)
    names.append(tracker.name)
  try:
    results = score(benchmark, sequences, out_dir, names)
  except ValueError as e:
    if "no ground truth" not in str(e):
      raise
    logging.warning("%s", e)
    return None
  report = writers.write_report(out_dir, benchmark, results)
  # The table is the caller's to print (evaluate.py, train.py print it once).
  if plot:
    from duml_jax.evaluation import plots  # pylint: disable=g-import-not-at-top
    plots.save_plots(report, out_dir)
  return report

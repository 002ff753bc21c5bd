"""Result files in each benchmark's own format, their readers, and report.json.

Layout under ``OUT/<tracker>/`` (``OUT`` is one benchmark's output folder):

* one-pass (OTB, UAV123, NfS, LaSOT, TrackingNet): ``<seq>.txt``, one
  ``x,y,w,h`` line per frame (NaN before the start frame), and
  ``times/<seq>_time.txt`` (seconds per frame), as got10k's ExperimentOTB.
  TrackingNet uses ``%.2f`` and gets a flat ``OUT/<tracker>.zip``.
* GOT-10k: ``<seq>/<seq>_001.txt`` .. ``_003.txt`` and ``<seq>/<seq>_time.txt``
  (one comma-separated column per run actually tracked), as got10k's
  ExperimentGOT10k; the test split also gets ``OUT/<tracker>.zip``.
* VOT baseline: ``baseline/<seq>/<seq>_001.txt`` with ``1`` (init), ``2``
  (failure), ``0`` (skipped) or ``x,y,w,h`` per line ("%.4f"), and
  ``baseline/<seq>/<seq>_time.txt``.

Boxes are given to and returned by this module in the library's 0-based
convention; with ``one_based=True`` the writers add 1 to x and y (and to every
polygon coordinate) and the readers subtract it.

Every file is written atomically (temporary file + ``os.replace``), the time
file before the result files, so a finished sequence is one whose result
files all exist (`is_done`).
"""
import dataclasses
import glob
import json
import os
import tempfile
import zipfile
from typing import Optional

import numpy as np

from duml_jax import errors

ONE_PASS = "one_pass"
GOT10K = "got10k"
VOT = "vot"


@dataclasses.dataclass(frozen=True)
class BenchmarkFormat:
  """How one benchmark's results are run, written and scored.

  Attributes:
    name: benchmark name as given.
    layout: ONE_PASS, GOT10K or VOT.
    box_format: printf format of one number in result files.
    submission_zip: whether a zip for an evaluation server is written.
    repetitions: result files per sequence (GOT-10k: 3).
    eao_range: VOT EAO sequence-length range, else None.
    absent_fails: one-pass scoring counts `Sequence.absent` frames as
      failures (LaSOT, as pysot); elsewhere absent frames with a box are
      scored like any other (got10k; NaN boxes are always left out).
  """
  name: str
  layout: str
  box_format: str = "%.3f"
  submission_zip: bool = False
  repetitions: int = 1
  eao_range: Optional[tuple] = None
  absent_fails: bool = False


class ResultFileError(errors.UserError, ValueError):
  """A result file (ours or another tracker's, e.g. for --score_only) that cannot be read."""


def benchmark_format(name):
  """The `BenchmarkFormat` for a benchmark name (case-insensitive).

  Known: OTB*, UAV*, NFS*, LaSOT*, TrackingNet*, GOT-10k[-val|-test]
  (``got10k`` also accepted), VOT2016..VOT2019, and ``vot`` (an unnamed
  edition, scored with the VOT2018 EAO range).
  """
  from duml_jax.evaluation import metrics  # pylint: disable=g-import-not-at-top
  key = name.lower().replace("-", "").replace("_", "")
  if key.startswith("lasot"):
    return BenchmarkFormat(name, ONE_PASS, absent_fails=True)
  if key.startswith(("otb", "uav", "nfs")):
    return BenchmarkFormat(name, ONE_PASS)
  if key.startswith("trackingnet"):
    return BenchmarkFormat(name, ONE_PASS, "%.2f", submission_zip=True)
  if key.startswith("got10k"):
    return BenchmarkFormat(name, GOT10K, "%.3f", repetitions=3,
                           submission_zip=key.endswith("test"))
  for edition, rng in metrics.EAO_RANGES.items():
    if key.startswith(edition.lower()):
      return BenchmarkFormat(name, VOT, "%.4f", eao_range=rng)
  if key == "vot":
    return BenchmarkFormat(name, VOT, "%.4f",
                           eao_range=metrics.EAO_RANGES["VOT2018"])
  raise ValueError(f"unknown benchmark {name!r}: expected OTB*, UAV*, NFS*, "
                   f"LaSOT*, TrackingNet*, GOT-10k*, or one of "
                   f"{sorted(metrics.EAO_RANGES)}")


# --------------------------------------------------------------------------
# Atomic file writes.


def _umask():
  """The process's umask (read from /proc where possible: setting it to read it races
  with threads creating files)."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except (OSError, ValueError, IndexError):
    pass
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def _user_mode(fd):
  """mkstemp makes 0600 files: give them the mode open() would (0666 less the umask)."""
  os.fchmod(fd, 0o666 & ~_umask())


def atomic_write_text(path, text):
  """Writes `text` to `path` via a temporary file in the same folder (mode as open() gives)."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_",
                             suffix="_" + os.path.basename(path))
  try:
    _user_mode(fd)
    with os.fdopen(fd, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _format_rows(rows, fmt):
  return "".join(",".join(fmt % v for v in row) + "\n" for row in rows)


def to_file_coords(regions, one_based, sign=1.0):
  """0-based boxes (..., 4) or polygons (..., 8) -> the file's convention.

  With ``one_based`` adds ``sign`` to x and y of boxes and to every polygon
  coordinate (``sign=-1`` converts back); returns a float64 copy.
  """
  regions = np.array(regions, np.float64)
  if one_based:
    if regions.shape[-1] == 4:
      regions[..., :2] += sign
    else:
      regions += sign
  return regions


def _load_rows(path):
  """Reads comma/tab/space separated numbers, one row per non-empty line."""
  rows = []
  with open(path) as f:
    for lineno, line in enumerate(f, 1):
      line = line.strip()
      if not line:
        continue
      try:
        rows.append([float(v) for v in line.replace("\t", ",").replace(
            " ", ",").split(",") if v])
      except ValueError as e:
        raise ResultFileError(f"{path}:{lineno}: cannot parse {line!r}") from e
  return rows


def read_boxes_file(path, one_based=False):
  """(N, 4) boxes from an ``x,y,w,h`` per line file, made 0-based."""
  rows = _load_rows(path)
  if any(len(r) != 4 for r in rows):
    raise ResultFileError(f"{path}: expected 4 numbers per line")
  return to_file_coords(np.array(rows, np.float64).reshape(-1, 4),
                        one_based, -1.0)


def _write_times(path, times):
  times = np.array(times, np.float64)
  if times.ndim == 1:
    times = times[:, None]
  atomic_write_text(path, _format_rows(times, "%.8f"))


def read_times(path):
  """Per-frame seconds (N,) or (N, runs) from a ``*_time.txt`` file."""
  arr = np.array(_load_rows(path), np.float64)
  return arr[:, 0] if arr.ndim == 2 and arr.shape[1] == 1 else arr


# --------------------------------------------------------------------------
# One-pass (OTB-style).


def one_pass_paths(tracker_dir, seq_name):
  return (os.path.join(tracker_dir, f"{seq_name}.txt"),
          os.path.join(tracker_dir, "times", f"{seq_name}_time.txt"))


def write_one_pass(tracker_dir, seq_name, boxes, times, *, one_based,
                   box_format="%.3f"):
  """Writes ``<seq>.txt`` and ``times/<seq>_time.txt``."""
  result, time_path = one_pass_paths(tracker_dir, seq_name)
  _write_times(time_path, times)
  atomic_write_text(result, _format_rows(to_file_coords(boxes, one_based),
                                         box_format))


def read_one_pass(tracker_dir, seq_name, *, one_based):
  """(N, 4) 0-based boxes of ``<seq>.txt``."""
  return read_boxes_file(one_pass_paths(tracker_dir, seq_name)[0], one_based)


# --------------------------------------------------------------------------
# GOT-10k.


def got10k_paths(tracker_dir, seq_name, repetitions=3):
  folder = os.path.join(tracker_dir, seq_name)
  return ([os.path.join(folder, f"{seq_name}_{r + 1:03d}.txt")
           for r in range(repetitions)],
          os.path.join(folder, f"{seq_name}_time.txt"))


def write_got10k(tracker_dir, seq_name, runs, times, *, one_based,
                 repetitions=3, box_format="%.3f"):
  """Writes ``<seq>/<seq>_001.txt`` .. and ``<seq>_time.txt``.

  Args:
    runs: list of (N, 4) boxes, one per run tracked. Fewer runs than
      `repetitions` (a deterministic tracker run once) are repeated in order,
      so every expected file exists; got10k itself writes one file for a
      deterministic tracker and pools whatever files it finds, so the scores
      are the same.
    times: (N,) or (N, len(runs)) seconds per frame.
  """
  paths, time_path = got10k_paths(tracker_dir, seq_name, repetitions)
  _write_times(time_path, times)
  for r, path in enumerate(paths):
    atomic_write_text(path, _format_rows(
        to_file_coords(runs[r % len(runs)], one_based), box_format))


def read_got10k(tracker_dir, seq_name, *, one_based):
  """All ``<seq>_NNN.txt`` runs present, sorted, as 0-based (N, 4) arrays."""
  files = sorted(glob.glob(os.path.join(
      glob.escape(os.path.join(tracker_dir, seq_name)),
      f"{glob.escape(seq_name)}_[0-9][0-9][0-9].txt")))
  if not files:
    raise FileNotFoundError(
        f"no GOT-10k results for {seq_name} in {tracker_dir}")
  return [read_boxes_file(f, one_based) for f in files]


# --------------------------------------------------------------------------
# VOT baseline.


def vot_paths(tracker_dir, seq_name, repetitions=1):
  folder = os.path.join(tracker_dir, "baseline", seq_name)
  return ([os.path.join(folder, f"{seq_name}_{r + 1:03d}.txt")
           for r in range(repetitions)],
          os.path.join(folder, f"{seq_name}_time.txt"))


def format_vot_trajectory(trajectory, *, one_based, box_format="%.4f"):
  """Text of one VOT trajectory: codes as integers, regions as numbers."""
  lines = []
  for entry in trajectory:
    if np.isscalar(entry):
      lines.append(f"{int(entry)}\n")
    else:
      lines.append(_format_rows(
          to_file_coords(entry, one_based)[None], box_format))
  return "".join(lines)


def write_vot(tracker_dir, seq_name, runs, times, *, one_based,
              box_format="%.4f"):
  """Writes ``baseline/<seq>/<seq>_NNN.txt`` for each run and the time file.

  Args:
    runs: list of trajectories; entries are codes 0/1/2 or 0-based regions.
    times: (N,) or (N, len(runs)) seconds per frame (0 where not tracked).
  """
  paths, time_path = vot_paths(tracker_dir, seq_name, len(runs))
  _write_times(time_path, times)
  for path, traj in zip(paths, runs):
    atomic_write_text(path, format_vot_trajectory(
        traj, one_based=one_based, box_format=box_format))


def read_vot_trajectory(path, *, one_based):
  """A trajectory from one VOT result file (codes int, regions 0-based)."""
  out = []
  for lineno, row in enumerate(_load_rows(path), 1):
    if len(row) == 1:
      if row[0] not in (0, 1, 2):
        raise ResultFileError(f"{path}:{lineno}: unknown code {row[0]}")
      out.append(int(row[0]))
    elif len(row) in (4, 8):
      out.append(to_file_coords(row, one_based, -1.0))
    else:
      raise ResultFileError(f"{path}:{lineno}: expected 1, 4 or 8 numbers")
  return out


def read_vot(tracker_dir, seq_name, *, one_based):
  """All runs ``baseline/<seq>/<seq>_NNN.txt`` present, sorted."""
  folder = os.path.join(tracker_dir, "baseline", seq_name)
  files = sorted(glob.glob(os.path.join(
      glob.escape(folder), f"{glob.escape(seq_name)}_[0-9][0-9][0-9].txt")))
  if not files:
    raise FileNotFoundError(f"no VOT results for {seq_name} in {folder}")
  return [read_vot_trajectory(f, one_based=one_based) for f in files]


# --------------------------------------------------------------------------
# Done markers, submissions.


def result_paths(fmt, tracker_dir, seq_name, vot_repetitions=1):
  """Result files (not time files) one finished sequence leaves behind."""
  if fmt.layout == ONE_PASS:
    return [one_pass_paths(tracker_dir, seq_name)[0]]
  if fmt.layout == GOT10K:
    return got10k_paths(tracker_dir, seq_name, fmt.repetitions)[0]
  return vot_paths(tracker_dir, seq_name, vot_repetitions)[0]


def is_done(fmt, tracker_dir, seq_name, vot_repetitions=1):
  """Whether every result file of the sequence exists (resume check)."""
  return all(os.path.exists(p) for p in result_paths(
      fmt, tracker_dir, seq_name, vot_repetitions))


def write_submission_zip(fmt, tracker_dir, seq_names, zip_path):
  """Zips the result files of `seq_names` for an evaluation server.

  TrackingNet: flat ``<seq>.txt`` entries. GOT-10k: ``<seq>/<seq>_NNN.txt``
  and ``<seq>/<seq>_time.txt``. Written atomically.
  """
  entries = []
  for name in seq_names:
    if fmt.layout == ONE_PASS:
      entries.append(one_pass_paths(tracker_dir, name)[0])
    elif fmt.layout == GOT10K:
      runs, time_path = got10k_paths(tracker_dir, name, fmt.repetitions)
      entries += runs + [time_path]
    else:
      raise ValueError(f"{fmt.name}: no submission zip for layout {fmt.layout}")
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(zip_path)),
                             prefix=".tmp_", suffix=".zip")
  _user_mode(fd)
  os.close(fd)
  try:
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
      for path in entries:
        zf.write(path, os.path.relpath(path, tracker_dir))
    os.replace(tmp, zip_path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return zip_path


# --------------------------------------------------------------------------
# report.json.

# Columns of `format_table` per layout: (report key, header, scale).
_COLUMNS = {
    ONE_PASS: [("success_auc", "AUC", 100), ("precision", "Prec@20", 100),
               ("norm_precision", "NPrec@.2", 100),
               ("success_rate_50", "SR@.5", 100)],
    GOT10K: [("ao", "AO", 100), ("sr50", "SR@.5", 100),
             ("sr75", "SR@.75", 100)],
    VOT: [("eao", "EAO", 1), ("accuracy", "A", 1), ("robustness", "R", 1),
          ("failures", "Fail", 1)],
}


def write_report(out_dir, benchmark, results):
  """Writes ``out_dir/report.json`` atomically and returns the report.

  Args:
    out_dir: the benchmark's output folder.
    benchmark: benchmark name.
    results: {tracker: {metric: value, ..., "sequences": {seq: {...}}}} as
      returned by the ``*_summary`` functions of `metrics` (optionally with
      "fps"). NaN (e.g. VOT EAO of sequences shorter than the range) is
      written as null.

  Returns:
    ``{"benchmark": benchmark, "trackers": results}``.
  """
  report = {"benchmark": benchmark, "trackers": _plain(results)}
  atomic_write_text(os.path.join(out_dir, "report.json"),
                    json.dumps(report, indent=1, allow_nan=False))
  return report


def _plain(v):
  """JSON-ready copy: numpy -> Python, NaN / inf -> None (JSON null)."""
  if isinstance(v, dict):
    return {str(k): _plain(x) for k, x in v.items()}
  if isinstance(v, (list, tuple, np.ndarray)):
    return [_plain(x) for x in v]
  if isinstance(v, np.generic):
    v = v.item()
  if isinstance(v, float) and not np.isfinite(v):
    return None
  if v is None or isinstance(v, (bool, int, float, str)):
    return v
  raise TypeError(f"cannot write {type(v).__name__} to report.json")


def read_report(out_dir):
  with open(os.path.join(out_dir, "report.json")) as f:
    return json.load(f)


def format_table(report):
  """The report's headline numbers as a plain-text table.

  One-pass and GOT-10k fractions are printed in percent; VOT EAO, accuracy
  and robustness as in the VOT papers (R = 100 * failures / frames).
  """
  layout = benchmark_format(report["benchmark"]).layout
  cols = _COLUMNS[layout] + [("fps", "FPS", 1)]
  trackers = report["trackers"]
  width = max([len("Tracker")] + [len(t) for t in trackers])
  lines = [f"{report['benchmark']}",
           f"{'Tracker':<{width}}" + "".join(f"{h:>10}" for _, h, _ in cols)]
  for name, res in trackers.items():
    cells = []
    for key, _, scale in cols:
      v = res.get(key)
      if v is None:
        cells.append(f"{'-':>10}")
      elif scale == 100:
        cells.append(f"{100 * v:>10.1f}")
      elif key == "failures":
        cells.append(f"{v:>10.1f}")
      elif key == "fps":
        cells.append(f"{v:>10.1f}")
      else:
        cells.append(f"{v:>10.3f}")
    lines.append(f"{name:<{width}}" + "".join(cells))
  return "\n".join(lines)

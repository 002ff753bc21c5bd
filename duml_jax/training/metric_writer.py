"""Scalar metrics to stdout, `metrics.jsonl` and TensorBoard event files, without TensorFlow.

TensorBoard events are written by tensorboardX (clu's metric writers import TensorFlow).
Stdout gets one short line per call (the chosen keys, steps/s, ETA), written through
`tqdm.write` so that a live progress bar on the terminal stays below it.
Only process 0 writes anything.
"""
import json
import math
import os
import sys
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np
import tqdm

METRICS_FILE = "metrics.jsonl"


def format_duration(seconds: float) -> str:
  """'H:MM:SS' ('Nd H:MM:SS' beyond a day); '?' when unknown."""
  if seconds is None or not math.isfinite(seconds):
    return "?"
  seconds = int(round(max(seconds, 0.0)))
  days, seconds = divmod(seconds, 86400)
  hours, seconds = divmod(seconds, 3600)
  minutes, seconds = divmod(seconds, 60)
  text = f"{hours}:{minutes:02d}:{seconds:02d}"
  return f"{days}d {text}" if days else text


def eta(step: int, total_steps: int, steps_per_sec: float) -> float:
  """Seconds left to reach `total_steps` at `steps_per_sec` (inf if the rate is unknown)."""
  if not steps_per_sec or not math.isfinite(steps_per_sec) or steps_per_sec <= 0:
    return math.inf
  return max(total_steps - step, 0) / steps_per_sec


class ProgressLogger:
  """Steps/s between successive `update` calls and the ETA to `total_steps`.

  The first call only records the reference point (it would otherwise count compilation time).
  """

  def __init__(self, total_steps: int, clock: Callable[[], float] = time.monotonic):
    self.total_steps = int(total_steps)
    self._clock = clock
    self._last = None  # (step, time)

  def update(self, step: int) -> dict[str, float]:
    """{'steps_per_sec': rate or nan, 'eta_s': seconds or inf} at `step`."""
    now = self._clock()
    rate = math.nan
    if self._last is not None and now > self._last[1] and step > self._last[0]:
      rate = (step - self._last[0]) / (now - self._last[1])
    self._last = (step, now)
    return {"steps_per_sec": rate, "eta_s": eta(step, self.total_steps, rate)}


def progress_bar(total: int, initial: int = 0, file=None) -> tqdm.tqdm:
  """A live step bar on a terminal; disabled when `file` (default stdout) is not a TTY, e.g.
  a log file, and on processes other than 0."""
  return tqdm.tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=False,
                   file=file or sys.stdout, disable=True if jax.process_index() else None)


def _to_float(value: Any) -> float:
  return float(np.asarray(jax.device_get(value)))


def _event_writer(logdir: str):
  # Imported here: tensorboardX imports torch when it is installed (the test venv), a cost
  # only runs that write events should pay.
  import tensorboardX  # pylint: disable=g-import-not-at-top
  # flush_secs: events reach the file within a minute even if training is killed.
  return tensorboardX.SummaryWriter(logdir, flush_secs=60)


class MetricWriter:
  """Writes scalars to stdout, `workdir/metrics.jsonl` and TensorBoard events.

  With `total_steps`, every `write_scalars` call adds 'steps_per_sec' (all sinks) and the ETA
  (stdout). Stdout shows `stdout_keys` (default: all) and steps/s; the files get every
  scalar. Only process 0 writes; other processes' calls do nothing. `clock` stamps records
  (wall time), `progress_clock` times steps/s.
  """

  def __init__(self, workdir: str | os.PathLike, total_steps: int | None = None,
               tensorboard: bool = True, log_to_stdout: bool = True,
               clock: Callable[[], float] = time.time,
               progress_clock: Callable[[], float] = time.monotonic,
               stdout_keys: Optional[Sequence[str]] = None):
    self.workdir = os.path.abspath(os.fspath(workdir))
    self.enabled = jax.process_index() == 0
    self._clock = clock
    self._log = log_to_stdout
    self._keys = None if stdout_keys is None else tuple(stdout_keys) + ("steps_per_sec",)
    self._total = total_steps
    self._progress = (ProgressLogger(total_steps, clock=progress_clock)
                      if total_steps else None)
    self._jsonl = self._events = None
    if self.enabled:
      os.makedirs(self.workdir, exist_ok=True)
      self._jsonl = open(os.path.join(self.workdir, METRICS_FILE), "a")
      if tensorboard:
        self._events = _event_writer(self.workdir)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    step = int(step)
    values = {k: _to_float(v) for k, v in scalars.items()}
    eta_s = None
    if self._progress is not None:
      progress = self._progress.update(step)
      eta_s = progress["eta_s"]
      if math.isfinite(progress["steps_per_sec"]):
        values["steps_per_sec"] = progress["steps_per_sec"]
    record = {"step": step, "time": self._clock(), **values}
    self._jsonl.write(json.dumps(record, allow_nan=True) + "\n")
    if self._events is not None:
      for k, v in values.items():
        self._events.add_scalar(k, v, step, walltime=record["time"])
    if self._log:
      total = f"/{self._total}" if self._total else ""
      terms = " | ".join(f"{k} {v:.5g}" for k, v in values.items()
                         if self._keys is None or k in self._keys)
      tail = f" | ETA {format_duration(eta_s)}" if eta_s is not None else ""
      tqdm.tqdm.write(f"step {step}{total} | {terms}{tail}", file=sys.stdout)

  def flush(self) -> None:
    if self.enabled:
      self._jsonl.flush()
      if self._events is not None:
        self._events.flush()

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      if self._events is not None:
        self._events.close()
      self.enabled = False

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

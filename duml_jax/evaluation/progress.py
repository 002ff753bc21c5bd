"""Progress of long evaluations: a live bar on a terminal, log lines otherwise.

Both show the same figures: sequences done, frames done of the total,
frames/s and the ETA. On a terminal (the stream is a tty) the bar is tqdm's,
redrawn in place; in a log file or CI output (not a tty) a line is logged
every ``every_s`` seconds and once at the end, so long runs stay readable
without carriage-return noise.
"""
import sys
import time

from absl import logging
import numpy as np
import tqdm


def hms(seconds):
  """``H:MM:SS`` of a number of seconds; ``?`` when unknown (inf / NaN)."""
  if not np.isfinite(seconds):
    return "?"
  s = int(round(seconds))
  return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"


class Progress:
  """Counts sequences and frames of one evaluation; see the module doc.

  Args:
    desc: what runs (e.g. ``"duml on OTB100"``); starts every line.
    n_seqs, n_frames: totals to reach.
    every_s: seconds between log lines (not a tty).
    stream: where the bar goes and whose ``isatty()`` picks the mode
      (default ``sys.stderr``, where absl logs too).
    clock: seconds, for rates and ETA (tests pass a fake one).
  """

  def __init__(self, desc, n_seqs, n_frames, every_s=10.0, *, stream=None,
               clock=time.perf_counter):
    self.desc, self.n_seqs, self.n_frames = desc, int(n_seqs), int(n_frames)
    self.every_s, self.seqs, self.frames = every_s, 0, 0
    self._clock = clock
    self.t0 = self.last = clock()
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    self._bar = None
    if isatty is not None and isatty():
      self._bar = tqdm.tqdm(total=self.n_frames, desc=desc, unit="frame",
                            file=stream, dynamic_ncols=True, leave=True,
                            postfix=self._seq_text())
    self._closed = False

  def _seq_text(self):
    return f"sequences {self.seqs}/{self.n_seqs}"

  def line(self):
    """The log line of the figures so far."""
    elapsed = max(self._clock() - self.t0, 1e-9)
    fps = self.frames / elapsed
    eta = (self.n_frames - self.frames) / fps if fps > 0 else float("inf")
    return (f"{self.desc}: {self._seq_text()}, frames {self.frames}/"
            f"{self.n_frames}, {fps:.1f} frames/s, ETA {hms(eta)}")

  def step(self, frames=0, seqs=0, force=False):
    """Adds `frames` and `seqs`; reports when due (or `force`)."""
    self.frames += frames
    self.seqs += seqs
    if self._bar is not None:
      if frames:
        self._bar.update(frames)
      if seqs:
        self._bar.set_postfix_str(self._seq_text(), refresh=True)
      return
    now = self._clock()
    if not force and now - self.last < self.every_s:
      return
    self.last = now
    logging.info("%s", self.line())

  def close(self):
    """Ends the bar (or logs the last line); idempotent."""
    if self._closed:
      return
    self._closed = True
    if self._bar is not None:
      self._bar.close()
    else:
      self.step(force=True)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

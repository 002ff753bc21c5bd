"""Evaluation progress: log lines when not a tty, a live bar on a terminal."""
import io
import logging

import numpy as np

from duml_jax.data.sequence import Sequence

from duml_jax.evaluation import progress as progress_lib
from duml_jax.evaluation import runner
from tests import fake_frames


class _Clock:

  def __init__(self):
    self.t = 100.0

  def __call__(self):
    return self.t


class _Tty(io.StringIO):

  def isatty(self):
    return True


def _lines(caplog):
  return [r.getMessage() for r in caplog.records if "frames/s" in r.getMessage()]


def test_log_lines_when_not_a_tty(caplog):
  clock, stream = _Clock(), io.StringIO()
  with caplog.at_level(logging.INFO):
    with progress_lib.Progress("trk on OTB", 4, 400, every_s=10.0, stream=stream,
                               clock=clock) as p:
      clock.t += 5.0
      p.step(frames=50)               # 5 s after the start: not due yet
      clock.t += 5.0
      p.step(frames=50, seqs=1)       # 10 s: 100 frames, 10 frames/s, 300 left
      clock.t += 2.0
      p.step(frames=20)               # 2 s after the last line: not due
      clock.t += 8.0
      p.step(frames=80, seqs=2)       # 20 s: 200 frames, 10 frames/s
  assert _lines(caplog) == [
      "trk on OTB: sequences 1/4, frames 100/400, 10.0 frames/s, ETA 0:00:30",
      "trk on OTB: sequences 3/4, frames 200/400, 10.0 frames/s, ETA 0:00:20",
      # close() always logs the last figures.
      "trk on OTB: sequences 3/4, frames 200/400, 10.0 frames/s, ETA 0:00:20",
  ]
  assert stream.getvalue() == ""      # no bar drawn into a log


def test_eta_unknown_before_the_first_frame_and_hms():
  clock = _Clock()
  p = progress_lib.Progress("x", 1, 10, stream=io.StringIO(), clock=clock)
  assert p.line().endswith("0.0 frames/s, ETA ?")
  assert progress_lib.hms(3725.4) == "1:02:05"
  assert progress_lib.hms(float("nan")) == "?"


def test_bar_on_a_terminal(caplog):
  stream = _Tty()
  with caplog.at_level(logging.INFO):
    with progress_lib.Progress("trk on VOT2018", 2, 30, stream=stream) as p:
      p.step(frames=10)
      p.step(frames=20, seqs=2)
  out = stream.getvalue()
  assert "trk on VOT2018" in out and "30/30" in out and "sequences 2/2" in out
  assert "frame/s" in out and "\r" in out        # redrawn in place
  assert not _lines(caplog)


def test_runner_logs_progress_of_a_run(tmp_path, caplog):
  """The one-pass runner reports the sequences and frames it tracked (frame 0 is the init
  frame, counted too: 7 + 5 frames; the last line comes at the end)."""
  box = np.array([5.0, 5.0, 10.0, 10.0])
  seqs = [Sequence(name, tuple(f"{name}/{i}.jpg" for i in range(n)), np.tile(box, (n, 1)))
          for name, n in (("a", 7), ("b", 5))]

  class Still:
    name, batch_size = "still", 1

    def init(self, frames, boxes, mask):
      self.box = np.asarray(boxes[0])

    def update(self, frames, mask):
      return self.box[None], np.ones(1)

  with caplog.at_level(logging.INFO):
    runner.run_one_pass(Still(), seqs, str(tmp_path), "OTB",
                        read_frame=fake_frames.reader({"a": 0, "b": 1}, (40, 30)))
  assert _lines(caplog)[-1].startswith(
      "still on OTB: sequences 2/2, frames 12/12, ")

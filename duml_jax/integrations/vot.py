"""Serves a duml_jax tracker to the official VOT toolkit over the TraX protocol.

Any tracker `evaluate.py` builds is served: a train.py checkpoint (DuML; its
saved config unless ``--config`` is given), and the NanoTrack / DuML-nano
presets of `configs/duml_nano.py` (with a meta_nano workdir as checkpoint):

  python -m duml_jax.integrations.vot --checkpoint=WORKDIR [--config=...]

In a vot-toolkit workspace's ``trackers.ini`` (its Python TraX protocol runs
``python -m duml_jax.integrations.vot`` with ``paths`` on PYTHONPATH; the
tracker is chosen with environment variables, since that protocol passes no
arguments)::

  [DuML]
  label = DuML
  protocol = traxpython
  command = duml_jax.integrations.vot
  paths = /abs/path/duml_jax
  env_DUML_CHECKPOINT = /abs/path/workdir
  env_DUML_CONFIG = /abs/path/duml_jax/configs/duml_nano.py:duml_nano
  timeout = 600

The target arrives as a rectangle or polygon (its axis-aligned hull is
tracked); each reply is the 0-based ``[x, y, w, h]`` rectangle with the
tracker's score as the ``confidence`` property; a new INITIALIZE restarts the
tracker. The first frame compiles it: give the toolkit a ``timeout`` of
minutes on CPU. vot-toolkit 0.9.0 runs its ``unsupervised`` (one-pass)
experiments this way; its ``supervised`` (re-initialising) experiment fails
for every tracker runtime in that release (it reads ``.properties`` of the
list a runtime returns), so VOT's re-init protocol is run by `evaluate.py
--protocol=vot`, whose scores are checked against vot-toolkit's analysis.
"""
import os
import sys

from absl import app
from absl import flags
import numpy as np
from ml_collections import config_flags

from duml_jax.data.frames import read_frame

CONFIG_ENV, CHECKPOINT_ENV = "DUML_CONFIG", "DUML_CHECKPOINT"

_FLAGS = {}   # defined only when run as a program: tests import this module beside evaluate.py


def _define_flags():
  _FLAGS["config"] = config_flags.DEFINE_config_file(
      "config", os.environ.get(CONFIG_ENV) or None,
      f"Config (default: ${CONFIG_ENV}, else the checkpoint's).", lock_config=True)
  _FLAGS["checkpoint"] = flags.DEFINE_string(
      "checkpoint", os.environ.get(CHECKPOINT_ENV) or None,
      f"A train.py workdir (DuML) or a meta_nano workdir (DuML-nano); default ${CHECKPOINT_ENV}.")
  _FLAGS["step"] = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
  _FLAGS["trax_log"] = flags.DEFINE_string("trax_log", None,
                                           "Write the TraX protocol log to this file.")


def build_tracker(config=None, checkpoint=None, step=None):
  """The one-sequence tracker of a config and/or checkpoint, built as evaluate.py builds it."""
  # Imported here so that `--help` answers without loading the model code.
  from configs import duml_nano as duml_nano_config   # pylint: disable=import-outside-toplevel
  from duml_jax.evaluation import evaluate_lib   # pylint: disable=import-outside-toplevel
  config, variables = evaluate_lib.resolve(config, checkpoint, step,
                                           online_config=duml_nano_config.default)
  return evaluate_lib.make_single_tracker(config, variables)


def region_to_box(region) -> np.ndarray:
  """A TraX rectangle or polygon -> 0-based ``[x, y, w, h]`` (a polygon's axis-aligned hull)."""
  if region.type == "rectangle":
    return np.array(region.bounds(), np.float64)
  if region.type == "polygon":
    points = np.array([region[i] for i in range(region.size())], np.float64)
    lo, hi = points.min(axis=0), points.max(axis=0)
    return np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]], np.float64)
  raise ValueError(f"TraX region of type {region.type!r}: only rectangles and polygons "
                   "can initialise a tracker")


def serve(tracker, log=None) -> int:
  """Answers TraX requests with `tracker` until the client quits; returns frames answered.

  `tracker` has ``init(frame, box)`` and ``update(frame) -> (box, score)``
  (`evaluate_lib.make_single_tracker`).
  """
  import trax   # pylint: disable=import-outside-toplevel
  frames = 0
  with trax.Server([trax.Region.RECTANGLE, trax.Region.POLYGON], [trax.Image.PATH],
                   tracker_name="duml_jax", log=log or False) as server:
    while True:
      request = server.wait()
      if request.type in (trax.TraxStatus.QUIT, trax.TraxStatus.ERROR):
        break
      path = request.image["color"].path()
      frame = read_frame(path, sequence="TraX request", index=frames)
      if request.type == trax.TraxStatus.INITIALIZE:
        region = request.objects[0][0]
        tracker.init(frame, region_to_box(region))
        reply, properties = region, {}
      else:
        box, score = tracker.update(frame)
        x, y, w, h = (float(v) for v in np.asarray(box, np.float64).reshape(4))
        reply, properties = trax.Rectangle.create(x, y, w, h), {"confidence": float(score)}
      server.status([(reply, properties)])
      frames += 1
  return frames


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config, checkpoint = _FLAGS["config"].value, _FLAGS["checkpoint"].value
  if config is None and not checkpoint:
    raise app.UsageError(f"give --checkpoint / ${CHECKPOINT_ENV} (a train.py or meta_nano "
                         f"workdir) and/or --config / ${CONFIG_ENV}")
  tracker = build_tracker(config, checkpoint, _FLAGS["step"].value)
  frames = serve(tracker, _FLAGS["trax_log"].value)
  # stdout carries the TraX messages; the toolkit logs stderr.
  print(f"duml_jax TraX server: {frames} frames answered", file=sys.stderr)


if __name__ == "__main__":
  _define_flags()
  app.run(main)

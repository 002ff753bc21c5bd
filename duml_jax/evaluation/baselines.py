"""Reference trackers for the evaluation runner.

* `KeepFirstBox`: a `runner.BatchTracker` that returns each lane's init box
  forever (the floor every tracker must beat; deterministic).
* `OpenCVTracker`: a simple tracker (``init(frame, box)``, ``update(frame)``)
  around an OpenCV tracker; `opencv_mil` and `opencv_nano` wrap it in a
  `runner.SequentialAdapter`. OpenCV takes BGR frames and integer boxes.

`make(name, ...)` builds one by its evaluate.py name (`NAMES`).
"""
import cv2
import numpy as np

from duml_jax.convert import nanotrack as nano_convert
from duml_jax.evaluation import runner

# evaluate.py --baselines names.
NAMES = ("keep_first", "mil", "cv2_nano")


class KeepFirstBox:
  """`BatchTracker` predicting the init box of each lane at every frame."""

  deterministic = True

  def __init__(self, batch_size=1, name="KeepFirstBox"):
    self.name = name
    self.batch_size = int(batch_size)
    self._boxes = np.full((self.batch_size, 4), np.nan)

  def init(self, frames, boxes, mask):
    del frames
    mask = np.asarray(mask, bool)
    self._boxes[mask] = np.asarray(boxes, np.float64)[mask]

  def update(self, frames, mask):
    del frames, mask
    return self._boxes.copy(), np.ones(self.batch_size)


class OpenCVTracker:
  """A simple tracker around an OpenCV ``cv2.Tracker`` made by `create()`.

  Frames are uint8 RGB (converted to BGR); boxes are ``x, y, w, h`` floats
  (rounded to ints for OpenCV, at least 1 pixel wide and high). When OpenCV
  reports a loss, the last box is kept with score 0.
  """

  def __init__(self, create):
    self._create = create
    self._tracker = None
    self._box = None

  def init(self, frame, box):
    box = np.asarray(box, np.float64)
    rect = (int(round(box[0])), int(round(box[1])),
            max(1, int(round(box[2]))), max(1, int(round(box[3]))))
    self._tracker = self._create()
    self._tracker.init(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), rect)
    self._box = box.copy()

  def update(self, frame):
    ok, rect = self._tracker.update(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    if not ok:
      return self._box.copy(), 0.0
    self._box = np.asarray(rect, np.float64)
    score = (self._tracker.getTrackingScore()
             if hasattr(self._tracker, "getTrackingScore") else 1.0)
    return self._box.copy(), float(score)


def opencv_mil(batch_size=1, name="OpenCV-MIL"):
  """`BatchTracker` of `batch_size` ``cv2.TrackerMIL`` lanes."""
  return runner.SequentialAdapter(
      lambda: OpenCVTracker(cv2.TrackerMIL_create), batch_size, name)


def opencv_nano(backbone_onnx, head_onnx, batch_size=1, name="NanoTrack"):
  """`BatchTracker` of ``cv2.TrackerNano`` lanes from NanoTrack ONNX files.

  Args:
    backbone_onnx: e.g. ``nanotrackv2_nanotrack_backbone_sim.onnx``.
    head_onnx: e.g. ``nanotrackv2_nanotrack_head_sim.onnx``.
  """
  for path in (backbone_onnx, head_onnx):
    with open(path, "rb"):
      pass  # fail here, naming the file, rather than inside OpenCV

  def create():
    params = cv2.TrackerNano_Params()
    params.backbone = str(backbone_onnx)
    params.neckhead = str(head_onnx)
    return cv2.TrackerNano_create(params)

  return runner.SequentialAdapter(lambda: OpenCVTracker(create), batch_size,
                                  name)


def make(name, batch_size=1, nanotrack_weights=None, nanotrack_version="v2"):
  """The baseline `name` (one of `NAMES`) as a `BatchTracker` of `batch_size` lanes.

  Args:
    nanotrack_weights: for 'cv2_nano', the folder holding NanoTrack's ONNX graphs
      (default `duml_jax.convert.nanotrack.default_weights_dir()`).
    nanotrack_version: for 'cv2_nano', which graphs ('v1' | 'v2').
  """
  if name == "keep_first":
    return KeepFirstBox(batch_size)
  if name == "mil":
    return opencv_mil(batch_size)
  if name == "cv2_nano":
    folder = nanotrack_weights or nano_convert.default_weights_dir()
    onnx = nano_convert.find_onnx(folder, nanotrack_version)
    return opencv_nano(onnx["backbone"], onnx["head"], batch_size,
                       name=f"NanoTrack-cv2-{nanotrack_version}")
  raise ValueError(f"unknown baseline {name!r}; known: {', '.join(NAMES)}")

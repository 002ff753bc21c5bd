"""LaSOT (Fan et al., CVPR 2019) training set (protocol II)."""
import os

import numpy as np

from duml_jax.data import benchmarks
from duml_jax.data.builders import base


def testing_set():
  """The 280 official LaSOT test sequence names (`benchmarks.lasot_test_names`)."""
  return frozenset(benchmarks.lasot_test_names())


class DumlLasot(base.TrackingBuilder):
  """LaSOT training sequences: `<root>/training_set.txt` when present, else
  every sequence not in the standard 280-sequence test list. Boxes are
  1-based in the files and shifted to 0-based; frames in `full_occlusion.txt`
  or `out_of_view.txt` are invalid."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
<root>/<class>/<class>-<n>/img/00000001.jpg ...
<root>/<class>/<class>-<n>/groundtruth.txt     x,y,w,h per frame (1-based)
<root>/<class>/<class>-<n>/full_occlusion.txt  one line of 0/1, comma-separated
<root>/<class>/<class>-<n>/out_of_view.txt     one line of 0/1, comma-separated
<root>/training_set.txt                        (optional) training sequence names"""

  def _has_split(self, root, split):
    return os.path.isdir(root)

  def _names(self, root):
    listed = os.path.join(root, "training_set.txt")
    if os.path.isfile(listed):
      with open(listed) as f:
        return [l.strip() for l in f if l.strip()]
    test = testing_set()
    names = []
    for cls in sorted(os.listdir(root)):
      if os.path.isdir(os.path.join(root, cls)):
        names += [s for s in sorted(os.listdir(os.path.join(root, cls)))
                  if s not in test and os.path.isdir(os.path.join(root, cls, s))]
    return names

  def _videos(self, root, split, counts):
    for name in self._names(root):
      cls = name.rsplit("-", 1)[0]
      seq_dir = os.path.join(root, cls, name)
      gt = os.path.join(seq_dir, "groundtruth.txt")
      if not os.path.isfile(gt):
        counts["missing_sequences"] += 1
        continue
      frames = [f"{cls}/{name}/img/{f}" for f in base.list_images(os.path.join(seq_dir, "img"))]
      boxes = base.read_box_file(gt, one_based=True, video_id=name, counts=counts)
      if boxes is None:
        continue
      frames, boxes = base.match_lengths(name, frames, boxes, counts)
      present = np.ones(len(boxes), bool)
      for flag_file in ("full_occlusion.txt", "out_of_view.txt"):
        path = os.path.join(seq_dir, flag_file)
        if os.path.isfile(path):
          present &= ~base.read_flags(path, len(boxes), counts)
      yield base.VideoAnnotation(name, frames, boxes, present)

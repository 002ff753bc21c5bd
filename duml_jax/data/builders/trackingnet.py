"""TrackingNet (Mueller et al., ECCV 2018) training chunks TRAIN_0..TRAIN_11."""
import os
import re

import numpy as np

from duml_jax.data.builders import base


class DumlTrackingnet(base.TrackingBuilder):
  """TrackingNet: one record per sequence of every `TRAIN_<k>` chunk found.
  Frames listed in the annotation but missing on disk are invalid."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
<root>/TRAIN_<k>/frames/<seq>/0.jpg 1.jpg ...   (k = 0..11, any subset)
<root>/TRAIN_<k>/anno/<seq>.txt                 x,y,w,h per frame (0-based)"""

  def _chunks(self, root):
    found = [d for d in os.listdir(root) if re.fullmatch(r"TRAIN_\d+", d)] if os.path.isdir(
        root) else []
    return sorted(found, key=lambda d: int(d.split("_")[1]))

  def _has_split(self, root, split):
    return bool(self._chunks(root))

  def _videos(self, root, split, counts):
    for chunk in self._chunks(root):
      anno_dir = os.path.join(root, chunk, "anno")
      if not os.path.isdir(anno_dir):
        counts["chunks_without_anno"] += 1
        continue
      for anno in sorted(a for a in os.listdir(anno_dir) if a.endswith(".txt")):
        seq = anno[:-4]
        boxes = base.read_box_file(os.path.join(anno_dir, anno), video_id=f"{chunk}/{seq}",
                                   counts=counts)
        if boxes is None:
          continue
        frame_dir = os.path.join(root, chunk, "frames", seq)
        on_disk = set(os.listdir(frame_dir)) if os.path.isdir(frame_dir) else set()
        names = [f"{i}.jpg" for i in range(len(boxes))]
        present = np.array([n in on_disk for n in names], bool)
        counts["missing_frames"] += int((~present).sum())
        yield base.VideoAnnotation(f"{chunk}/{seq}", [f"{chunk}/frames/{seq}/{n}" for n in names],
                                   boxes, present)

"""GOT-10k (Huang et al., TPAMI 2019) train / val splits."""
import os

import numpy as np

from duml_jax.data.builders import base


class DumlGot10k(base.TrackingBuilder):
  """GOT-10k: one record per sequence; `absence.label` marks absent frames."""

  SPLITS = ("train", "val")
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
<root>/<split>/list.txt                 sequence names (optional: else all folders)
<root>/<split>/<seq>/00000001.jpg ...
<root>/<split>/<seq>/groundtruth.txt    x,y,w,h per frame (0-based pixels)
<root>/<split>/<seq>/absence.label      0/1 per frame (optional)
with <split> in {train, val}."""

  def _has_split(self, root, split):
    return os.path.isdir(os.path.join(root, split))

  def _videos(self, root, split, counts):
    split_dir = os.path.join(root, split)
    list_file = os.path.join(split_dir, "list.txt")
    if os.path.isfile(list_file):
      with open(list_file) as f:
        names = [l.strip() for l in f if l.strip()]
    else:
      names = sorted(d for d in os.listdir(split_dir)
                     if os.path.isfile(os.path.join(split_dir, d, "groundtruth.txt")))
    for name in names:
      seq_dir = os.path.join(split_dir, name)
      gt = os.path.join(seq_dir, "groundtruth.txt")
      if not os.path.isfile(gt):
        counts["missing_sequences"] += 1
        continue
      frames = [f"{split}/{name}/{f}" for f in base.list_images(seq_dir)]
      boxes = base.read_box_file(gt, video_id=name, counts=counts)
      if boxes is None:
        continue
      frames, boxes = base.match_lengths(name, frames, boxes, counts)
      present = np.ones(len(boxes), bool)
      absence = os.path.join(seq_dir, "absence.label")
      if os.path.isfile(absence):
        present = ~base.read_flags(absence, len(present), counts)
      yield base.VideoAnnotation(name, frames, boxes, present)

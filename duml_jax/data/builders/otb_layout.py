"""Any folder of sequences in the OTB layout (e.g. ../shared/data/real_train)."""
import os

import numpy as np

from duml_jax.data.builders import base


def otb_videos(root, prefix, counts):
  """`VideoAnnotation`s of every `<seq>/img/*` + `<seq>/groundtruth_rect.txt`
  under `root` (1-based boxes); frame paths are `<prefix><seq>/img/<f>`."""
  for name in sorted(os.listdir(root)):
    gt = os.path.join(root, name, "groundtruth_rect.txt")
    if not os.path.isfile(gt):
      continue
    img_dir = os.path.join(root, name, "img")
    frames = [f"{prefix}{name}/img/{f}" for f in base.list_images(img_dir)]
    boxes = base.read_box_file(gt, one_based=True, video_id=name, counts=counts)
    if boxes is None:
      continue
    frames, boxes = base.match_lengths(name, frames, boxes, counts)
    yield base.VideoAnnotation(name, frames, boxes, np.ones(len(boxes), bool))


class DumlOtbLayout(base.TrackingBuilder):
  """Sequences in the OTB layout, boxes 1-based (shifted to 0-based)."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
<root>/<seq>/img/<frame>.jpg ...
<root>/<seq>/groundtruth_rect.txt   x,y,w,h per frame, 1-based, comma/tab/space separated"""

  def _has_split(self, root, split):
    return os.path.isdir(root)

  def _videos(self, root, split, counts):
    yield from otb_videos(root, "", counts)

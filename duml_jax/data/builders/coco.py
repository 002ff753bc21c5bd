"""COCO 2017 (Lin et al., ECCV 2014): every object is a one-frame video."""
import json
import os

import numpy as np

from duml_jax.data.builders import base


class DumlCoco(base.TrackingBuilder):
  """COCO instances: one record per non-crowd annotation (iscrowd objects are
  skipped and counted). COCO boxes are already xywh in 0-based pixels."""

  SPLITS = ("train", "val")
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
<root>/annotations/instances_<split>2017.json
<root>/<split>2017/<file_name>.jpg
with <split> in {train, val}."""

  def _ann_file(self, root, split):
    return os.path.join(root, "annotations", f"instances_{split}2017.json")

  def _has_split(self, root, split):
    return os.path.isfile(self._ann_file(root, split))

  def _videos(self, root, split, counts):
    with open(self._ann_file(root, split)) as f:
      data = json.load(f)
    files = {im["id"]: im["file_name"] for im in data["images"]}
    for ann in data["annotations"]:
      if ann.get("iscrowd", 0):
        counts["crowd_skipped"] += 1
        continue
      if ann["image_id"] not in files:
        counts["annotations_without_image"] += 1
        continue
      box = np.asarray(ann["bbox"], np.float64).reshape(1, 4)
      yield base.VideoAnnotation(f"{ann['image_id']}_{ann['id']}",
                                 [f"{split}2017/{files[ann['image_id']]}"], box,
                                 np.ones(1, bool))

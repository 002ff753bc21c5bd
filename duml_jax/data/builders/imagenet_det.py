"""ImageNet DET (Russakovsky et al., IJCV 2015): every object is a one-frame video.

The "D" of the paper's Appendix D mix VYCD (SiamRPN++'s training data). As pysot's
DET preparation: each annotated object of each image is a video of one frame (pairs
are the same frame twice, augmented differently), width = xmax - xmin.
"""
import os
import xml.etree.ElementTree as ET

from absl import logging
import numpy as np

from duml_jax.data.builders import base


def parse_objects(path):
  """[(xmin, ymin, xmax, ymax)] of a PASCAL-VOC-style XML (ILSVRC DET / VID), in file order.

  Raises ValueError naming the file and the object when the XML or a box is unreadable.
  """
  try:
    root = ET.parse(path).getroot()
  except ET.ParseError as e:
    raise ValueError(f"{path}: not readable XML ({e})") from e
  out = []
  for k, obj in enumerate(root.iter("object")):
    bb = obj.find("bndbox")
    try:
      out.append(tuple(float(bb.findtext(c)) for c in ("xmin", "ymin", "xmax", "ymax")))
    except (AttributeError, TypeError, ValueError) as e:
      raise ValueError(f"{path}: object {k} has no numeric bndbox xmin/ymin/xmax/ymax") from e
  return out


class DumlImagenetDet(base.TrackingBuilder):
  """ImageNet DET: one record per object (video id ``<relative image path>/<object index>``).

  Images whose XML has no object (the DET negatives) give no record; an unreadable XML
  or box is logged and counted ("unreadable_annotations") and its image skipped; an
  annotation whose JPEG is absent is counted ("missing_frames")."""

  SPLITS = ("train", "val")
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
<root>/ILSVRC/Data/DET/<split>/.../<image>.JPEG
<root>/ILSVRC/Annotations/DET/<split>/.../<image>.xml   (PASCAL VOC: object/bndbox)
with <split> in {train, val} (train holds ILSVRC2013_train/<wnid>/ and ILSVRC2014_train_*/)."""

  def _has_split(self, root, split):
    return os.path.isdir(os.path.join(root, "ILSVRC", "Annotations", "DET", split))

  def _videos(self, root, split, counts):
    ann_root = os.path.join(root, "ILSVRC", "Annotations", "DET", split)
    for dirpath, dirnames, filenames in os.walk(ann_root):
      dirnames.sort()
      rel_dir = os.path.relpath(dirpath, ann_root).replace(os.sep, "/")
      for name in sorted(f for f in filenames if f.endswith(".xml")):
        rel = name[:-4] if rel_dir == "." else f"{rel_dir}/{name[:-4]}"
        try:
          objects = parse_objects(os.path.join(dirpath, name))
        except ValueError as e:
          counts["unreadable_annotations"] += 1
          logging.warning("skipping %s", e)
          continue
        if not objects:
          counts["images_without_objects"] += 1
          continue
        frame = f"ILSVRC/Data/DET/{split}/{rel}.JPEG"
        if not os.path.isfile(os.path.join(root, frame)):
          counts["missing_frames"] += 1
          continue
        for k, (x0, y0, x1, y1) in enumerate(objects):
          yield base.VideoAnnotation(f"{rel}/{k:02d}", [frame],
                                     np.array([[x0, y0, x1 - x0, y1 - y0]]), np.ones(1, bool))

"""ImageNet VID (Russakovsky et al., IJCV 2015): one record per object track."""
import collections
import os
import xml.etree.ElementTree as ET

import numpy as np

from duml_jax.data.builders import base


def _parse_xml(path):
  """{trackid: (xmin, ymin, xmax, ymax)} of one VID annotation file."""
  out = {}
  for obj in ET.parse(path).getroot().iter("object"):
    bb = obj.find("bndbox")
    out[int(obj.findtext("trackid"))] = tuple(
        float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
  return out


class DumlImagenetVid(base.TrackingBuilder):
  """ImageNet VID: one record per (video, trackid), spanning the frames from
  the track's first to last appearance; frames in between without the object
  are invalid. Width = xmax - xmin (as pysot's data preparation)."""

  SPLITS = ("train", "val")
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
<root>/ILSVRC/Data/VID/<split>/.../<video>/000000.JPEG ...
<root>/ILSVRC/Annotations/VID/<split>/.../<video>/000000.xml ...  (object/trackid, bndbox)
with <split> in {train, val}."""

  def _has_split(self, root, split):
    return os.path.isdir(os.path.join(root, "ILSVRC", "Annotations", "VID", split))

  def _videos(self, root, split, counts):
    ann_root = os.path.join(root, "ILSVRC", "Annotations", "VID", split)
    for dirpath, dirnames, filenames in os.walk(ann_root):
      dirnames.sort()
      xmls = sorted(f for f in filenames if f.endswith(".xml"))
      if not xmls:
        continue
      rel = os.path.relpath(dirpath, ann_root).replace(os.sep, "/")
      frames = [f"ILSVRC/Data/VID/{split}/{rel}/{x[:-4]}.JPEG" for x in xmls]
      tracks = collections.defaultdict(dict)
      for i, x in enumerate(xmls):
        for tid, box in _parse_xml(os.path.join(dirpath, x)).items():
          tracks[tid][i] = box
      for tid in sorted(tracks):
        per_frame = tracks[tid]
        first, last = min(per_frame), max(per_frame)
        n = last - first + 1
        boxes = np.full((n, 4), np.nan)
        present = np.zeros(n, bool)
        for i, (x0, y0, x1, y1) in per_frame.items():
          boxes[i - first] = (x0, y0, x1 - x0, y1 - y0)
          present[i - first] = True
        yield base.VideoAnnotation(f"{rel}/{tid:02d}", frames[first:last + 1], boxes, present)

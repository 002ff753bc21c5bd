"""YouTube-BoundingBoxes (Real et al., CVPR 2017) with frames already extracted."""
import collections
import csv
import os

import numpy as np
from PIL import Image

from duml_jax.data.builders import base

# Official column order of yt_bb_detection_{train,validation}.csv (no header).
CSV_COLUMNS = ("youtube_id", "timestamp_ms", "class_id", "class_name", "object_id",
               "object_presence", "xmin", "xmax", "ymin", "ymax")


class DumlYoutubeBb(base.TrackingBuilder):
  """YouTube-BB: one record per (youtube_id, class_id, object_id) track, frames
  in timestamp order. CSV boxes are normalised to [0, 1] and are scaled by the
  frame size (read from the JPEG header of the track's first frame). Rows whose
  frame was not extracted are dropped (counted); rows with object_presence
  'absent' are invalid."""

  SPLITS = ("train", "validation")
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
<root>/yt_bb_detection_<split>.csv    official CSV (columns: """ + ", ".join(CSV_COLUMNS) + """)
<root>/<split>/<youtube_id>/<class_id>/<object_id>/<timestamp_ms>.jpg
                                      one extracted frame per annotated CSV row
with <split> in {train, validation}. Frames that failed to download may be missing."""

  def _csv(self, root, split):
    return os.path.join(root, f"yt_bb_detection_{split}.csv")

  def _has_split(self, root, split):
    return os.path.isfile(self._csv(root, split))

  def _videos(self, root, split, counts):
    tracks = collections.OrderedDict()
    with open(self._csv(root, split), newline="") as f:
      for row in csv.reader(f):
        if not row or row[0] == "youtube_id":
          continue
        if len(row) != len(CSV_COLUMNS):
          counts["malformed_rows"] += 1
          continue
        r = dict(zip(CSV_COLUMNS, row))
        try:
          r["timestamp_ms"] = int(r["timestamp_ms"])
          r["box"] = [float(r[k]) for k in ("xmin", "ymin", "xmax", "ymax")]
        except ValueError:
          counts["malformed_rows"] += 1
          continue
        key = (r["youtube_id"], r["class_id"], r["object_id"])
        tracks.setdefault(key, []).append(r)
    for (yid, cid, oid), rows in tracks.items():
      rows.sort(key=lambda r: r["timestamp_ms"])
      rel = [f"{split}/{yid}/{cid}/{oid}/{r['timestamp_ms']}.jpg" for r in rows]
      keep = [os.path.isfile(os.path.join(root, p)) for p in rel]
      counts["missing_frames"] += len(keep) - sum(keep)
      rows = [r for r, k in zip(rows, keep) if k]
      rel = [p for p, k in zip(rel, keep) if k]
      if not rows:
        continue
      with Image.open(os.path.join(root, rel[0])) as im:
        width, height = im.size
      norm = np.array([r["box"] for r in rows])
      boxes = np.stack([norm[:, 0] * width, norm[:, 1] * height,
                        (norm[:, 2] - norm[:, 0]) * width, (norm[:, 3] - norm[:, 1]) * height], 1)
      present = np.array([r["object_presence"] == "present" for r in rows], bool)
      yield base.VideoAnnotation(f"{yid}/{cid}/{oid}", rel, boxes, present)

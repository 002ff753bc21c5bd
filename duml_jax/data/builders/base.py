"""Shared machinery of the tracking TFDS builders.

Every builder writes ``array_record`` files (readable with
``tfds.data_source`` and grain, no TensorFlow) with ONE record per video (or
per object track) and these features:

  video_id  text, unique within the split
  frames    sequence of text: frame file paths RELATIVE to the dataset root
            (the builder's manual_dir). Frames are indexed, not copied: the
            raw datasets are hundreds of GB and the JPEGs are already
            compressed, so the records stay a few MB and the data can be moved
            by changing one `root` in the config.
  boxes     (T, 4) float32, xywh, 0-based continuous pixels (`duml_jax.boxes`);
            rows of invalid frames are set to -1
  valid     (T,) bool: False where the dataset marks the target absent /
            fully occluded / out of view, where the box is NaN or has a
            non-positive size, or where the frame file is missing

Invalid boxes never stop a build: they are counted per reason, logged at the
end of each split and kept in the dataset's metadata (``info.metadata``).
Records without a single valid frame are dropped (counted as well).
Records keep the discovery order (``disable_shuffling=True``).
"""
import abc
import collections
import dataclasses
import os
import re
from typing import Iterator, Sequence

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from duml_jax.data import benchmarks

VERSION = tfds.core.Version("1.0.0")


@dataclasses.dataclass
class VideoAnnotation:
  """One video / track as a dataset describes it, before validation."""
  video_id: str
  frames: Sequence[str]        # paths relative to the dataset root
  boxes: np.ndarray            # (T, 4) xywh, 0-based
  present: np.ndarray          # (T,) bool: the dataset's own visibility flags


def read_box_file(path, one_based=False, video_id=None, counts=None):
  """(N, 4) float64 xywh boxes of a ground-truth file (comma/tab/space
  separated, via `benchmarks.read_table`); NaN entries stay NaN; 1-based
  files are shifted to 0-based. With `counts`, an unreadable file is logged,
  counted as "unreadable_annotations" and gives None instead of raising."""
  try:
    boxes = benchmarks.read_table("training", video_id, os.fspath(path))
  except benchmarks.BenchmarkError as e:
    if counts is None:
      raise
    counts["unreadable_annotations"] += 1
    logging.warning("skipping %s: %s", video_id, e)
    return None
  if one_based:
    boxes[:, :2] -= 1.0
  return boxes


def read_flags(path, n, counts):
  """Per-frame 0/1 flags (one per line, or comma-separated on one line) as a
  (n,) bool array; a file of another length is cut / padded with False,
  logged and counted as "flag_length_mismatch"."""
  with open(path) as f:
    vals = [float(v) > 0 for v in re.split(r"[,\s]+", f.read().strip()) if v]
  if len(vals) != n:
    counts["flag_length_mismatch"] += 1
    logging.warning("%s: %d flags for %d frames", path, len(vals), n)
    vals = (vals + [False] * n)[:n]
  return np.asarray(vals, bool)


def list_images(directory):
  """Image file names (not paths) in `directory`, in natural order."""
  return [os.path.basename(f) for f in benchmarks.list_images(os.fspath(directory))]


def match_lengths(video_id, frames, boxes, counts):
  """Truncates frames/boxes to the shorter of the two (counted, not fatal)."""
  n = min(len(frames), len(boxes))
  if n != len(frames) or n != len(boxes):
    counts["length_mismatch"] += 1
    logging.warning("%s: %d frames but %d boxes; keeping %d", video_id, len(frames),
                    len(boxes), n)
  return list(frames[:n]), boxes[:n]


class TrackingBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base class: subclasses list splits and yield `VideoAnnotation`s."""

  VERSION = VERSION
  SPLITS = ("train",)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls):
    """None: these builders have no checksums file or metadata folder to find.

    (TFDS 4.9.10 otherwise resolves the module path through
    `importlib_resources`, a package it does not declare and that is not
    installed here; builders defined in `__main__` skip that path already.)
    """
    return None

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "video_id": tfds.features.Text(),
            "frames": tfds.features.Sequence(tfds.features.Text()),
            "boxes": tfds.features.Tensor(shape=(None, 4), dtype=np.float32),
            "valid": tfds.features.Tensor(shape=(None,), dtype=np.bool_),
        }),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(),
    )

  def _root(self, dl_manager):
    return os.fspath(dl_manager.manual_dir)

  def _split_generators(self, dl_manager):
    root = self._root(dl_manager)
    splits = [s for s in self.SPLITS if self._has_split(root, s)]
    if not splits:
      raise FileNotFoundError(
          f"{type(self).__name__}: no split of {self.SPLITS} found under {root}; expected "
          f"layout:\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    return {s: self._generate_examples(root, s) for s in splits}

  @abc.abstractmethod
  def _has_split(self, root, split) -> bool:
    """Whether `split` exists under `root`."""

  @abc.abstractmethod
  def _videos(self, root, split, counts) -> Iterator[VideoAnnotation]:
    """Yields the split's videos; may add to `counts` (reason -> number)."""

  def _generate_examples(self, root, split):
    counts = collections.Counter()
    seen = set()
    for ann in self._videos(root, split, counts):
      if ann.video_id in seen:
        raise ValueError(f"{type(self).__name__}: duplicate video id {ann.video_id!r}")
      seen.add(ann.video_id)
      boxes = np.asarray(ann.boxes, np.float32).reshape(-1, 4)
      present = np.asarray(ann.present, bool).reshape(-1)
      if len(ann.frames) != len(boxes) or len(present) != len(boxes):
        raise ValueError(f"{ann.video_id}: {len(ann.frames)} frames, {len(boxes)} boxes, "
                         f"{len(present)} flags")
      finite = np.isfinite(boxes).all(axis=1)
      positive = finite & (np.nan_to_num(boxes[:, 2]) > 0) & (np.nan_to_num(boxes[:, 3]) > 0)
      counts["frames"] += len(boxes)
      counts["absent_frames"] += int((~present).sum())
      counts["nan_boxes"] += int((present & ~finite).sum())
      counts["nonpositive_boxes"] += int((present & finite & ~positive).sum())
      valid = present & positive
      if not valid.any():
        counts["records_without_valid_frames"] += 1
        continue
      counts["records"] += 1
      counts["valid_frames"] += int(valid.sum())
      yield ann.video_id, {
          "video_id": ann.video_id,
          "frames": [str(f) for f in ann.frames],
          "boxes": np.where(valid[:, None], boxes, -1.0).astype(np.float32),
          "valid": valid,
      }
    logging.info("%s[%s] from %s: %s", type(self).__name__, split, root, dict(counts))
    self.info.metadata[f"counts_{split}"] = dict(counts)

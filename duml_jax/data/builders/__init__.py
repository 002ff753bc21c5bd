"""TFDS builders of the training sets (array_record, no TensorFlow).

`BUILDERS` maps the dataset names used in `config.data.datasets[*].name` to
builder classes; `make_builder` / `prepare` / `data_source` are the one way
the pipeline (and tools) open them. See `base` for the record format.
"""
import os

import tensorflow_datasets as tfds

from duml_jax.data.builders.base import TrackingBuilder
from duml_jax.data.builders.base import VideoAnnotation
from duml_jax.data.builders.coco import DumlCoco
from duml_jax.data.builders.got10k import DumlGot10k
from duml_jax.data.builders.imagenet_det import DumlImagenetDet
from duml_jax.data.builders.imagenet_vid import DumlImagenetVid
from duml_jax.data.builders.lasot import DumlLasot
from duml_jax.data.builders.otb_layout import DumlOtbLayout
from duml_jax.data.builders.synthetic import DumlSynthetic
from duml_jax.data.builders.synthetic import make_config as synthetic_config
from duml_jax.data.builders.trackingnet import DumlTrackingnet
from duml_jax.data.builders.youtube_bb import DumlYoutubeBb

BUILDERS = {
    "got10k": DumlGot10k,
    "lasot": DumlLasot,
    "trackingnet": DumlTrackingnet,
    "imagenet_vid": DumlImagenetVid,
    "imagenet_det": DumlImagenetDet,
    "coco": DumlCoco,
    "youtube_bb": DumlYoutubeBb,
    "otb_layout": DumlOtbLayout,
    "synthetic": DumlSynthetic,
}


def make_builder(name, root, data_dir, synthetic_params=None):
  """The builder of dataset `name` reading raw data under `root` and keeping
  its array_record files under `data_dir` (must be absolute for TFDS).

  For "synthetic", `root` is where the generated JPEGs go and
  `synthetic_params` holds `synthetic_config` keyword arguments.
  """
  if name not in BUILDERS:
    raise KeyError(f"unknown dataset name {name!r}; known: {sorted(BUILDERS)}")
  data_dir = os.path.abspath(data_dir)
  if name == "synthetic":
    return DumlSynthetic(data_dir=data_dir, file_format="array_record",
                         config=synthetic_config(**dict(synthetic_params or {})),
                         frames_dir=os.path.abspath(root))
  return BUILDERS[name](data_dir=data_dir, file_format="array_record")


def prepare(builder, root):
  """Builds the array_record files if they are not there yet (a no-op then)."""
  manual = None if isinstance(builder, DumlSynthetic) else os.path.abspath(root)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual))
  return builder


def data_source(builder, split):
  """Random-access source (`tfds.data_source`-style) of a prepared split."""
  if split not in builder.info.splits:
    raise KeyError(f"{builder.name}: split {split!r} not built; have "
                   f"{list(builder.info.splits)}")
  return builder.as_data_source(split=split)

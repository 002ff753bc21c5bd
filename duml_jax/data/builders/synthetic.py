"""Synthetic tracking videos (`duml_jax.data.synthetic`) as a TFDS dataset."""
import dataclasses
import hashlib
import json
import os

from absl import logging
import tensorflow_datasets as tfds

from duml_jax.data import synthetic
from duml_jax.data.builders import base
from duml_jax.data.builders import otb_layout


@dataclasses.dataclass
class SyntheticBuilderConfig(tfds.core.BuilderConfig):
  """Which videos to generate: seeds first_seed .. first_seed + num_videos - 1
  (all inside `synthetic.TRAIN_SEEDS`), their size and difficulty
  (`SyntheticConfig` fields as a dict)."""
  num_videos: int = 1000
  first_seed: int = 0
  num_frames: int = 100
  height: int = 256
  width: int = 256
  difficulty: dict = dataclasses.field(default_factory=dict)


def make_config(num_videos, first_seed=0, num_frames=100, height=256, width=256,
                difficulty=None):
  """A `SyntheticBuilderConfig` whose name encodes every parameter, so that
  differently parameterised sets never share a TFDS directory."""
  difficulty = dict(difficulty or {})
  synthetic.SyntheticConfig.from_dict(difficulty)  # unknown keys fail here
  key = json.dumps([num_videos, first_seed, num_frames, height, width,
                    sorted((k, list(v) if isinstance(v, (list, tuple)) else v)
                           for k, v in difficulty.items())])
  digest = hashlib.sha1(key.encode()).hexdigest()[:10]
  return SyntheticBuilderConfig(
      name=f"n{num_videos}_s{first_seed}_t{num_frames}_{height}x{width}_{digest}",
      num_videos=num_videos, first_seed=first_seed, num_frames=num_frames, height=height,
      width=width, difficulty=difficulty)


class DumlSynthetic(base.TrackingBuilder):
  """Procedural videos generated from training seeds, written as JPEGs in the
  OTB layout under `<frames_dir>/<config name>/` (a cache: existing sequences
  are reused), then indexed like any other dataset (frame paths relative to
  `frames_dir`, the dataset's root)."""

  BUILDER_CONFIGS = [make_config(1000)]
  MANUAL_DOWNLOAD_INSTRUCTIONS = None

  def __init__(self, *, frames_dir=None, **kwargs):
    super().__init__(**kwargs)
    self._frames_dir = frames_dir

  def _root(self, dl_manager):
    return self._frames_dir or os.path.join(os.fspath(dl_manager.download_dir),
                                            "duml_synthetic")

  def _has_split(self, root, split):
    return True

  def _videos(self, root, split, counts):
    cfg = self.builder_config
    seeds = range(cfg.first_seed, cfg.first_seed + cfg.num_videos)
    synthetic.check_seeds([seeds.start, seeds.stop - 1], synthetic.TRAIN_SEEDS, "training")
    difficulty = synthetic.SyntheticConfig.from_dict(cfg.difficulty)
    set_dir = os.path.join(root, cfg.name)
    os.makedirs(set_dir, exist_ok=True)
    for k, seed in enumerate(seeds):
      name = synthetic.sequence_name(seed)
      if not os.path.isfile(os.path.join(set_dir, name, "groundtruth_rect.txt")):
        frames, boxes = synthetic.make_video(seed, cfg.num_frames, cfg.height, cfg.width,
                                             difficulty)
        synthetic.write_sequence(set_dir, name, frames, boxes)
        counts["generated"] += 1
      if (k + 1) % 100 == 0:
        logging.info("synthetic: %d / %d videos ready in %s", k + 1, len(seeds), set_dir)
    yield from otb_layout.otb_videos(set_dir, cfg.name + "/", counts)

"""One tracker protocol for every family: the config names its family, `family(config)` builds it.

``config.tracker`` names the family:
  'duml'       DuML (`configs/duml.py`; a config saved by train.py before the key existed has
               none and is DuML too), module `duml_family`
  'nanotrack'  NanoTrack on its pretrained weights (`configs/duml_nano.py:nanotrack`), `nano`
  'duml_nano'  DuML-nano (`configs/duml_nano.py:duml_nano` / `onr`), `nano`
The reference trackers (`baselines.NAMES`: keep_first, mil, cv2_nano) are built by name beside
any family, with what the family's `baseline_kwargs` gives them.

Evaluation code calls only the `Family` functions below and never asks which family it holds.
"""
from typing import Optional, Protocol

from duml_jax.evaluation import duml_family
from duml_jax.evaluation import nano

DEFAULT = "duml"     # a checkpoint without a config is a train.py workdir (it carries its config)
FAMILIES = {"duml": duml_family, "nanotrack": nano, "duml_nano": nano}


class Family(Protocol):
  """What each family module provides (modules hold no state)."""

  def tracker_name(self, config) -> str:
    """The result-folder name, saying which form / variant it is."""

  def config_and_variables(self, config, checkpoint: Optional[str], step: Optional[int]):
    """(config, variables) from evaluate.py's --config / --checkpoint / --step."""

  def make_tracker(self, config, variables, benchmark: Optional[str], batch_size: int,
                   name: Optional[str], devices=None):
    """A `runner.BatchTracker` of `batch_size` lanes (benchmark: tracking overrides' key),
    sharded over `devices` where the family can."""

  def make_single_tracker(self, config, variables, name: Optional[str]):
    """A one-sequence tracker: ``init(frame, box)``, ``update(frame) -> (box, score)``."""

  def baseline_kwargs(self, config) -> dict:
    """Keyword arguments of `baselines.make` for this config (e.g. NanoTrack's weights)."""


def name_of(config=None) -> str:
  """The family name of `config` (`DEFAULT` for None); ValueError naming the key if unknown."""
  name = DEFAULT if config is None else config.get("tracker", DEFAULT)
  if name not in FAMILIES:
    raise ValueError(f"config.tracker={name!r}; known tracker families: {sorted(FAMILIES)}")
  return name


def family(config=None) -> Family:
  """The family module that builds `config`'s tracker."""
  return FAMILIES[name_of(config)]

"""The DuML family (`configs/duml.py`): train.py checkpoints -> variables and runner trackers.

The `families.Family` functions for DuML; NanoTrack / DuML-nano are in `nano`.
"""
from typing import Optional

from absl import logging
import jax

from duml_jax import checkpoint as ckpt_lib
from duml_jax import config_lib
from duml_jax import errors
from duml_jax.models import duml as duml_lib
from duml_jax.tracking import adapter
from duml_jax.tracking import tracker as tracker_lib


def tracker_name(config, prefix="DuML") -> str:
  """A result-folder name that says which form it is (e.g. DuML-resnet18-ofc5s+onr-mu0.8-vote)."""
  m, t = config.model, config.tracking
  forms = "+".join(f for f in (m.offline, m.online) if f != "none")
  voting = "-vote" if t.score_voting else ""
  mu = f"-mu{t.mu:g}" if m.offline != "none" and m.online != "none" else ""
  return f"{prefix}-{m.backbone}-{forms}{mu}{voting}"


def config_and_variables(config=None, checkpoint: Optional[str] = None,
                         step: Optional[int] = None):
  """`checkpoint` is a train.py workdir (its saved config unless `config` is given; `step`
  default: the latest); with only a config, a randomly initialised model (a smoke test, not a
  tracker)."""
  if checkpoint:
    variables, config = ckpt_lib.restore_variables(checkpoint, step, config)
  elif config is not None:
    logging.warning("no checkpoint: evaluating a randomly initialised model")
    model = duml_lib.build_model(config.model)
    variables = duml_lib.init_variables(model, jax.random.PRNGKey(config.seed),
                                        config.model.exemplar_size, config.model.search_size)
  else:
    raise errors.ConfigError("give a checkpoint (a train.py workdir) and/or a config")
  return config_lib.validate(config), variables


def make_tracker(config, variables, benchmark: Optional[str] = None, batch_size: int = 1,
                 name: Optional[str] = None, devices=None):
  """`adapter.DuMLBatchTracker`: `config.tracking` + the benchmark's overrides
  (`tracking.benchmarks`); `batch_size` sequences at a time through `jax.vmap`, sharded over
  `devices` (default: as many of this process's devices as divide `batch_size`)."""
  model = duml_lib.build_model(config.model)
  tcfg = tracker_lib.tracking_params(config, benchmark)
  return adapter.DuMLBatchTracker(model, variables, tcfg, batch_size,
                                  name or tracker_name(config),
                                  mesh=None if devices is None else adapter.lane_mesh(devices))


def make_single_tracker(config, variables, name: Optional[str] = None):
  return adapter.DuMLTracker(duml_lib.build_model(config.model), variables,
                             tracker_lib.tracking_params(config), name or tracker_name(config))


def baseline_kwargs(config) -> dict:
  del config     # the baselines' defaults (cv2_nano: the default weights folder, v2)
  return {}

"""The NanoTrack and DuML-nano families (`configs/duml_nano.py`) -> variables and trackers.

The `families.Family` functions for trackers built on pretrained NanoTrack
weights: ``config.tracker`` is 'nanotrack' (the JAX tracker reproducing
cv2.TrackerNano, `nanotrack_tracker.NanoTracker`) or 'duml_nano'
(`duml_nano_tracker.DuMLNanoTracker`). DuML is `duml_family`.

Variables: NanoTrack's from ``config.model.weights`` (ONNX graphs, a
converted folder or a ``.pth``), plus, for DuML-nano, the online pieces from
``config.model.online_params`` (a `duml_jax.training.meta_nano` workdir, read
with `duml_jax.checkpoint.load_online_params`) or,
when that is empty, their closed-form / identity start.
"""
import json
import pathlib
from typing import Optional

import jax
import ml_collections

from duml_jax import checkpoint as ckpt_lib
from duml_jax import errors
from duml_jax.convert import nanotrack as nano_convert
from duml_jax.evaluation import runner
from duml_jax.models import duml_nano as dn
from duml_jax.tracking import duml_nano_tracker as dnt
from duml_jax.tracking import nanotrack_tracker as ntt

TRACKERS = ("nanotrack", "duml_nano")


def version(config) -> str:
  return config.tracking.nanotrack.version


def _check_tracker(config):
  if config.tracker not in TRACKERS:
    raise ValueError(f"config.tracker={config.tracker!r}; allowed: {TRACKERS}")


def weights_path(config) -> pathlib.Path:
  """``config.model.weights`` as a path; FileNotFoundError naming key and path if absent."""
  p = pathlib.Path(config.model.weights).expanduser()
  if not p.exists():
    raise FileNotFoundError(
        f"config.model.weights={config.model.weights!r}: {p.resolve()} does not exist; it "
        "must hold the NanoTrack weights (the ONNX graphs, a folder written by "
        "python -m duml_jax.convert.nanotrack, or a .pth; docs/duml_nano.md)")
  return p


def online_workdir(path) -> pathlib.Path:
  """The meta_nano workdir of `path` (the workdir itself or its online_params.npz)."""
  p = pathlib.Path(path).expanduser()
  return p.parent if p.is_file() else p


def _check_meta_version(workdir, want, layer="output"):
  """The NanoTrack version and online layer meta-trained with (meta_nano.json) must be
  the config's."""
  log = pathlib.Path(workdir, ckpt_lib.LOG_FILE)
  if not log.is_file():
    return
  meta = json.loads(log.read_text()).get("config", {})
  got = meta.get("version", want)
  if got != want:
    raise ValueError(f"{workdir}: online params meta-trained on NanoTrack {got}, the config "
                     f"uses {want} (tracking.nanotrack.version)")
  got = meta.get("online_layer", "output")
  if got != layer:
    raise ValueError(f"{workdir}: online params meta-trained on online_layer={got!r}, the "
                     f"config uses {layer!r} (model.online_layer)")


def load_variables(config):
  """NanoTrack variables ('nanotrack') or DuML-nano variables ('duml_nano') of `config`."""
  _check_tracker(config)
  nano = jax.device_put(nano_convert.load_nanotrack(weights_path(config), version(config)))
  if config.tracker == "nanotrack":
    return nano
  model = build_model(config)
  if config.model.online_params:
    workdir = online_workdir(config.model.online_params)
    _check_meta_version(workdir, version(config), online_layer(config))
    online = ckpt_lib.load_online_params(workdir)
  else:
    online = dn.init_online_params(model, jax.random.PRNGKey(config.seed))
  return dn.from_nanotrack(nano, online)


def online_layer(config) -> str:
  layer = config.model.get("online_layer", "output")
  if layer not in dn.ONLINE_LAYERS:
    raise ValueError(f"config.model.online_layer={layer!r}; allowed: {sorted(dn.ONLINE_LAYERS)}")
  return layer


def build_model(config) -> dn.DuMLNano:
  return dn.build(version(config), online_layer=online_layer(config))


def tracker_name(config) -> str:
  """Result-folder name: NanoTrack-JAX-v2, DuMLnano-v2-meta-mu0.2-T3-vote, ... (T: the
  offline temperature where the offline score is used: mu < 1)."""
  _check_tracker(config)
  if config.tracker == "nanotrack":
    return f"NanoTrack-JAX-{version(config)}"
  t = config.tracking
  start = "meta" if config.model.online_params else "init"
  temp = t.get("offline_temperature", 1.)
  layer = online_layer(config)
  return (f"DuMLnano-{version(config)}-{start}-mu{t.mu:g}"
          + (f"-{layer.replace('+', '')}" if layer != "output" else "")
          + (f"-T{temp:g}" if temp != 1. and t.mu != 1. else "")
          + ("-vote" if t.score_voting else ""))


def make_single_tracker(config, variables, name: Optional[str] = None):
  """A one-sequence tracker (``init(frame, box)``, ``update(frame) -> (box, score)``)."""
  _check_tracker(config)
  name = name or tracker_name(config)
  if config.tracker == "nanotrack":
    crop = config.tracking.get("crop", "device")
    if crop not in ntt.CROP_MODES:
      raise ValueError(f"config.tracking.crop={crop!r}; allowed: {ntt.CROP_MODES}")
    return ntt.NanoTracker(variables, config.tracking.nanotrack, crop=crop)
  return dnt.DuMLNanoTracker(build_model(config), variables, dnt.params(config.tracking), name)


def make_tracker(config, variables, benchmark: Optional[str] = None, batch_size: int = 1,
                 name: Optional[str] = None, devices=None):
  """A `runner.BatchTracker` of `batch_size` lanes (one tracker per lane, run in turn, on the
  default device); `config.tracking` as it is on every benchmark (cv2.TrackerNano's values)."""
  del benchmark, devices
  name = name or tracker_name(config)
  make_single_tracker(config, variables, name)      # config errors now, not at the first init
  return runner.SequentialAdapter(lambda: make_single_tracker(config, variables, name),
                                  batch_size, name)


def is_online_workdir(path) -> bool:
  """Whether `path` is a meta_nano workdir (holds online_params.npz) or that file."""
  p = pathlib.Path(path).expanduser()
  return (p / ckpt_lib.PARAMS_FILE).is_file() or (p.is_file() and p.name == ckpt_lib.PARAMS_FILE)


def with_online_params(config, checkpoint: Optional[str]):
  """A copy of `config` whose ``model.online_params`` is `checkpoint` (evaluate.py's
  --checkpoint for these configs: a meta_nano workdir); `config` itself when None."""
  _check_tracker(config)
  if not checkpoint:
    return config
  if config.tracker == "nanotrack":
    raise ValueError(f"checkpoint {checkpoint!r}: the 'nanotrack' config has no online "
                     "branch to load (use configs/duml_nano.py:duml_nano or :onr)")
  current = config.model.online_params
  if current and online_workdir(current).resolve() != online_workdir(checkpoint).resolve():
    raise ValueError(f"checkpoint {checkpoint!r} and config.model.online_params={current!r} "
                     "disagree: give one of them")
  c = ml_collections.ConfigDict(config.to_dict())
  c.model.online_params = str(checkpoint)
  c.lock()
  return c


def config_and_variables(config, checkpoint: Optional[str] = None,
                         step: Optional[int] = None):
  """NanoTrack's weights from ``config.model.weights``; `checkpoint`, if given, is a
  meta_nano workdir of DuML-nano's online params (it sets ``config.model.online_params``)."""
  if step is not None:
    raise errors.ConfigError(f"step={step}: a checkpoint step applies to train.py workdirs, "
                             "not to NanoTrack / DuML-nano configs")
  config = with_online_params(config, checkpoint)
  return config, load_variables(config)


def baseline_kwargs(config) -> dict:
  """'cv2_nano' runs the ONNX graphs of this config's weights folder and version."""
  return dict(nanotrack_weights=weights_path(config), nanotrack_version=version(config))

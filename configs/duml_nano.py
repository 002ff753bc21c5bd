"""NanoTrack and DuML-nano configs for evaluate.py (pretrained NanoTrack weights, real video).

Use as ``--config=configs/duml_nano.py:ARG`` where ARG is a comma-separated
list: an optional preset first, then ``key=value`` overrides:

  nanotrack                 NanoTrack alone, the JAX tracker reproducing cv2.TrackerNano
  duml_nano (default)       NanoTrack offline branch + DuML's ONR online branch, fusion
                            with mu 0.5 (Eq. 1) of the min-max online map and NanoTrack's
                            score at temperature 3 (tracking.offline_temperature), score
                            voting (Eq. 4-5), DuML's memory and update schedule, and
                            re-detection where both branches prefer the same off-centre
                            cell to the cosine window's pick (tracking.reacquire_*;
                            docs/duml_nano.md)
  onr                       DuML-nano with mu = 1: the online branch localises alone (the
                            box is NanoTrack's decoded box at the online peak)
  duml_nano,mu=0.2          fusion weight (0.2: the default before 2026-12-07, docs/duml_nano.md)
  duml_nano,mu=0            the offline branch alone: NanoTrack on its score at temperature
                            3, with voting (the online branch's ablation, DuML-nano-offline)
  duml_nano,voting=0        score voting off
  duml_nano,online_layer=block3   the online branch reads NanoTrack's block-3 (stride-8,
                            lower-level) features pooled onto its grid instead of its output
                            features (output | block3 | output+block3; docs/duml_nano.md)
  duml_nano,online_params=/tmp/duml_nano_meta   meta-trained online pieces (a
                            `python -m duml_jax.training.meta_nano --workdir=...` folder;
                            evaluate.py's --checkpoint sets the same key)
  nanotrack,version=v1      NanoTrack v1 weights (v1 | v2)
  nanotrack,crop=host       the same tracker (same boxes) cropping on the host with
                            OpenCV, only the crop sent to the device: faster on CPU
                            (`nanotrack_tracker.NanoTracker`, benchmarks/RESULTS.md)

Keys: ``mu``, ``voting``, ``online_params``, ``online_layer`` (duml_nano / onr
only), ``crop`` (nanotrack only: ``tracking.crop``, device | host),
``version``, ``weights``. Every other field with
``--config.SECTION.KEY=VALUE`` (e.g. ``--config.tracking.nanotrack.
window_influence=0.4``); unknown keys fail naming the key.

``model.weights`` is a folder of NanoTrack weights (the original ONNX graphs,
a converted folder, or a ``.pth``; `duml_jax.convert.nanotrack.load_nanotrack`),
by default ``../shared/weights/nanotrack`` beside the repository. With
``model.online_params`` empty, DuML-nano's online pieces start from their
closed form / identity ("init" in benchmarks/RESULTS.md).

NanoTrack's tracking hyper-parameters (``tracking.nanotrack``) are
``cv2.TrackerNano``'s and the same on every benchmark: evaluate.py's
per-benchmark overrides (``tracking.benchmarks`` of configs/duml.py) do not
apply to these configs.
"""
import ml_collections

from duml_jax import config_args
from duml_jax.convert import nanotrack as nano_convert
from duml_jax.models import duml_nano as dn
from duml_jax.models import nanotrack as nt
from duml_jax.tracking import duml_nano_tracker as dnt
from duml_jax.tracking import nanotrack_tracker as ntt

PRESETS = ("nanotrack", "duml_nano", "onr")


def get_config(arg=None):
  """Returns the config for `arg` (see module docstring)."""
  preset, overrides = config_args.parse(arg, "duml_nano", PRESETS)
  c = ml_collections.ConfigDict()
  c.name = preset
  c.tracker = "nanotrack" if preset == "nanotrack" else "duml_nano"
  c.seed = 0                         # rng of the online pieces' start (only shapes draw it)
  c.model = ml_collections.ConfigDict()   # the version is tracking.nanotrack.version
  c.model.weights = str(nano_convert.default_weights_dir())
  if preset == "nanotrack":
    c.tracking = ml_collections.ConfigDict({"nanotrack": ntt.default_config()})
    c.tracking.crop = "device"       # ntt.CROP_MODES: 'host' crops with OpenCV, same boxes
  else:
    c.model.online_params = ""      # meta_nano workdir (online_params.npz); "" = closed form
    c.model.online_layer = "output"  # what the online branch reads: duml_nano.ONLINE_LAYERS
    c.tracking = dnt.default_config()
    if preset == "onr":
      c.tracking.mu = 1.0
  for key, value in overrides:
    _apply_override(c, key, value, arg or preset)
  c.lock()
  return c


def default():
  """The config a meta_nano workdir given alone as a checkpoint implies (DuML-nano)."""
  return get_config("duml_nano")


_NO_ONLINE = "it has no online branch"
_OVERRIDES = {   # key: (section path, field, cast, why a preset without the field lacks it)
    "mu": (("tracking",), "mu", float, _NO_ONLINE),
    "voting": (("tracking",), "score_voting", config_args.as_bool, _NO_ONLINE),
    "online_params": (("model",), "online_params", str, _NO_ONLINE),
    "online_layer": (("model",), "online_layer", str, _NO_ONLINE),
    "crop": (("tracking",), "crop", str, "only the 'nanotrack' tracker has a host crop"),
    "version": (("tracking", "nanotrack"), "version", str, None),
    "weights": (("model",), "weights", str, None),
}


def _apply_override(c, key, value, arg):
  if key not in _OVERRIDES:
    raise ValueError(f"config arg {arg!r}: unknown key {key!r}; known keys: "
                     f"{sorted(_OVERRIDES)} (other keys: --config.KEY=VALUE)")
  path, field, cast, why = _OVERRIDES[key]
  section = c
  for name in path:
    section = section[name]
  if field not in section:
    raise ValueError(f"config arg {arg!r}: key {key!r} does not apply to the "
                     f"{c.name!r} preset ({why})")
  try:
    value = cast(value)
  except ValueError as e:
    raise ValueError(f"config arg {arg!r}: {key}={value!r}: {e}") from None
  if key == "mu" and not 0. <= value <= 1.:
    raise ValueError(f"config arg {arg!r}: mu={value} outside [0, 1]")
  if key == "version" and value not in nt.VERSIONS:
    raise ValueError(f"config arg {arg!r}: version={value!r}; allowed: {nt.VERSIONS}")
  if key == "online_layer" and value not in dn.ONLINE_LAYERS:
    raise ValueError(f"config arg {arg!r}: online_layer={value!r}; allowed: "
                     f"{sorted(dn.ONLINE_LAYERS)}")
  if key == "crop" and value not in ntt.CROP_MODES:
    raise ValueError(f"config arg {arg!r}: crop={value!r}; allowed: {ntt.CROP_MODES}")
  section[field] = value

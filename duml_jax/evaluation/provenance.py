"""The settings that made a tracker's results, kept beside them (``OUT/<tracker>/settings.json``).

A rerun into the same output folder resumes (finished sequences are skipped)
only when the results there were made with the same settings: the config
sections that make the tracker (``model``, ``tracking``, ``tracker``; the
training sections act through the weights), the weights themselves (a hash
of the variables, with the checkpoint folder and step they came from) and the
code version (git commit, recorded and named, but a new commit alone only
warns: most commits change no tracker). Otherwise the run is refused with both
settings named, unless ``overwrite`` replaces the old results.
"""
import functools
import hashlib
import json
import os
import shutil
import subprocess

from absl import logging
import jax
import numpy as np

from duml_jax import errors
from duml_jax.evaluation import writers

SETTINGS_FILE = "settings.json"
_CONFIG_SECTIONS = ("tracker", "model", "tracking")
# What must match for results to be resumed; the rest (code version, checkpoint path / step)
# is recorded to name the runs in messages.
_COMPARED = ("config_sha256", "variables_sha256")


@functools.lru_cache(maxsize=1)
def code_version():
  """The git commit of the checkout holding duml_jax ('unknown' outside a git checkout)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    out = subprocess.run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"],
                         capture_output=True, text=True, timeout=10, check=True)
    return out.stdout.strip() or "unknown"
  except (OSError, subprocess.SubprocessError):
    return "unknown"


def _plain(value):
  return value.to_dict() if hasattr(value, "to_dict") else value


def tracker_config(config):
  """The config sections that make the tracker, as plain JSON-ready data."""
  return {k: _plain(config[k]) for k in _CONFIG_SECTIONS if k in config}


def _sha256_json(data):
  text = json.dumps(data, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()


def variables_sha256(variables):
  """sha256 over every array of a variables pytree (its path, dtype, shape and bytes)."""
  h = hashlib.sha256()
  leaves, _ = jax.tree_util.tree_flatten_with_path(variables)
  for path, leaf in leaves:
    arr = np.ascontiguousarray(np.asarray(leaf))
    h.update(f"{jax.tree_util.keystr(path)}:{arr.dtype.str}:{arr.shape};".encode())
    h.update(arr.tobytes())
  return h.hexdigest()


def settings(config, variables, checkpoint=None, checkpoint_step=None):
  """The settings record of a tracker built from `config` and `variables`."""
  cfg = tracker_config(config)
  return {
      "config_sha256": _sha256_json(cfg),
      "variables_sha256": variables_sha256(variables),
      "code_version": code_version(),
      "checkpoint": None if checkpoint is None else os.path.abspath(str(checkpoint)),
      "checkpoint_step": None if checkpoint_step is None else int(checkpoint_step),
      "config": cfg,
  }


def _flat(data, prefix=""):
  out = {}
  for k, v in (data or {}).items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _weights(s):
  src = s.get("checkpoint") or "no checkpoint"
  step = s.get("checkpoint_step")
  return f"{src}{'' if step is None else f' step {step}'} (weights {s['variables_sha256'][:10]})"


def describe_difference(old, new):
  """'what: there -> now' for each differing part of two settings records."""
  parts = []
  if old.get("config_sha256") != new.get("config_sha256"):
    a, b = _flat(old.get("config")), _flat(new.get("config"))
    keys = sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))
    shown = ", ".join(f"{k}={a.get(k, '<absent>')!r} there, {b.get(k, '<absent>')!r} now"
                      for k in keys[:3])
    parts.append("config " + (shown + (" ..." if len(keys) > 3 else "") if keys else
                              f"{old.get('config_sha256', '?')[:10]} there, "
                              f"{new['config_sha256'][:10]} now"))
  if old.get("variables_sha256") != new.get("variables_sha256"):
    parts.append(f"weights {_weights(old)} there, {_weights(new)} now")
  if old.get("code_version") != new.get("code_version"):
    parts.append(f"code {old.get('code_version')} there, {new.get('code_version')} now")
  return "; ".join(parts)


def read(tracker_dir):
  """The settings record in `tracker_dir`, or None."""
  path = os.path.join(tracker_dir, SETTINGS_FILE)
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def prepare(tracker_dir, new, overwrite=False):
  """Makes `tracker_dir` hold results of the settings `new` before a run; resumable results stay.

  Args:
    tracker_dir: ``OUT/<tracker>``.
    new: the tracker's `settings` record, or None (trackers without one are not checked).
    overwrite: False: refuse results of other settings (or of unrecorded settings) with a
      `errors.SettingsMismatchError` naming both; True: delete the folder's results first;
      "stale": delete them only when the settings differ (train.py's evaluation after more
      training steps).

  Raises:
    errors.SettingsMismatchError: see `overwrite`.
  """
  if new is None:
    return
  tracker_dir = os.path.normpath(tracker_dir)
  old = read(tracker_dir)
  has_results = os.path.isdir(tracker_dir) and any(
      e.name != SETTINGS_FILE for e in os.scandir(tracker_dir))
  same = old is not None and all(old.get(k) == new.get(k) for k in _COMPARED)
  if has_results and (overwrite is True or not same):
    if overwrite is False:
      why = (describe_difference(old, new) if old is not None else
             f"the results there have no {SETTINGS_FILE} (written before settings were "
             "recorded), so they may come from other settings")
      raise errors.SettingsMismatchError(
          f"{tracker_dir} holds results made with other settings: {why}. Pass --overwrite "
          "to replace them, or give another --output_dir (or --tracker_name)")
    shutil.rmtree(tracker_dir)
    has_results = False
  if same and has_results and old.get("code_version") != new.get("code_version"):
    logging.warning("%s: resuming results of code %s with code %s (same config and weights)",
                    tracker_dir, old.get("code_version"), new.get("code_version"))
  if not (same and has_results):
    writers.atomic_write_text(os.path.join(tracker_dir, SETTINGS_FILE),
                              json.dumps(new, indent=1, sort_keys=True, default=str))

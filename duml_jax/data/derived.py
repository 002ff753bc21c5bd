"""Folders derived from a benchmark folder (`subsample`, `distract`), built once.

A derived folder is built under a temporary name and renamed into place, with a marker
file holding the settings that made it: a rerun with the same settings reuses it, any
other existing folder at that path is refused rather than overwritten.
"""
import json
import os
import shutil


def build_once(dst, marker, settings, build, refusal):
  """Builds `dst` with `build(tmp)` unless it already holds `settings`.

  Args:
    dst: the folder to make (absolute path).
    marker: file name, inside `dst`, of the settings' JSON.
    settings: JSON-able dict; equal to the marker's content means "already built".
    build: callable(tmp folder) that writes the folder's content.
    refusal: the ValueError's message when `dst` exists and is something else.
  """
  if os.path.exists(dst):
    path = os.path.join(dst, marker)
    if os.path.isfile(path):
      with open(path) as f:
        if json.load(f) == settings:
          return
    raise ValueError(refusal)
  tmp = f"{dst}.tmp-{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  build(tmp)
  with open(os.path.join(tmp, marker), "w") as f:
    json.dump(settings, f)
  os.replace(tmp, dst)

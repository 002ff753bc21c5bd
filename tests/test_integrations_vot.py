"""vot-toolkit 0.9.0 itself runs our tracker over TraX, end to end and offline, and scores it."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from duml_jax.integrations import vot as vot_integration

REPO = pathlib.Path(__file__).resolve().parents[1]
FRAMES = 16
# The toolkit's CLI asks GitHub for a newer version on every command; its library calls do not.
_TOOLKIT = """
import argparse, sys
from vot.utilities import cli
args = argparse.Namespace(**{k: v for k, v in (a.split("=", 1) for a in sys.argv[2:])},
                          trackers=["DuMLnano"], experiments=None, sequences=None,
                          force=False, persist=False, debug=False, registry=".", format="json")
getattr(cli, sys.argv[1])(args)
"""


def _workspace(root, otb_sample, names, config):
  """A vot-toolkit workspace: legacy-layout sequences (frames + 0-based rectangles), a one-pass
  stack with nothing to download, and a trackers.ini serving `config` over TraX."""
  seqs = root / "sequences"
  seqs.mkdir(parents=True)
  for name in names:
    src = otb_sample / name
    frames = sorted((src / "img").glob("*.jpg"))[:FRAMES]
    rows = np.loadtxt(src / "groundtruth_rect.txt", delimiter=None if name == "Crossing" else ",")
    dst = seqs / name
    dst.mkdir()
    for i, f in enumerate(frames, 1):
      shutil.copy(f, dst / f"{i:08d}.jpg")
    boxes = rows[:FRAMES] - [1, 1, 0, 0]          # OTB is 1-based, VOT 0-based
    np.savetxt(dst / "groundtruth.txt", boxes, fmt="%.2f", delimiter=",")
  (seqs / "list.txt").write_text("".join(n + "\n" for n in names))
  (root / "stack.yaml").write_text(
      "title: duml_jax over TraX\n"
      "experiments:\n"
      "  unsupervised:\n"
      "    type: unsupervised\n"
      "    repetitions: 1\n"
      "    analyses:\n"
      "      - type: average_accuracy\n"
      "        name: accuracy\n"
      "        burnin: 0\n")
  (root / "config.yaml").write_text("registry:\n- ./trackers.ini\nstack: stack.yaml\n")
  (root / "trackers.ini").write_text(
      "[DuMLnano]\n"
      "label = DuML-nano\n"
      "protocol = traxpython\n"
      "command = duml_jax.integrations.vot\n"
      f"paths = {REPO}\n"
      f"env_{vot_integration.CONFIG_ENV} = {config}\n"
      "env_JAX_PLATFORMS = cpu\n"
      # The test run's compilation cache (tests/conftest.py) spares the server a compile.
      f"env_JAX_COMPILATION_CACHE_DIR = {jax.config.jax_compilation_cache_dir}\n"
      "env_JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS = 1\n"
      "timeout = 600\n")


def _toolkit(root, action, **kwargs):
  run = subprocess.run(
      [sys.executable, "-c", _TOOLKIT, action, f"workspace={root}",
       *(f"{k}={v}" for k, v in kwargs.items())],
      cwd=root, capture_output=True, text=True, timeout=900, check=False,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert run.returncode == 0, run.stdout + run.stderr
  return run


def test_vot_toolkit_runs_and_scores_our_tracker_over_trax(tmp_path, otb_sample):
  weights = REPO.parent / "shared" / "weights" / "nanotrack"
  if not weights.is_dir():
    pytest.skip(f"{weights} not found: NanoTrack weights unavailable")
  from vot.dataset.common import read_sequence_legacy   # pylint: disable=import-outside-toplevel
  from vot.tracker.results import Results, Trajectory   # pylint: disable=import-outside-toplevel
  from vot.workspace import Workspace   # pylint: disable=import-outside-toplevel
  from duml_jax.data.frames import read_frame   # pylint: disable=import-outside-toplevel
  names = ["MotorRolling"]
  config = f"{REPO / 'configs' / 'duml_nano.py'}:duml_nano"
  _workspace(tmp_path, otb_sample, names, config)

  _toolkit(tmp_path, "do_evaluate")
  _toolkit(tmp_path, "do_analysis", name="accuracy")

  storage = Workspace.load(str(tmp_path)).storage.substorage("results")
  report = json.loads((tmp_path / "analysis" / "accuracy.json").read_text())
  text = json.dumps(report["results"])
  assert "DuMLnano" in json.dumps(report["trackers"])

  local_tracker = _local_tracker(config)
  for name in names:
    sequence = read_sequence_legacy(str(tmp_path / "sequences" / name))
    served = Results(storage.substorage(f"DuMLnano/unsupervised/{name}"))
    assert Trajectory.exists(served, f"{name}_001"), f"no toolkit result for {name}"
    trajectory = Trajectory.read(served, f"{name}_001")
    assert len(trajectory) == FRAMES
    first = sequence.groundtruth(0)
    local_tracker.init(read_frame(sequence.frame(0).filename()),
                       [first.x, first.y, first.width, first.height])
    for i in range(1, FRAMES):
      box, _ = local_tracker.update(read_frame(sequence.frame(i).filename()))
      r = trajectory.region(i)
      # TraX sends rectangles as float32.
      np.testing.assert_allclose([r.x, r.y, r.width, r.height], box, atol=1e-2,
                                 err_msg=f"{name} frame {i}")
  assert "accuracy" in text


def _local_tracker(spec):
  path, _, arg = spec.partition(":")
  import importlib.util   # pylint: disable=import-outside-toplevel
  module_spec = importlib.util.spec_from_file_location("duml_nano_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return vot_integration.build_tracker(module.get_config(arg))


class _Rect:
  type = "rectangle"

  def __init__(self, x, y, w, h):
    self._b = (x, y, w, h)

  def bounds(self):
    return self._b


class _Poly:
  type = "polygon"

  def __init__(self, points):
    self._p = points

  def size(self):
    return len(self._p)

  def __getitem__(self, i):
    return self._p[i]


def test_region_to_box():
  np.testing.assert_allclose(vot_integration.region_to_box(_Rect(3, 4, 10, 20)), [3, 4, 10, 20])
  poly = _Poly([(10., 5.), (30., 9.), (26., 25.), (8., 20.)])
  np.testing.assert_allclose(vot_integration.region_to_box(poly), [8, 5, 22, 20])
  mask = _Rect(0, 0, 1, 1)
  mask.type = "mask"
  with pytest.raises(ValueError, match="rectangles and polygons"):
    vot_integration.region_to_box(mask)

"""Evaluation over devices and processes gives the files of a one-device run.

Real frames: short prefixes of ../shared/data/otb_sample sequences (linked into a tmp folder),
tracked by the tiny config's randomly initialised model (the same variables in every process:
`config.seed`). One lane per device, so each lane runs the one-device program (adapter).
"""
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import duml as duml_config
from duml_jax.evaluation import evaluate_lib
from duml_jax.evaluation import provenance
from duml_jax.evaluation import writers
from duml_jax.models import duml
from tests import jax_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# name: (source, first frame, frames); all 360x240, so one padded frame shape is compiled.
SEQUENCES = {"Crossing": ("Crossing", 0, 24), "Freeman1": ("Freeman1", 0, 16),
             "Freeman1_late": ("Freeman1", 200, 12)}
TIMEOUT_S = 300


@pytest.fixture(scope="module")
def tiny():
  c = duml_config.get_config("tiny")
  model = duml.build_model(c.model)
  return c, duml.init_variables(model, jax.random.PRNGKey(c.seed), c.model.exemplar_size,
                                c.model.search_size)


@pytest.fixture(scope="module")
def prefixes(otb_sample, tmp_path_factory):
  """An OTB folder of the SEQUENCES cut from otb_sample (frames linked, ground truth cut)."""
  root = tmp_path_factory.mktemp("otb_prefix")
  for name, (source, start, n) in SEQUENCES.items():
    src = otb_sample / source
    (root / name / "img").mkdir(parents=True)
    frames = sorted(os.listdir(src / "img"))[start:start + n]
    for k, f in enumerate(frames):
      os.symlink(src / "img" / f, root / name / "img" / f"{k + 1:04d}.jpg")
    gt = (src / "groundtruth_rect.txt").read_text().splitlines()[start:start + n]
    (root / name / "groundtruth_rect.txt").write_text("\n".join(gt) + "\n")
  return root


def _result_files(out, tracker):
  fmt = writers.benchmark_format("OTB")
  return {s: open(p).read() for s in SEQUENCES
          for p in writers.result_paths(fmt, os.path.join(out, tracker), s)}


def _one_device_run(tiny, prefixes, out):
  c, variables = tiny
  report = evaluate_lib.evaluate_model(c, variables, "otb", str(prefixes), str(out),
                                       batch_sequences=1, devices=jax.devices()[:1], plot=False)
  return report, _result_files(str(out), evaluate_lib.tracker_name(c))


@pytest.fixture(scope="module")
def reference(tiny, prefixes, tmp_path_factory):
  return _one_device_run(tiny, prefixes, tmp_path_factory.mktemp("one_device"))


def test_lanes_over_two_devices_equal_one_device(tiny, prefixes, reference, tmp_path):
  assert jax.local_device_count() == 2, "conftest sets two CPU devices"
  c, variables = tiny
  report = evaluate_lib.evaluate_model(c, variables, "otb", str(prefixes), str(tmp_path),
                                       batch_sequences=2, plot=False)
  name = evaluate_lib.tracker_name(c)
  assert _result_files(str(tmp_path), name) == reference[1]
  for key in ("success_auc", "precision", "norm_precision"):
    assert report["trackers"][name][key] == reference[0]["trackers"][name][key]


def test_lanes_and_process_share():
  assert evaluate_lib.lanes_for(1, 5, 2) == 2       # one lane per device at least
  assert evaluate_lib.lanes_for(3, 5, 2) == 4       # rounded up to the devices
  assert evaluate_lib.lanes_for(8, 3, 1) == 3       # no more lanes than sequences
  seqs = [list(range(n)) for n in (10, 50, 30, 20, 40)]   # len() is all the split uses
  shares = [evaluate_lib.process_share(seqs, i, 2) for i in range(2)]
  # Longest first to the lighter process: 50 -> 0, 40 -> 1, 30 -> 1, 20 -> 0, 10 -> 0 (80/70).
  assert [len(s) for s in shares[0]] == [10, 50, 20]
  assert [len(s) for s in shares[1]] == [30, 40]
  assert evaluate_lib.process_share(seqs, 0, 1) == seqs


def _free_port():
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _worker(process_id, port, variables_npz, dataset, out):
  """One process of the two-process run: one CPU device, variables from the parent (initialising
  them op by op would cost minutes per process)."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.use_absl_handler()      # the log lines the test reads (no app.run here)
  logging.set_verbosity(logging.INFO)
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                             process_id=process_id, initialization_timeout=60)
  assert jax.process_count() == 2 and jax.local_device_count() == 1
  c = duml_config.get_config("tiny")
  shapes = jax.eval_shape(lambda: duml.init_variables(
      duml.build_model(c.model), jax.random.PRNGKey(c.seed), c.model.exemplar_size,
      c.model.search_size))
  flat = np.load(variables_npz)
  variables = jax.tree_util.tree_map_with_path(
      lambda p, _: flat[jax.tree_util.keystr(p)], shapes)
  report = evaluate_lib.evaluate_model(c, variables, "otb", dataset, out, batch_sequences=1)
  assert (report is None) == (process_id != 0)
  jax.distributed.shutdown()


def test_two_processes_equal_one_process_and_resume(tiny, prefixes, reference, tmp_path):
  """Two processes of one CPU device each on 127.0.0.1 (`jax.distributed`, as evaluate.py's
  --coordinator_address) write the files of one process; a killed run resumes."""
  c, variables = tiny
  name = evaluate_lib.tracker_name(c)
  out = tmp_path / "out"
  npz = tmp_path / "variables.npz"
  np.savez(npz, **{jax.tree_util.keystr(p): np.asarray(v)
                   for p, v in jax.tree_util.tree_leaves_with_path(variables)})
  # A run killed after Freeman1_late's file was written: both processes resume, and its owner
  # (process 1: Crossing, 24 frames, goes to 0; Freeman1 and Freeman1_late to 1) skips it.
  done = writers.result_paths(writers.benchmark_format("OTB"), str(out / name),
                              "Freeman1_late")[0]
  os.makedirs(os.path.dirname(done))
  # The killed run had recorded its settings before its first result (as runner does).
  provenance.prepare(str(out / name), provenance.settings(c, variables))
  with open(done, "w") as f:
    f.write(reference[1]["Freeman1_late"])
  stamp = os.stat(done).st_mtime_ns
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", **jax_cache.ENV)
  env.pop("XLA_FLAGS", None)     # one CPU device per process
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, __file__, "--worker", str(i), str(port), str(npz), str(prefixes),
       str(out)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True) for i in range(2)]
  logs = []
  try:
    for i, proc in enumerate(procs):
      try:
        logs.append(proc.communicate(timeout=TIMEOUT_S)[0])
      except subprocess.TimeoutExpired:
        for p in procs:
          p.kill()
        raise AssertionError(f"process {i} did not finish in {TIMEOUT_S} s:\n"
                             f"{proc.communicate()[0][-3000:]}") from None
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  for i, proc in enumerate(procs):
    assert proc.returncode == 0, f"process {i} failed:\n{logs[i][-3000:]}"
  assert "process 0 of 2: 1 of 3 sequences" in logs[0]
  assert "process 1 of 2: 2 of 3 sequences" in logs[1]
  assert "1/2 sequences already done, skipped" in logs[1]
  assert os.stat(done).st_mtime_ns == stamp
  assert _result_files(str(out), name) == reference[1]
  assert (out / "report.json").exists() and (out / "success_plot.png").exists()


if __name__ == "__main__" and len(sys.argv) == 7 and sys.argv[1] == "--worker":
  _worker(int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:])

"""benchmarks/gpu_suite.py: the peak table, the batch estimate, and the --smoke run on CPU."""
import json
import os
import subprocess
import sys

import pytest

from benchmarks import gpu_suite

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIB = 2 ** 30


@pytest.mark.parametrize("kind,tflops", [("NVIDIA H100 80GB HBM3", 989.), ("NVIDIA H200", 989.),
                                         ("NVIDIA H100 PCIe", 756.), ("cpu", None)])
def test_peak_bf16_by_device_kind(kind, tflops):
  got = gpu_suite.peak_bf16_flops(kind)
  assert got == (None if tflops is None else tflops * 1e12)


def test_largest_batch_by_hand():
  # 10 GiB held before the batch-28 step, peak 24 GiB: 0.5 GiB per example; 90% of a
  # 100 GiB limit leaves 80 GiB -> 160 examples per device.
  fig = {"device_memory_before": {"bytes_in_use": 10 * GIB},
         "device_memory_after": {"peak_bytes_in_use": 24 * GIB, "bytes_limit": 100 * GIB}}
  assert gpu_suite.largest_batch(fig, 28) == 160
  fig["device_memory_after"]["bytes_limit"] = 30 * GIB     # 17 GiB / 0.5 -> 34 -> 32
  assert gpu_suite.largest_batch(fig, 28) == 32
  fig["device_memory_after"]["bytes_limit"] = 25 * GIB     # no room beyond 28
  assert gpu_suite.largest_batch(fig, 28) is None
  assert gpu_suite.largest_batch({"device_memory_before": None,
                                  "device_memory_after": None}, 28) is None


def test_smoke_run_measures_every_figure(tmp_path):
  out = tmp_path / "suite.json"
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=2")
  r = subprocess.run([sys.executable, "benchmarks/gpu_suite.py", "--smoke", "--out", str(out)],
                     cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200,
                     check=False)
  assert r.returncode == 0, r.stderr[-3000:]
  res = json.loads(out.read_text())
  assert res["done"] and res["smoke"] and res["commit"] and res["jax_version"]
  figs = res["figures"]
  assert set(figs) == {"track_duml_float32", "track_duml_bfloat16", "train_per_device_batch_1",
                       "lanes_2", "nano_trackers", "appendix_b_backbones",
                       "train_largest_batch"}
  for name, fig in figs.items():
    assert "error" not in fig, (name, fig.get("error"), fig.get("traceback"))
  for name in ("track_duml_float32", "track_duml_bfloat16"):
    assert figs[name]["fps"] > 0 and figs[name]["command"].startswith("python benchmarks/")
  train = figs["train_per_device_batch_1"]
  assert train["examples_per_s"] > 0 and train["model_gflops_per_example"] > 0
  assert train["fraction_of_bf16_peak"] is None               # CPU: no bf16 peak known
  assert figs["lanes_2"]["total_fps"] > 0
  assert figs["nano_trackers"]["nanotrack"]["fps"] > 0
  assert figs["nano_trackers"]["duml_nano"]["fps"] > 0
  app = figs["appendix_b_backbones"]
  assert app["resnet50"]["backbone"]["grids"] == [8, 16]
  assert app["resnet50_dilated"]["backbone"]["grids"] == [7, 15]
  assert app["dilated_over_interpolated"]["backbone"] > 0
  assert "skipped" in figs["train_largest_batch"]             # CPU: no memory statistics

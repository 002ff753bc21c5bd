"""Exported graphs (ONNX under onnxruntime, StableHLO under jax.export) equal the JAX tracker."""
import pathlib
import subprocess
import sys

import cv2

import numpy as np
import pytest

from configs import duml as duml_configs
from configs import duml_nano as nano_configs
from duml_jax import export
from duml_jax.evaluation import evaluate_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("jax2onnx")


def _run_onnx(path, inputs):
  session = ort.InferenceSession(str(path))
  names = [i.name for i in session.get_inputs()]
  return session.run(None, dict(zip(names, inputs)))


def _check_graphs(config, variables, out, rng):
  graphs = export.network_graphs(config, variables)
  export.export_onnx(config, variables, out)
  for name, g in graphs.items():
    shapes = [tuple(16 if isinstance(d, str) else d for d in s) for s in g.inputs]
    inputs = [rng.uniform(0, 255 if g.nchw or "template" in g.input_names[0] or
                          "search" in g.input_names[0] else 1, s).astype(np.float32)
              for s in shapes]
    want = [np.asarray(a) for a in g.fn(*inputs)]
    feed = [np.moveaxis(a, -1, 1) for a in inputs] if g.nchw else inputs
    got = _run_onnx(out / f"{name}.onnx", feed)
    if g.nchw:
      got = [np.moveaxis(a, 1, -1) for a in got]
    assert len(got) == len(want), name
    for o, w, n in zip(got, want, g.output_names):
      scale = max(1.0, float(np.abs(w).max()))
      np.testing.assert_allclose(o, w, atol=1e-4 * scale, err_msg=f"{name}:{n}")
  return graphs


def _tiny():
  config = duml_configs.get_config("tiny")
  return evaluate_lib.config_and_variables(config)


def test_duml_onnx_graphs_equal_jax(tmp_path):
  config, variables = _tiny()
  graphs = _check_graphs(config, variables, tmp_path, np.random.RandomState(0))
  assert {"template", "search", "offline_heads", "online_scores"} <= set(graphs)
  assert (tmp_path / export.MANIFEST).is_file()


def _nano(preset):
  config = nano_configs.get_config(preset)
  if not pathlib.Path(config.model.weights).is_dir():
    pytest.skip(f"{config.model.weights} not found: NanoTrack weights unavailable")
  return evaluate_lib.config_and_variables(config)


def test_onnx_export_refuses_another_online_layer():
  with pytest.raises(ValueError, match="config.model.online_layer='block3'"):
    export.network_graphs(nano_configs.get_config("duml_nano,online_layer=block3"), {})


def test_duml_nano_onnx_graphs_and_cv2_tracker_nano(tmp_path, otb_sample):
  """DuML-nano's graphs equal JAX's, and OpenCV's own tracker on the exported NanoTrack graphs
  gives the JAX NanoTrack tracker's boxes within 1 px on the first 20 frames of every
  OTB-sample sequence."""
  from duml_jax.data import benchmarks   # pylint: disable=import-outside-toplevel
  from duml_jax.data.frames import read_frame   # pylint: disable=import-outside-toplevel
  config, variables = _nano("duml_nano")
  graphs = _check_graphs(config, variables, tmp_path, np.random.RandomState(1))
  assert {"nanotrack_backbone", "nanotrack_head", "online_features", "online_scores"} <= set(
      graphs)

  # One Conv per conv layer, not thousands of shifted slices (12x slower under OpenCV).
  import onnx   # pylint: disable=import-outside-toplevel
  for name, max_nodes, min_convs in (("nanotrack_backbone", 300, 24), ("nanotrack_head", 250, 30)):
    ops = [n.op_type for n in onnx.load(str(tmp_path / f"{name}.onnx")).graph.node]
    assert len(ops) <= max_nodes and ops.count("Conv") >= min_convs, (name, len(ops))
    assert ops.count("Slice") <= 4, name

  nano_config, nano_variables = _nano("nanotrack")
  params = cv2.TrackerNano_Params()
  params.backbone = str(tmp_path / "nanotrack_backbone.onnx")
  params.neckhead = str(tmp_path / "nanotrack_head.onnx")
  for seq in benchmarks.load_benchmark("otb", str(otb_sample)):
    ours = evaluate_lib.make_single_tracker(nano_config, nano_variables)
    theirs = cv2.TrackerNano_create(params)
    frames = [read_frame(p) for p in seq.frames[:20]]
    init_box = tuple(int(v) for v in np.round(seq.boxes[0]))   # cv2 takes an int box
    ours.init(frames[0], np.array(init_box, float))
    theirs.init(cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR), init_box)
    for i, frame in enumerate(frames[1:], 1):
      box, _ = ours.update(frame)
      ok, rect = theirs.update(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
      assert ok, f"{seq.name} frame {i}"
      # cv2 truncates its float box to ints: within a pixel of ours.
      np.testing.assert_allclose(rect, box, atol=1.0 + 1e-6, err_msg=f"{seq.name} frame {i}")


def _frames(n, hw=(96, 128), seed=0):
  rng = np.random.RandomState(seed)
  base = rng.randint(0, 255, hw + (3,)).astype(np.uint8)
  return [np.roll(base, 2 * i, axis=1) for i in range(n)]


def test_stablehlo_tracker_equals_the_python_tracker(tmp_path):
  config, variables = _tiny()
  frames = _frames(4)
  box = np.array([40., 30., 24., 20.], np.float32)
  export.export_stablehlo(config, variables, tmp_path, frames[0].shape[:2])
  loaded = export.StableHLOTracker(tmp_path)
  init, step = export.tracker_functions(config, variables)
  state = init(frames[0], box)
  loaded.init(frames[0], box)
  for frame in frames[1:]:
    state, want, want_score = step(state, frame)
    got, score = loaded.update(frame)
    # One jit of the whole step fuses differently from the tracker's: float32 round-off,
    # which a random model's feedback loop amplifies ~10x a frame (4e-3 px by frame 5).
    np.testing.assert_allclose(got, np.asarray(want), atol=2e-3)
    np.testing.assert_allclose(score, float(want_score), atol=1e-4)
  with pytest.raises(ValueError, match="frame_size"):
    loaded.update(np.zeros((10, 10, 3), np.uint8))


def test_export_cli_usage_error(tmp_path):
  bad = subprocess.run([sys.executable, "-m", "duml_jax.export",
                        f"--config={REPO / 'configs' / 'duml.py'}:tiny", "--format=stablehlo",
                        "--frame_size=a,b", f"--out={tmp_path}"],
                       cwd=REPO, capture_output=True, text=True, check=False)
  assert bad.returncode != 0 and "--frame_size=a,b" in bad.stderr

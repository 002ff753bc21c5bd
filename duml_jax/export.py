"""Exports a tracker's networks (ONNX) or its whole jitted tracker step (StableHLO).

  python -m duml_jax.export --checkpoint=W --format=onnx --out=DIR
  python -m duml_jax.export --config=configs/duml_nano.py:nanotrack --format=onnx --out=DIR
  python -m duml_jax.export --config=configs/duml_nano.py:duml_nano --format=stablehlo \
      --frame_size=240,360 --out=DIR

``onnx`` (through jax2onnx; outputs equal JAX's to ~1e-5 under onnxruntime)
writes the per-frame network graphs a tracker needs, with the tracking logic
left to the host:

- DuML (a train.py checkpoint): ``template.onnx`` (template image -> template
  features, once), ``search.onnx`` (search crop -> search features),
  ``offline_heads.onnx`` (features -> classification / box maps) and
  ``online_scores.onnx`` (online filter, online features -> robust scores).
- NanoTrack and DuML-nano: ``nanotrack_backbone.onnx`` / ``nanotrack_head.onnx``
  in the layout `cv2.TrackerNano` loads (NCHW, any crop size, inputs
  ``input`` / ``input1``, ``input2``, outputs ``output`` / ``output1``,
  ``output2``), so OpenCV's own tracker runs them; DuML-nano adds
  ``online_features.onnx`` and ``online_scores.onnx``.

``stablehlo`` (``jax.export``) writes the whole tracker as two serialised
functions, ``init.stablehlo`` (frame, box -> state) and ``step.stablehlo``
(state, frame -> state, box, score), for one frame size; `StableHLOTracker`
runs them with jax alone, without this project's model code. The state is a
flat list of arrays. ``manifest.json`` lists every file's inputs and outputs.

Images are float32 0..255 in the network's channel order (NanoTrack: BGR);
boxes are 0-based ``[x, y, w, h]``.
"""
import dataclasses
import json
import logging
import os
import pathlib
from typing import Callable, Dict, List, Sequence, Tuple

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

FORMATS = ("onnx", "stablehlo")
MANIFEST = "manifest.json"
ONNX_OPSET = 23
CV2_OPSET = 18   # OpenCV 5's DNN importer reads it: cv2.TrackerNano runs the NanoTrack graphs


@dataclasses.dataclass(frozen=True)
class Graph:
  """One network function to export: ``fn(*inputs) -> tuple of arrays``."""
  fn: Callable
  inputs: Sequence[Tuple]          # shapes; a str dimension is symbolic ('H')
  input_names: Sequence[str]
  output_names: Sequence[str]
  nchw: bool = False               # cv2.TrackerNano's layout for inputs and outputs
  opset: int = ONNX_OPSET


def _family(config) -> str:
  return config.get("tracker", None) or "duml"


def network_graphs(config, variables) -> Dict[str, Graph]:
  """The per-frame network graphs of `config`'s tracker (see the module docstring)."""
  family = _family(config)
  if family in ("nanotrack", "duml_nano"):
    return _nano_graphs(config, variables, family)
  return _duml_graphs(config, variables)


def _nano_graphs(config, variables, family):
  from duml_jax.models import duml_nano as dn   # pylint: disable=import-outside-toplevel
  from duml_jax.models import nanotrack as nt   # pylint: disable=import-outside-toplevel
  from duml_jax.models import online as online_lib   # pylint: disable=import-outside-toplevel
  layer = config.model.get("online_layer", "output")
  if layer != "output":   # the online graphs take the backbone graph's output features
    raise ValueError(f"ONNX export: config.model.online_layer={layer!r}; only 'output' is "
                     "exported as ONNX graphs (StableHLO exports any online layer)")
  version = config.tracking.nanotrack.version
  nano = variables if family == "nanotrack" else dn.nanotrack_variables(variables)
  # One ONNX Conv per conv layer: the JAX tracker's shifted multiply-adds would export as
  # thousands of Slice / Mul / shape ops, ~12x slower under OpenCV's DNN (RESULTS.md).
  backbone, head = nt.build(version, conv_impl="lax")
  t = config.tracking.nanotrack
  zf = jax.eval_shape(lambda z: backbone.apply(nano["backbone"], z),
                      jax.ShapeDtypeStruct((1, t.exemplar_size, t.exemplar_size, 3), jnp.float32))
  xf = jax.eval_shape(lambda x: backbone.apply(nano["backbone"], x),
                      jax.ShapeDtypeStruct((1, t.instance_size, t.instance_size, 3), jnp.float32))
  graphs = {
      "nanotrack_backbone": Graph(lambda x: (backbone.apply(nano["backbone"], x),),
                                  [(1, "H", "W", 3)], ["input"], ["output"], nchw=True,
                                  opset=CV2_OPSET),
      "nanotrack_head": Graph(lambda z, x: tuple(head.apply(nano["head"], z, x)),
                              [zf.shape, xf.shape], ["input1", "input2"],
                              ["output1", "output2"], nchw=True, opset=CV2_OPSET),
  }
  if family == "duml_nano":
    model = dn.build(version)
    x_on = jax.eval_shape(lambda f: model.apply(variables, f, method=dn.DuMLNano.online_feats),
                          xf)
    z_on = jax.eval_shape(lambda f: model.apply(variables, f, method=dn.DuMLNano.online_feats),
                          zf)
    filt = jax.eval_shape(lambda f: model.apply(variables, f, method=dn.DuMLNano.initial_filter),
                          z_on)
    graphs["online_features"] = Graph(
        lambda f: (model.apply(variables, f, method=dn.DuMLNano.online_feats),),
        [(1, "G", "G", xf.shape[-1])], ["features"], ["online_features"])
    graphs["initial_filter"] = Graph(
        lambda f: (model.apply(variables, f, method=dn.DuMLNano.initial_filter),),
        [z_on.shape], ["template_online_features"], ["filter"])
    graphs["online_scores"] = Graph(
        lambda w, f: (online_lib.online_scores(w, f, None),),
        [filt.shape, x_on.shape], ["filter", "online_features"], ["scores"])
  return graphs


def _duml_graphs(config, variables):
  from duml_jax.models import duml as duml_lib   # pylint: disable=import-outside-toplevel
  from duml_jax.models import online as online_lib   # pylint: disable=import-outside-toplevel
  model = duml_lib.build_model(config.model)
  DuML = duml_lib.DuML   # pylint: disable=invalid-name
  m = config.model
  z = jax.ShapeDtypeStruct((1, m.exemplar_size, m.exemplar_size, 3), jnp.float32)
  x = jax.ShapeDtypeStruct((1, m.search_size, m.search_size, 3), jnp.float32)
  zf = jax.eval_shape(lambda a: model.apply(variables, a, method=DuML.template), z)
  xf = jax.eval_shape(lambda a: model.apply(variables, a, method=DuML.search), x)
  zf_leaves, zf_tree = jax.tree.flatten(zf)
  xf_leaves, xf_tree = jax.tree.flatten(xf)
  heads = jax.eval_shape(lambda a, b: model.apply(variables, a, b, method=DuML.offline_heads),
                         zf, xf)

  def names(tree, prefix):
    return [prefix + jax.tree_util.keystr(p).replace("['", "_").replace("']", "")
            .replace("[", "_").replace("]", "") for p, _ in jax.tree_util.tree_leaves_with_path(tree)]

  def flat(fn):
    return lambda *a: tuple(jax.tree.leaves(fn(*a)))

  graphs = {
      "template": Graph(flat(lambda a: model.apply(variables, a, method=DuML.template)),
                        [z.shape], ["template"], names(zf, "z")),
      "search": Graph(flat(lambda a: model.apply(variables, a, method=DuML.search)),
                      [x.shape], ["search"], names(xf, "x")),
      "offline_heads": Graph(
          flat(lambda *a: model.apply(variables, jax.tree.unflatten(zf_tree, a[:len(zf_leaves)]),
                                      jax.tree.unflatten(xf_tree, a[len(zf_leaves):]),
                                      method=DuML.offline_heads)),
          [s.shape for s in zf_leaves + xf_leaves], names(zf, "z") + names(xf, "x"),
          names(heads, "heads")),
  }
  if xf["online"] is not None:
    filt = jax.eval_shape(lambda a: model.apply(variables, a, method=DuML.initial_filter),
                          zf["online"])
    graphs["initial_filter"] = Graph(
        lambda a: (model.apply(variables, a, method=DuML.initial_filter),),
        [zf["online"].shape], ["template_online_features"], ["filter"])
    graphs["online_scores"] = Graph(lambda w, f: (online_lib.online_scores(w, f, None),),
                                    [filt.shape, xf["online"].shape],
                                    ["filter", "online_features"], ["scores"])
  return graphs


def export_onnx(config, variables, out_dir) -> List[pathlib.Path]:
  """Writes each of `network_graphs` as ``DIR/<name>.onnx`` (+ the manifest); returns the paths."""
  import onnx   # pylint: disable=import-outside-toplevel
  from jax2onnx import to_onnx   # pylint: disable=import-outside-toplevel
  # jax2onnx imports optional example plugins (dm_pix, equinox) and logs their failures.
  logging.getLogger("jax2onnx").setLevel(logging.ERROR)
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  paths, manifest = [], {"format": "onnx", "family": _family(config), "graphs": {}}
  for name, g in network_graphs(config, variables).items():
    nchw = list(range(len(g.inputs))) if g.nchw else None
    model = to_onnx(g.fn, list(g.inputs), model_name=name, opset=g.opset,
                    input_names=list(g.input_names), output_names=list(g.output_names),
                    inputs_as_nchw=nchw,
                    outputs_as_nchw=list(range(len(g.output_names))) if g.nchw else None)
    path = out / f"{name}.onnx"
    _atomic_write(path, model.SerializeToString())
    onnx.checker.check_model(str(path))
    paths.append(path)
    manifest["graphs"][name] = {"file": path.name, "inputs": dict(zip(g.input_names, map(
        list, g.inputs))), "outputs": list(g.output_names), "layout": "NCHW" if g.nchw else "NHWC"}
  paths.append(_write_manifest(out, manifest))
  return paths


# ------------------------------------------------------------------ StableHLO --

def tracker_functions(config, variables):
  """Pure ``init(frame, box) -> state`` and ``step(state, frame) -> (state, box, score)``
  of `config`'s tracker (frames uint8 RGB (H, W, 3), boxes 0-based [x, y, w, h])."""
  family = _family(config)
  if family == "nanotrack":
    from duml_jax.tracking import nanotrack_tracker as ntt   # pylint: disable=import-outside-toplevel
    cfg = config.tracking.nanotrack

    def init(frame, box):
      return ntt.init(variables, cfg, frame, box)

    def step(state, frame):
      return ntt.track(variables, cfg, state, frame)
    return init, step
  if family == "duml_nano":
    from duml_jax.evaluation import nano   # pylint: disable=import-outside-toplevel
    from duml_jax.tracking import duml_nano_tracker as dnt   # pylint: disable=import-outside-toplevel
    model, p = nano.build_model(config), dnt.params(config.tracking)

    def init(frame, box):
      return dnt.init(model, variables, p, frame, box)

    def step(state, frame):
      state, out = dnt.track(model, variables, p, state, frame)
      return state, out["box"], out["score"]
    return init, step
  from duml_jax.models import duml as duml_lib   # pylint: disable=import-outside-toplevel
  from duml_jax.tracking import tracker as tracker_lib   # pylint: disable=import-outside-toplevel
  model, tcfg = duml_lib.build_model(config.model), tracker_lib.tracking_params(config)

  def init(frame, box):
    size = jnp.asarray([frame.shape[1], frame.shape[0]], jnp.float32)
    return tracker_lib.init(model, variables, tcfg, frame, box, size)

  def step(state, frame):
    state, out = tracker_lib.step(model, variables, tcfg, state, frame)
    return state, out["box"], out["score"]
  return init, step


def export_stablehlo(config, variables, out_dir, frame_hw) -> List[pathlib.Path]:
  """Serialises the tracker's init and step for frames of `frame_hw` (H, W); returns paths."""
  init, step = tracker_functions(config, variables)
  frame = jax.ShapeDtypeStruct((int(frame_hw[0]), int(frame_hw[1]), 3), jnp.uint8)
  box = jax.ShapeDtypeStruct((4,), jnp.float32)
  state = jax.eval_shape(init, frame, box)
  leaves, tree = jax.tree.flatten(state)

  def flat_init(f, b):
    return tuple(jax.tree.leaves(init(f, b)))

  def flat_step(*args):
    new, b, s = step(jax.tree.unflatten(tree, args[:-1]), args[-1])
    return tuple(jax.tree.leaves(new)) + (b, s)

  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  exported = {
      "init": jax.export.export(jax.jit(flat_init))(frame, box),
      "step": jax.export.export(jax.jit(flat_step))(*leaves, frame),
  }
  paths = []
  for name, e in exported.items():
    path = out / f"{name}.stablehlo"
    _atomic_write(path, e.serialize())
    paths.append(path)
  manifest = {"format": "stablehlo", "family": _family(config),
              "frame_shape": list(frame.shape), "state_leaves": len(leaves),
              "init": {"file": "init.stablehlo", "inputs": ["frame uint8 (H, W, 3) RGB",
                                                            "box float32 (4,) [x, y, w, h]"],
                       "outputs": f"{len(leaves)} state arrays"},
              "step": {"file": "step.stablehlo",
                       "inputs": f"{len(leaves)} state arrays, then the frame",
                       "outputs": f"{len(leaves)} state arrays, box (4,), score ()"}}
  paths.append(_write_manifest(out, manifest))
  return paths


class StableHLOTracker:
  """Runs an exported tracker with jax alone: ``init(frame, box)``, ``update(frame) -> (box,
  score)``. Frames must have the exported size (manifest ``frame_shape``)."""

  def __init__(self, folder):
    folder = pathlib.Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    if manifest.get("format") != "stablehlo":
      raise ValueError(f"{folder / MANIFEST}: format {manifest.get('format')!r}, not a "
                       "StableHLO export (python -m duml_jax.export --format=stablehlo)")
    self.frame_shape = tuple(manifest["frame_shape"])
    self._init = jax.export.deserialize(bytearray((folder / "init.stablehlo").read_bytes()))
    self._step = jax.export.deserialize(bytearray((folder / "step.stablehlo").read_bytes()))
    self._state = None

  def _frame(self, frame):
    frame = np.asarray(frame, np.uint8)
    if frame.shape != self.frame_shape:
      raise ValueError(f"frame of shape {frame.shape}: this export takes {self.frame_shape} "
                       "(re-export with --frame_size=H,W)")
    return frame

  def init(self, frame, box):
    self._state = self._init.call(self._frame(frame), np.asarray(box, np.float32))

  def update(self, frame):
    if self._state is None:
      raise RuntimeError("update called before init")
    *state, box, score = self._step.call(*self._state, self._frame(frame))
    self._state = state
    return np.asarray(box, np.float64), float(score)


def _atomic_write(path, data: bytes):
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_bytes(data)
  os.replace(tmp, path)


def _write_manifest(out, manifest):
  path = out / MANIFEST
  _atomic_write(path, (json.dumps(manifest, indent=1) + "\n").encode())
  return path


# ----------------------------------------------------------------------- CLI --

_FLAGS = {}   # defined only when run as a program: tests import this module beside evaluate.py


def _define_flags():
  from ml_collections import config_flags   # pylint: disable=import-outside-toplevel
  _FLAGS["config"] = config_flags.DEFINE_config_file(
      "config", None, "Config (default: the checkpoint's).", lock_config=True)
  _FLAGS["checkpoint"] = flags.DEFINE_string(
      "checkpoint", None, "A train.py workdir (DuML) or a meta_nano workdir (DuML-nano).")
  _FLAGS["step"] = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
  _FLAGS["format"] = flags.DEFINE_enum("format", "onnx", FORMATS, "What to export.")
  _FLAGS["out"] = flags.DEFINE_string("out", None, "Output folder.", required=True)
  _FLAGS["frame_size"] = flags.DEFINE_list(
      "frame_size", ["480", "640"], "stablehlo: the frame size H,W the tracker is exported for.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from configs import duml_nano as duml_nano_config   # pylint: disable=import-outside-toplevel
  from duml_jax.evaluation import evaluate_lib   # pylint: disable=import-outside-toplevel
  f = {k: v.value for k, v in _FLAGS.items()}
  if f["config"] is None and not f["checkpoint"]:
    raise app.UsageError("give --checkpoint (a train.py or meta_nano workdir) and/or --config")
  if f["format"] == "stablehlo":
    try:
      frame_hw = [int(v) for v in f["frame_size"]]
    except ValueError:
      frame_hw = []
    if len(frame_hw) != 2 or min(frame_hw) <= 0:
      raise app.UsageError(f"--frame_size={','.join(f['frame_size'])}: give H,W in pixels")
  config, variables = evaluate_lib.resolve(f["config"], f["checkpoint"], f["step"],
                                           online_config=duml_nano_config.default)
  if f["format"] == "onnx":
    paths = export_onnx(config, variables, f["out"])
  else:
    paths = export_stablehlo(config, variables, f["out"], frame_hw)
  for p in paths:
    print(f"wrote {p} ({p.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
  _define_flags()
  app.run(main)

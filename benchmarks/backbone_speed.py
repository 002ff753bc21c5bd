"""Appendix B: the interpolated ResNet-50 (DuML) against pysot's dilated one, side by side.

Prints one JSON object. In one process, for each backbone ('resnet50': original strides,
blocks 3-4 resized to stride 8; 'resnet50_dilated': layers 3-4 at stride 1 with dilation
2 and 4), the median time of
  * `backbone`: template + search forward of the backbone alone (one jitted call on a
    (1, Z, Z, 3) template and a (1, X, X, 3) search crop, outputs waited for);
  * `ofc5s_track_step`: the OFC-5s tracker's step (`track_speed.one_sequence`: crop,
    backbone, neck, heads, post-processing), frames/s on synthetic frames;
and `dilated_over_interpolated`, the time ratio (the paper: ~1.96, 90 vs 46 FPS on a
Titan Xp). Random weights: the speed does not depend on them. Compile time is apart.

`--width` narrows both ResNet-50s (layer1 width and stem; 64 is the real network) for a
quick CPU smoke run: it swaps the two builders in this process only.

  python benchmarks/backbone_speed.py                       # 127 / 255, real widths
  python benchmarks/backbone_speed.py --iters 3 --track-frames 5
"""
import argparse
import contextlib
import functools
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from duml_jax.models import backbone as backbone_lib  # noqa: E402

BACKBONES = ("resnet50", "resnet50_dilated")


@contextlib.contextmanager
def narrowed(width):
  """Both ResNet-50 builders at layer1 width / stem `width` inside the block (64: as is)."""
  saved = dict(backbone_lib._BUILDERS)  # pylint: disable=protected-access
  if width != 64:
    for name in BACKBONES:
      backbone_lib._BUILDERS[name] = functools.partial(  # pylint: disable=protected-access
          saved[name], num_filters=width, stem_filters=width)
  try:
    yield
  finally:
    backbone_lib._BUILDERS.clear()  # pylint: disable=protected-access
    backbone_lib._BUILDERS.update(saved)  # pylint: disable=protected-access


def backbone_forward(name, template_size, search_size, iters, dtype="float32"):
  """Median ms of one jitted template + search forward of backbone `name`, compile apart."""
  bb = backbone_lib.build_backbone(name, dtype=jnp.dtype(dtype))
  variables = jax.jit(lambda k: bb.init(k, jnp.zeros((1, search_size, search_size, 3)),
                                        train=False))(jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  z = jnp.asarray(rng.uniform(0, 255, (1, template_size, template_size, 3)), jnp.float32)
  x = jnp.asarray(rng.uniform(0, 255, (1, search_size, search_size, 3)), jnp.float32)
  fwd = jax.jit(lambda v, z, x: (bb.apply(v, z, train=False), bb.apply(v, x, train=False)))
  out, compile_s = common.timed(fwd, variables, z, x)
  times = common.time_repeats(lambda: fwd(variables, z, x), iters)
  return {"template_search": common.summary(times), "compile_s": round(compile_s, 2),
          "grids": [int(out[0][0].shape[1]), int(out[1][0].shape[1])]}


def ofc5s_step(preset, name, frames, box):
  """OFC-5s tracker frames/s with backbone `name` (`track_speed.one_sequence`)."""
  from benchmarks import track_speed  # pylint: disable=g-import-not-at-top
  arg = f"{preset},backbone={name}" if name != "resnet50" else preset
  _, model, variables, tcfg = track_speed.build(arg, "ofc5s")
  return track_speed.one_sequence(model, variables, tcfg, frames, box)


def compare(preset="paper", template_size=127, search_size=255, iters=20, track_frames=30,
            width=64, dtype="float32"):
  """Both backbones' figures and the dilated / interpolated time ratios (one dict)."""
  out = {"width": width, "dtype": dtype, "template_size": template_size,
         "search_size": search_size}
  frames, box = common.synthetic_frames(track_frames + 2) if track_frames else (None, None)
  with narrowed(width):
    for name in BACKBONES:
      entry = {"backbone": backbone_forward(name, template_size, search_size, iters, dtype)}
      if track_frames:
        entry["ofc5s_track_step"] = ofc5s_step(f"{preset},dtype={dtype}", name, frames, box)
      out[name] = entry
  i, d = out["resnet50"], out["resnet50_dilated"]
  ratio = {"backbone": round(d["backbone"]["template_search"]["median_ms"]
                             / i["backbone"]["template_search"]["median_ms"], 3)}
  if track_frames:
    ratio["ofc5s_track_step"] = round(d["ofc5s_track_step"]["ms_per_frame"]
                                      / i["ofc5s_track_step"]["ms_per_frame"], 3)
  out["dilated_over_interpolated"] = ratio
  out["paper_ratio"] = {"value": round(90 / 46, 2), "source": "Appendix B: 90 vs 46 FPS, Titan Xp"}
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--preset", default="paper", help="config preset of the tracker step")
  p.add_argument("--template-size", type=int, default=127)
  p.add_argument("--search-size", type=int, default=255)
  p.add_argument("--iters", type=int, default=20, help="timed backbone calls")
  p.add_argument("--track-frames", type=int, default=30, help="timed OFC-5s frames (0: none)")
  p.add_argument("--width", type=int, default=64, help="layer1 width (64: ResNet-50)")
  p.add_argument("--dtype", default="float32", help="float32 | bfloat16")
  args = p.parse_args(argv)
  result = common.header("backbone_speed", args.preset)
  t0 = time.perf_counter()
  result.update(compare(args.preset, args.template_size, args.search_size, args.iters,
                        args.track_frames, args.width, args.dtype))
  result["wall_s"] = round(time.perf_counter() - t0, 1)
  common.finish(result)


if __name__ == "__main__":
  main()

"""Model FLOPs per tracked frame and per training example (XLA cost analysis + a hand count).

Prints one JSON object. Figures come from
`jax.jit(f).lower(abstract args).compile().cost_analysis()['flops']` of:

* `track_step`: the full `tracker.step` (crop, network, post-processing,
  memory add) per form; XLA's CPU cost analysis leaves out the filter
  update inside the `lax.cond` (the figure is the network's plus a little),
  so an update frame costs `update_iters` x `sdgn_update_step` more;
* `network_per_frame`: search backbone + neck + offline heads + online
  scores for one search crop (config size) (what `torch_compare.py` times);
* `tracker_init`: `tracker.init` (template + the augmented first-frame
  memory + `init_iters` SD-GN steps);
* `sdgn_update_step`: one tracking-time SD-GN step over the full memory;
* `train_step_per_example`: value and gradient of the library loss
  (`objectives.make_loss_fn`, sequence-wise for forms with an online branch,
  pair-wise otherwise) divided by the batch;
* `backbone_search` / `backbone_template`: the backbone alone on a search / template crop, next to a hand count of
  its convolutions (2 * H_out * W_out * k_h * k_w * C_in * C_out each, the
  stride-8 resize, BN and ReLU not counted).

Utilisation = achieved FLOP/s / peak: divide these by the times of
`track_speed.py` / `train_speed.py`.

  python benchmarks/flops.py --config tiny
  python benchmarks/flops.py --config paper --batch 2
"""
import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from configs import duml as duml_configs  # noqa: E402
from duml_jax.models import backbone as backbone_lib  # noqa: E402
from duml_jax.models import duml as duml_lib  # noqa: E402
from duml_jax.models import online as online_lib  # noqa: E402
from duml_jax.tracking import tracker  # noqa: E402
from duml_jax.training import objectives  # noqa: E402

DuML = duml_lib.DuML
_ARCH = {"resnet50": ((3, 4, 6, 3), 4, 64, 64), "resnet18": ((2, 2, 2, 2), 1, 64, 64),
         "tiny": ((1, 1, 1, 1), 1, 16, 16)}


def _conv_out(n, k, s, p):
  return (n + 2 * p - k) // s + 1


def backbone_conv_flops(arch, size):
  """Hand count: 2 * multiply-adds of every convolution of the backbone on a size x size image."""
  sizes, expansion, width, stem = _ARCH[arch]
  total = 0
  n = _conv_out(size, 7, 2, 3)
  total += 2 * n * n * 49 * 3 * stem
  n = _conv_out(n, 3, 2, 1)
  cin = stem
  for i, blocks in enumerate(sizes):
    f = width * 2**i
    out = f * expansion
    for j in range(blocks):
      s = 2 if i > 0 and j == 0 else 1
      m = _conv_out(n, 3, s, 1)
      if expansion == 4:        # 1x1 -> 3x3/s -> 1x1
        total += 2 * n * n * cin * f + 2 * m * m * 9 * f * f + 2 * m * m * f * out
      else:                     # 3x3/s -> 3x3
        total += 2 * m * m * 9 * cin * f + 2 * m * m * 9 * f * f
      if s != 1 or cin != out:
        total += 2 * m * m * cin * out
      cin, n = out, m
  return total


def _cost_dict(cost):
  return cost[0] if isinstance(cost, (list, tuple)) else cost


def lowered_cost(fn, *args):
  """XLA's cost analysis of `jit(fn)` lowered at `args`, without compiling (gpu_suite.py's
  model FLOPs): {'flops', 'bytes_accessed'}."""
  cost = _cost_dict(jax.jit(fn).lower(*args).cost_analysis())
  return {"flops": float(cost.get("flops", float("nan"))),
          "bytes_accessed": float(cost.get("bytes accessed", float("nan")))}


def _flops(fn, *args):
  t0 = time.perf_counter()
  cost = _cost_dict(jax.jit(fn).lower(*args).compile().cost_analysis())
  return {"gflops": round(float(cost.get("flops", float("nan"))) / 1e9, 4),
          "gbytes_accessed": round(float(cost.get("bytes accessed", float("nan"))) / 1e9, 4),
          "compile_s": round(time.perf_counter() - t0, 1)}


def _abstract(tree):
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)), tree)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", default="tiny")
  p.add_argument("--batch", type=int, default=2, help="training batch for the cost analysis")
  p.add_argument("--forms", default="duml,ofc5s,onr")
  p.add_argument("--skip-train", action="store_true")
  p.add_argument("--online-filter", default="conv",
                 help="conv (library) | taps (proposed fix, patched in this process)")
  args = p.parse_args(argv)
  common.use_online_filter(args.online_filter)
  from benchmarks import track_speed  # pylint: disable=g-import-not-at-top
  result = common.header("flops", args.config)
  result["online_filter"] = args.online_filter
  cfg = duml_configs.get_config(args.config)
  model = duml_lib.build_model(cfg.model)
  variables = jax.eval_shape(lambda: duml_lib.init_variables(model, jax.random.PRNGKey(0)))
  f32 = lambda *s: jax.ShapeDtypeStruct(s, jnp.float32)
  frame = jax.ShapeDtypeStruct((360, 640, 3), jnp.uint8)

  arch = cfg.model.backbone
  bb = backbone_lib.build_backbone(arch)
  zs, xs = cfg.model.exemplar_size, cfg.model.search_size
  bvars = jax.eval_shape(lambda: bb.init(jax.random.PRNGKey(0), jnp.zeros((1, xs, xs, 3)),
                                         train=False))
  for key, n in (("backbone_search", xs), ("backbone_template", zs)):
    result[key] = dict(_flops(lambda v, x: bb.apply(v, x, train=False), bvars, f32(1, n, n, 3)),
                       size=n, hand_count_gflops=round(backbone_conv_flops(arch, n) / 1e9, 4))

  def net(v, z_off, filt, x):
    xf = model.apply(v, x, method=DuML.search)
    out = model.apply(v, {"offline": z_off}, xf, method=DuML.offline_heads)
    if model.a_on:
      out["online"] = online_lib.online_scores(filt, xf["online"], model.online_crop)
    return out
  zf = jax.eval_shape(lambda v, z: model.apply(v, z, method=DuML.template), variables,
                      f32(1, zs, zs, 3))
  filt = (jax.eval_shape(lambda v, o: model.apply(v, o, method=DuML.initial_filter), variables,
                         zf["online"]) if model.a_on else None)
  result["network_per_frame"] = _flops(net, variables, zf["offline"], filt, f32(1, xs, xs, 3))

  result["track_step"] = {}
  for form in args.forms.split(","):
    fcfg, fmodel, _, tcfg = track_speed.build(args.config, form)
    fvars = jax.eval_shape(lambda m=fmodel: duml_lib.init_variables(m, jax.random.PRNGKey(0)))
    state = jax.eval_shape(
        lambda v, fr, m=fmodel, t=tcfg: tracker.init(m, v, t, fr, jnp.array([300., 150., 64., 48.]),
                                                     jnp.array([640., 360.])), fvars, frame)
    entry = {"track": _flops(lambda v, s, fr, m=fmodel, t=tcfg: tracker.step(m, v, t, s, fr),
                             fvars, state, frame)}
    if form == "duml":
      entry["init"] = _flops(
          lambda v, fr, b, sz, m=fmodel, t=tcfg: tracker.init(m, v, t, fr, b, sz), fvars, frame,
          f32(4), f32(2))
      entry["sdgn_update_step"] = _flops(
          lambda v, f, mem, m=fmodel, t=tcfg: tracker._optimise(m, v, t, f, mem, 1),  # pylint: disable=protected-access
          fvars, state.filter, state.memory)
    result["track_step"][form] = entry
  result["track_step_note"] = ("'track' is XLA's count for the step; compare it with "
                               "network_per_frame to see whether the lax.cond filter-update "
                               "branch is included; an update costs update_iters x "
                               "sdgn_update_step (every update_every frames)")

  if not args.skip_train:
    b = args.batch
    loss_fn = objectives.make_loss_fn(model, cfg)
    d = cfg.data
    if objectives.training_mode(cfg.model) == "sequence":
      s, q = d.num_support, d.num_query
      batch = {"support_template": f32(b, s, zs, zs, 3), "support_search": f32(b, s, xs, xs, 3),
               "support_box": f32(b, s, 4), "query_search": f32(b, q, xs, xs, 3),
               "query_box": f32(b, q, 4)}
    else:
      batch = {"template": f32(b, zs, zs, 3), "search": f32(b, xs, xs, 3),
               "search_box": f32(b, 4), "negative": jax.ShapeDtypeStruct((b,), jnp.bool_)}

    def grad_step(v, batch):
      return jax.value_and_grad(loss_fn, has_aux=True)(
          v["params"], v["batch_stats"], batch, jax.random.PRNGKey(0), (("train", True),))
    tr = _flops(grad_step, variables, batch)
    tr["batch"] = b
    tr["mode"] = objectives.training_mode(cfg.model)
    tr["gflops_per_example"] = round(tr["gflops"] / b, 4)
    result["train_step"] = tr
  common.finish(result)


if __name__ == "__main__":
  main()

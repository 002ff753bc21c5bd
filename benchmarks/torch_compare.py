"""JAX vs PyTorch eager, same DuML network, same weights, same machine: tracking and training step.

Prints one JSON object. The PyTorch network is `benchmarks/torch_duml.py`
(written from the Flax code, weights converted from the Flax variables by its
`load_flax`); outputs are checked to agree before timing.

* tracking step: template features and the initial online filter once, then
  per frame a search crop of the config size (host numpy in) -> backbone, neck, offline
  heads (score + box), online features and online scores (host numpy out).
  JAX: one jitted function; PyTorch: eager under `torch.no_grad()`.
* training step: pair-wise forward and backward (gradients of every
  parameter) of template + search crops through the offline heads and the
  initial filter's online scores, BatchNorm in training mode, loss = the mean
  of the squared outputs (the same on both sides; no optimiser update).

JAX and PyTorch runs alternate in rounds so that load changes on a shared
machine hit both alike; medians are reported, ratio = JAX / PyTorch time.

  python benchmarks/torch_compare.py --config tiny
  python benchmarks/torch_compare.py --config paper --track-repeats 5 --train-repeats 2 --batch 2
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
from duml_jax.models import duml as duml_lib  # noqa: E402
from duml_jax.models import online as online_lib  # noqa: E402

DuML = duml_lib.DuML


def jax_fns(model):
  @jax.jit
  def template(variables, z):
    zf = model.apply(variables, z, method=DuML.template)
    filt = model.apply(variables, zf["online"], method=DuML.initial_filter) if model.a_on else None
    return zf["offline"], filt

  @jax.jit
  def track_step(variables, z_off, filt, x):
    xf = model.apply(variables, x, method=DuML.search)
    out = model.apply(variables, {"offline": z_off}, xf, method=DuML.offline_heads)
    if model.a_on:
      out["online"] = online_lib.online_scores(filt, xf["online"], model.online_crop)
    return out

  def loss(params, batch_stats, z, x):
    out, new = model.apply({"params": params, "batch_stats": batch_stats}, z, x, train=True,
                           mutable=["batch_stats"])
    terms = [jnp.mean(v * v) for v in jax.tree.leaves(out)]
    return sum(terms), new["batch_stats"]

  @jax.jit
  def train_step(variables, z, x):
    (l, bs), grads = jax.value_and_grad(loss, has_aux=True)(
        variables["params"], variables["batch_stats"], z, x)
    return l, grads, bs

  return template, track_step, train_step


def torch_fns(tmodel, torch):
  from benchmarks import torch_duml  # pylint: disable=g-import-not-at-top

  def template(z):
    with torch.no_grad():
      zf = tmodel.eval().template(torch_duml.nhwc_to_nchw(z))
      filt = tmodel.initial_filter(zf["online"]) if tmodel.a_on else None
    return zf["offline"], filt

  def track_step(z_off, filt, x):
    with torch.no_grad():
      xf = tmodel.search(torch_duml.nhwc_to_nchw(x))
      out = tmodel.offline_heads({"offline": z_off}, xf)
      if tmodel.a_on:
        out["online"] = torch_duml.online_scores(filt, xf["online"], tmodel.online_crop)
      return {k: v.numpy() for k, v in out.items() if v is not None}

  def train_step(z, x):
    tmodel.train()
    tmodel.zero_grad(set_to_none=True)
    out = tmodel(torch_duml.nhwc_to_nchw(z), torch_duml.nhwc_to_nchw(x))
    loss = sum(torch.mean(v * v) for v in out.values() if v is not None)
    loss.backward()
    return float(loss)

  return template, track_step, train_step


def _alternate(fa, fb, rounds, per_round):
  ta, tb = [], []
  for _ in range(rounds):
    for fn, acc in ((fa, ta), (fb, tb)):
      for _ in range(per_round):
        t0 = time.perf_counter()
        fn()
        acc.append(time.perf_counter() - t0)
  return ta, tb


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", default="tiny")
  p.add_argument("--track-repeats", type=int, default=30, help="frames per side")
  p.add_argument("--train-repeats", type=int, default=6, help="steps per side")
  p.add_argument("--batch", type=int, default=16, help="training pairs per step")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--online-filter", default="conv",
                 help="conv (library) | taps (proposed fix, patched in this process)")
  args = p.parse_args(argv)
  common.use_online_filter(args.online_filter)
  try:
    import torch  # pylint: disable=g-import-not-at-top
    from benchmarks import torch_duml  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    print(f"torch_compare: PyTorch not available ({e}); skipped", file=sys.stderr)
    return

  cfg = duml_configs.get_config(args.config)
  model = duml_lib.build_model(cfg.model)
  variables = duml_lib.init_variables(model, jax.random.PRNGKey(0))
  tmodel = torch_duml.load_flax(torch_duml.from_model_config(cfg.model), variables)
  result = common.header("torch_compare", args.config)
  result["online_filter"] = args.online_filter
  result.update(torch_version=torch.__version__, torch_threads=torch.get_num_threads(),
                form=f"{cfg.model.offline}+{cfg.model.online}", backbone=cfg.model.backbone)

  rng = np.random.default_rng(0)
  zs, xsz = cfg.model.exemplar_size, cfg.model.search_size
  result.update(exemplar_size=zs, search_size=xsz)
  z1 = rng.uniform(0, 255, (1, zs, zs, 3)).astype(np.float32)
  xs = rng.uniform(0, 255, (4, 1, xsz, xsz, 3)).astype(np.float32)
  j_template, j_track, j_train = jax_fns(model)
  t_template, t_track, t_train = torch_fns(tmodel, torch)

  # Tracking step.
  t0 = time.perf_counter()
  jz, jfilt = jax.block_until_ready(j_template(variables, z1))
  ref = jax.device_get(jax.block_until_ready(j_track(variables, jz, jfilt, xs[0])))
  jax_compile = time.perf_counter() - t0
  tz, tfilt = t_template(z1)
  got = t_track(tz, tfilt, xs[0])
  diff = float(np.max(np.abs(got["score"].transpose(0, 2, 3, 1) - ref["score"]))) if (
      ref["score"] is not None) else 0.
  result["track_output_max_abs_diff_score"] = diff
  _, tt = _alternate(lambda: None, lambda: t_template(z1), 1, 3)
  jt = common.time_repeats(lambda: j_template(variables, z1), 3)
  result["template_once"] = {"jax": common.summary(jt), "torch": common.summary(tt)}
  count = [0]

  def jax_frame():
    count[0] += 1
    out = j_track(variables, jz, jfilt, xs[count[0] % 4])
    jax.device_get(out)

  def torch_frame():
    count[0] += 1
    t_track(tz, tfilt, xs[count[0] % 4])
  torch_frame()
  ja, ta = _alternate(jax_frame, torch_frame, args.rounds,
                      max(1, args.track_repeats // args.rounds))
  result["track_step"] = {"jax": common.summary(ja), "torch": common.summary(ta),
                          "jax_first_call_s": round(jax_compile, 2),
                          "ratio_jax_over_torch": round(float(np.median(ja) / np.median(ta)), 3)}
  print(f"# track ratio {result['track_step']['ratio_jax_over_torch']}", file=sys.stderr,
        flush=True)

  # Training step.
  zb = rng.uniform(0, 255, (args.batch, zs, zs, 3)).astype(np.float32)
  xb = rng.uniform(0, 255, (args.batch, xsz, xsz, 3)).astype(np.float32)
  t0 = time.perf_counter()
  jax.block_until_ready(j_train(variables, zb, xb))
  jax_compile = time.perf_counter() - t0
  t_train(zb, xb)
  ja, ta = _alternate(lambda: jax.block_until_ready(j_train(variables, zb, xb)),
                      lambda: t_train(zb, xb), args.rounds,
                      max(1, args.train_repeats // args.rounds))
  result["train_step"] = {"batch": args.batch, "jax": common.summary(ja),
                          "torch": common.summary(ta), "jax_first_call_s": round(jax_compile, 2),
                          "jax_examples_per_s": round(args.batch / float(np.median(ja)), 2),
                          "torch_examples_per_s": round(args.batch / float(np.median(ta)), 2),
                          "ratio_jax_over_torch": round(float(np.median(ja) / np.median(ta)), 3)}
  common.finish(result)


if __name__ == "__main__":
  main()

"""Meta-training of DuML-nano's online (ONR) pieces with NanoTrack frozen.

Learns the online feature projection, the filter initializer and the residual
functions (label, mask and spatial-weight maps, step length, regulariser;
paper Eq. 7-8) by differentiating through the SD-GN inner loop, sequence-wise
(paper Section 4): per sequence, phi^(0) from the support templates' mean
online feature, ``inner_iters`` SD-GN steps on the S = 3 support frames
(labels at their target centres), and the hinge loss (`losses.
hinge_regression_loss`, DiMP's LBHinge) of every iterate phi^(0..T) on the
Q = 2 query frames, weighted as in DuML's training (`objectives`' iterate
weights), against Gaussian labels of sigma ``online_spec.label_sigma`` cells
at the query targets (`labels.onr_label` on the 16x16 grid, cell j at crop
pixel 16 j + 0.5).

NanoTrack's backbone (and head) are frozen: their features are computed
outside the differentiated function, and only the online params are in the
optimiser state, so they get no update by construction.

Data: the training pipeline's sequence mode (`duml_jax.data.pipeline`, crops
and augmentations of the training issue) on generated synthetic videos and,
when present, the real clips of ``../shared/data/real_train`` (`otb_layout`
builder). ``../shared/data/otb_sample`` is the evaluation set and is never
read here.

  python -m duml_jax.training.meta_nano --workdir=/tmp/duml_nano_meta [--steps 80]

writes ``WORKDIR/online_params.npz`` (at every log step and at the end; +
``meta_nano.json``: config and loss log), loaded by `load_online_params`.
"""
import argparse
import json
import os
import pathlib
import time

from absl import logging
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

# The params file's name and I/O live with the checkpoint code that evaluation reads too.
from duml_jax.checkpoint import LOG_FILE, PARAMS_FILE, load_online_params, save_online_params  # pylint: disable=unused-import
from duml_jax.convert import nanotrack as nano_convert
from duml_jax.data import pipeline
from duml_jax.models import duml_nano as dn
from duml_jax import labels as labels_lib
from duml_jax.training import losses
from duml_jax.training import objectives

_REPO = pathlib.Path(__file__).resolve().parents[2]
_SHARED = _REPO.parent / "shared"


def get_config():
  """Meta-training recipe (a few CPU minutes at the defaults)."""
  c = ml_collections.ConfigDict()
  c.version = "v2"
  c.online_layer = "output"           # what the online branch reads (duml_nano.ONLINE_LAYERS)
  c.weights = str(nano_convert.default_weights_dir())
  c.network_channels = "rgb"          # as the cv2-compatible tracker config feeds the network
  c.steps = 80
  c.batch_size = 4
  c.learning_rate = 1e-3
  c.grad_clip = 1.0
  c.inner_iters = 5
  c.hinge_threshold = 0.05
  c.seed = 0
  c.log_every = 10
  c.real_train = str(_SHARED / "data" / "real_train")   # '' or missing: synthetic only
  c.real_weight = 1.0
  c.synthetic_weight = 1.0
  d = pipeline.default_data_config()
  d.mode = "sequence"
  d.datasets = []
  d.synthetic.update(num_videos=24, num_frames=60, height=256, width=256)
  d.num_workers = 0
  d.num_threads = 2
  d.prefetch = 2
  c.data = d
  return c


def _data_config(config, workdir):
  """`config.data` with the datasets of the config, files under `workdir`."""
  d = ml_collections.ConfigDict(config.data.to_dict())
  d.data_root = str(workdir)
  d.tfds_dir = str(pathlib.Path(workdir, "tfds").resolve())
  datasets = []
  if config.synthetic_weight > 0:
    datasets.append(pipeline.synthetic_dataset(str(pathlib.Path(workdir, "synthetic").resolve()),
                                               config.synthetic_weight, frame_range=30))
  real = str(config.real_train or "")
  if real and config.real_weight > 0:
    if "otb_sample" in real:
      raise ValueError(f"meta_nano config.real_train={real!r}: otb_sample is the evaluation "
                       "set and must not be trained on")
    if os.path.isdir(real):
      entry = pipeline.synthetic_dataset(os.path.abspath(real), config.real_weight,
                                         frame_range=30)
      entry.name = "otb_layout"
      entry.tag = "real_train"
      datasets.append(entry)
    else:
      logging.warning("meta_nano: config.real_train=%s not found; synthetic data only", real)
  if not datasets:
    raise ValueError("meta_nano: no dataset (synthetic_weight and real_weight both off)")
  d.datasets = datasets
  return d


def images(x, network_channels):
  """uint8 RGB crops -> float network input (channel order of the tracker config)."""
  x = jnp.asarray(x, jnp.float32)
  return x[..., ::-1] if network_channels == "bgr" else x


def frozen_features(model, nano_params, batch, network_channels):
  """The online branch's inputs of a sequence batch (`DuMLNano.online_input`: NanoTrack's
  features, or the layer ``model.online_layer`` names): (support z, support x, query x)."""
  variables = {"params": nano_params}
  f = lambda a: model.apply(variables, images(a.reshape((-1,) + a.shape[2:]), network_channels),
                            method=dn.DuMLNano.online_input)
  sz, sx, qx = batch["support_template"], batch["support_search"], batch["query_search"]
  unflat = lambda y, a: y.reshape(a.shape[:2] + y.shape[1:])
  # Frozen: no gradient reaches NanoTrack through its features.
  return jax.lax.stop_gradient((unflat(f(sz), sz), unflat(f(sx), sx), unflat(f(qx), qx)))


def _centres(boxes_xywh):
  return boxes_xywh[..., :2] + boxes_xywh[..., 2:] / 2.


def meta_loss(model, online, nano_params, feats, support_box, query_box, num_iter: int,
              hinge_threshold: float):
  """Sequence-wise ONR loss (weighted over iterates) and the per-iterate losses.

  Args:
    online: the trainable online params (the differentiated argument).
    nano_params: frozen {'backbone', 'head'} params (not differentiated).
    feats: `frozen_features` output.
    support_box, query_box: (B, S, 4), (B, Q, 4) xywh in their search crops.
  """
  zf, sf, qf = feats
  variables = {"params": {**jax.lax.stop_gradient(nano_params), **online}}
  scores = model.apply(variables, zf, sf, _centres(support_box), qf, num_iter,
                       method=dn.DuMLNano.online_sequence)          # (B,T+1,Q,G,G,1)
  g = scores.shape[-2]
  sigma = model.online_spec.label_sigma
  lbl = jax.vmap(jax.vmap(lambda b: labels_lib.onr_label(
      b, g, model.stride, dn.FIRST_CELL_CENTRE, sigma)))(query_box)[..., None]
  per_iter = jax.vmap(lambda sc: losses.hinge_regression_loss(sc, lbl, hinge_threshold),
                      in_axes=1)(scores)
  w = objectives._iterate_weights(num_iter)  # pylint: disable=protected-access
  return jnp.sum(w * per_iter), per_iter


def make_optimizer(config):
  return optax.chain(optax.clip_by_global_norm(config.grad_clip), optax.adam(config.learning_rate))


def make_train_step(model, config):
  """Jitted ``features(nano_params, batch) -> feats`` (frozen NanoTrack, outside
  the differentiated function) and ``step(online, opt_state, nano_params, feats,
  support_box, query_box) -> (online, opt_state, metrics)``, and the optimiser."""
  tx = make_optimizer(config)

  def features(nano_params, batch):
    return frozen_features(model, nano_params, batch, config.network_channels)

  def step(online, opt_state, nano_params, feats, support_box, query_box):
    (loss, per_iter), grads = jax.value_and_grad(meta_loss, argnums=1, has_aux=True)(
        model, online, nano_params, feats, support_box, query_box,
        config.inner_iters, config.hinge_threshold)
    updates, opt_state = tx.update(grads, opt_state, online)
    online = optax.apply_updates(online, updates)
    return online, opt_state, {"loss": loss, "loss_first": per_iter[0],
                               "loss_last": per_iter[-1], "grad_norm": optax.tree.norm(grads)}
  return jax.jit(features), jax.jit(step), tx


def train(config, workdir, nano_variables=None):
  """Meta-trains the online params; returns (online params, log list).

  Args:
    config: `get_config()`-shaped.
    workdir: output folder (data caches, params, log).
    nano_variables: NanoTrack variables (default: loaded from `config.weights`).
  """
  workdir = pathlib.Path(workdir).resolve()
  workdir.mkdir(parents=True, exist_ok=True)
  if nano_variables is None:
    nano_variables = nano_convert.load_nanotrack(config.weights, config.version)
  model = dn.build(config.version, online_layer=config.online_layer,
                   train_iters=config.inner_iters)
  nano_params = dn.from_nanotrack(nano_variables, dn.init_online_params(
      model, jax.random.PRNGKey(config.seed)))["params"]
  online = {k: nano_params.pop(k) for k in dn.ONLINE}
  features_fn, step_fn, tx = make_train_step(model, config)
  opt_state = tx.init(online)
  it = pipeline.make_train_iterator(_data_config(config, workdir), process_index=0,
                                    process_count=1, global_batch_size=config.batch_size,
                                    seed=config.seed)
  log, t0 = [], time.perf_counter()
  try:
    for s in range(1, config.steps + 1):
      batch = {k: v for k, v in next(it).items() if k != "skipped"}
      feats = features_fn(nano_params, batch)
      online, opt_state, m = step_fn(online, opt_state, nano_params, feats,
                                     batch["support_box"], batch["query_box"])
      if s % config.log_every == 0 or s in (1, config.steps):
        m = {k: float(v) for k, v in jax.device_get(m).items()}
        if not np.isfinite(m["loss"]):
          raise FloatingPointError(f"meta_nano: loss {m['loss']} at step {s}")
        el = time.perf_counter() - t0
        m.update(step=s, elapsed_s=round(el, 1))
        log.append(m)
        save_online_params(workdir, online)   # a usable file even if stopped early
        logging.info("step %d/%d loss %.5f (phi0 %.5f, phiT %.5f) |g| %.3f  %.2f steps/s, "
                     "ETA %.0fs", s, config.steps, m["loss"], m["loss_first"], m["loss_last"],
                     m["grad_norm"], s / el, (config.steps - s) * el / s)
  finally:
    close = getattr(it, "close", None)
    if close is not None:
      close()
  save_online_params(workdir, online)
  pathlib.Path(workdir, LOG_FILE).write_text(json.dumps(
      {"config": config.to_dict(), "log": log}, indent=1, default=str))
  return online, log


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--steps", type=int, default=None)
  ap.add_argument("--batch_size", type=int, default=None)
  ap.add_argument("--no_real_train", action="store_true",
                  help="synthetic videos only (ignore ../shared/data/real_train)")
  ap.add_argument("--real_train", default=None,
                  help="OTB-layout folder of real training clips (default: config.real_train, "
                       "../shared/data/real_train beside the repository)")
  ap.add_argument("--weights", default=None, help="NanoTrack weights (default: config.weights)")
  ap.add_argument("--online_layer", default=None, choices=sorted(dn.ONLINE_LAYERS),
                  help="backbone features the online branch reads (default: config.online_layer)")
  ap.add_argument("--synthetic_videos", type=int, default=None,
                  help="generated synthetic videos (default: config.data.synthetic.num_videos)")
  ap.add_argument("--synthetic_frames", type=int, default=None,
                  help="frames per synthetic video (default: config.data.synthetic.num_frames)")
  args = ap.parse_args(argv)
  logging.set_verbosity(logging.INFO)
  config = get_config()
  if args.steps is not None:
    config.steps = args.steps
  if args.batch_size is not None:
    config.batch_size = args.batch_size
  if args.real_train is not None:
    config.real_train = args.real_train
  if args.weights is not None:
    config.weights = args.weights
  if args.online_layer is not None:
    config.online_layer = args.online_layer
  if args.no_real_train:
    config.real_train = ""
  if args.synthetic_videos is not None:
    config.data.synthetic.num_videos = args.synthetic_videos
  if args.synthetic_frames is not None:
    config.data.synthetic.num_frames = args.synthetic_frames
  _, log = train(config, args.workdir)
  print(json.dumps(log[-1]))


if __name__ == "__main__":
  main()

"""DuML training objectives: labels + losses of every form on a batch (paper Section 4, Eq. 6).

Two sampling schemes (paper Section 4 and footnote 1):

* pair-wise (forms without an online branch): template + search crop, 20%
  negative pairs; offline classification (OFC: ATSS + focal loss, OFR:
  Gaussian + FC_PR/FC_RG), box L1 and IoU BCE on the search crop.
* sequence-wise (forms with an online branch, trained jointly): a support set
  (inner loop of the online branch; its averaged template feature is the
  offline template) and a query set on which every loss is computed; the
  online loss (hinge, DiMP's LBHinge) is applied to the scores of each
  filter iterate, so gradients flow through the SD-GN steps.

Grids (see `duml_jax/models/duml.py`): offline cell ``u`` of the 25x25 map
is at crop coordinate ``127.5 + 8 (u - 12)`` (first cell 31.5); the online
window cell ``u`` (online feature cell ``u + 4``) at ``8 u + 32.5``.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from duml_jax import anchors as anchors_lib
from duml_jax import config_lib
from duml_jax.models import duml as duml_lib
from duml_jax import labels as labels_lib
from duml_jax.training import losses

# DiMP weights of the filter iterates in the online loss: initial 1, the
# intermediate ones 4 in total, final 1 (pytracking dimp50: 100 / 400 / 100).
# The config's `loss.iterate_weights` / `loss.normalise_iterate_weights` override them.
ITERATE_WEIGHTS = (1., 4., 1.)


def training_mode(model_config):
  """'sequence' when the form has an online branch (joint training), else 'pair'."""
  return "pair" if model_config.online == "none" else "sequence"


def _shapes(model_config, a):
  ratios = tuple(model_config.anchor_ratios) if a > 1 else (1.0,)
  return anchors_lib.anchor_shapes(ratios, tuple(model_config.anchor_scales), model_config.stride)


def offline_anchors(model_config, a):
  """(S, S, a, 4) absolute anchors on the offline grid of the search crop."""
  s = config_lib.score_size(model_config)
  c = model_config.search_size / 2.
  return jnp.asarray(anchors_lib.anchor_grid(s, model_config.stride, _shapes(model_config, a),
                                             centre=(c, c)))


def online_anchors(model_config, a, grid):
  """Anchors on the online grid (cell j at 8 j + 0.5) or its aligned window."""
  c = (config_lib.online_grid(model_config) // 2 * model_config.stride + 0.5
       + config_lib.feature_offset(model_config))
  return jnp.asarray(anchors_lib.anchor_grid(grid, model_config.stride, _shapes(model_config, a),
                                             centre=(c, c)))


def _assign(config, anchors, box, positive, name=None):
  name = name or config.loss.ofc_assigner
  fn = labels_lib.select_label_fn(name)
  a = anchors.shape[-2]
  if name == "centre_radius":
    return fn(anchors, box, radius=config.loss.get("box_radius", 1.5), positive=positive)
  if name == "atss_max_iou":
    topk = config.loss.atss_topk_5s if a > 1 else config.loss.atss_topk_1s
    return fn(anchors, box, topk=topk, positive=positive)
  if name == "atss_min_l2":   # candidates per anchor shape (ATSS: 9); old configs lack the key
    return fn(anchors, box, topk=int(config.loss.get("atss_min_l2_topk", 9)),
              positive=positive)
  return fn(anchors, box, positive=positive)


def offline_losses(config, out, box, positive):
  """Offline classification, box and IoU losses on flat (N, ...) predictions."""
  m = config.model
  a_off = config_lib.num_anchors(m.offline, len(m.anchor_ratios))
  a_box = config_lib.box_anchors(m)
  terms = {}
  if a_off:
    logits = out["score"]
    if m.offline == "OFR":
      s = config_lib.score_size(m)
      first = m.search_size / 2. - m.stride * (s // 2)
      lbl = jax.vmap(lambda b, p: labels_lib.ofr_label(b, s, m.stride, first, config.loss.ofr_sigma,
                                                       positive=p))(box, positive)
      fn = losses.fc_pr_loss if config.loss.ofr_loss == "FC_PR" else losses.fc_rg_loss
      terms["offline"] = fn(logits[..., 0], lbl, alpha=config.loss.ofr_alpha,
                            beta=config.loss.ofr_beta)
    else:
      anc = offline_anchors(m, a_off)
      lbl = jax.vmap(lambda b, p: _assign(config, anc, b, p))(box, positive)
      terms["offline"] = losses.sigmoid_focal_loss(logits, lbl, config.loss.focal_alpha,
                                                   config.loss.focal_gamma)
  anc = offline_anchors(m, a_box)
  box_name = config_lib.box_assigner(config.loss)
  pos = jax.vmap(lambda b, p: _assign(config, anc, b, p, box_name))(box, positive) == 1
  targets = jax.vmap(lambda b: labels_lib.box_targets(anc, b))(box)
  terms["box"] = losses.box_l1_loss(out["box"][..., :4], targets, pos)
  terms["iou"] = losses.iou_bce_loss(out["box"][..., 4], out["box"][..., :4], anc, box, pos)
  return terms, {"num_pos": jnp.sum(pos) / box.shape[0]}


def _iterate_weights(t, weights=ITERATE_WEIGHTS, normalise=True):
  """Weights of the T+1 iterates phi^(0..T): `weights` = (initial, all intermediate ones
  together, final), as DiMP's 100 / 400 / 100; divided by their sum when `normalise`."""
  w0, wmid, wend = (float(v) for v in weights)
  if t == 0:
    w = np.array([w0 + wmid + wend])
  elif t == 1:
    w = np.array([w0, wend])
  else:
    w = np.array([w0] + [wmid / (t - 1)] * (t - 1) + [wend])
  if normalise:
    w = w / w.sum()
  return jnp.asarray(w, jnp.float32)


def iterate_weights(config, t):
  """`_iterate_weights` of `config.loss` (configs saved before the keys existed: DiMP's
  1 / 4 / 1, normalised)."""
  return _iterate_weights(t, tuple(config.loss.get("iterate_weights", ITERATE_WEIGHTS)),
                          bool(config.loss.get("normalise_iterate_weights", True)))


def online_loss(config, scores, query_box):
  """Hinge loss of the scores of every filter iterate on the query frames.

  Args:
    scores: (B, T+1, Q, S, S, A) online scores.
    query_box: (B, Q, 4).
  """
  m = config.model
  s = scores.shape[-2]
  first = (m.stride * (config_lib.template_cells(m) // 2) + 0.5     # online window cell 0
           + config_lib.feature_offset(m))
  loss_of = functools.partial(losses.online_regression_loss,
                              kind=config.loss.get("online_loss", "hinge"),
                              threshold=config.loss.hinge_threshold,
                              reduction=config.loss.get("online_reduction", "mean"))
  if m.online == "ONR":
    lbl = jax.vmap(jax.vmap(lambda b: labels_lib.onr_label(b, s, m.stride, first,
                                                           m.online_cfg.label_sigma)))(query_box)
    lbl = lbl[:, None, :, :, :, None]                       # (B,1,Q,S,S,1)
    per_iter = jax.vmap(lambda sc: loss_of(sc, lbl[:, 0]), in_axes=1)(scores)
  else:
    anc = online_anchors(m, scores.shape[-1], s)
    lbl = jax.vmap(jax.vmap(lambda b: labels_lib.onc_labels(
        anc, b, config.loss.onc_pos_iou, config.loss.onc_neg_iou)))(query_box)
    target = (lbl == 1).astype(jnp.float32)[:, None]
    keep = (lbl >= 0)[:, None]
    # Ignored anchors (-1) cost nothing: their prediction is set to the target.
    sc = jnp.where(keep, scores, target)
    per_iter = jax.vmap(lambda x: loss_of(x, target[:, 0]), in_axes=1)(sc)
  w = iterate_weights(config, scores.shape[1] - 1)
  return jnp.sum(w * per_iter), per_iter


def support_onc_labels(config, support_box, grid):
  """ONC inner-loop labels (B, S, G, G, A) on the online grid (IoU > 0.8 / best pos, < 0.3 neg)."""
  m = config.model
  a = config_lib.num_anchors(m.online, len(m.anchor_ratios))
  anc = online_anchors(m, a, grid)
  return jax.vmap(jax.vmap(lambda b: labels_lib.onc_labels(
      anc, b, config.loss.onc_pos_iou, config.loss.onc_neg_iou)))(support_box)


def _images(x):
  return jnp.asarray(x, jnp.float32)


def make_loss_fn(model, config):
  """loss_fn(params, batch_stats, batch, rng, train_flags) for `parallel.make_train_step`."""
  mode = training_mode(config.model)
  weights = {"online": config.loss.w_online, "offline": config.loss.w_offline,
             "box": config.loss.w_box, "iou": config.loss.w_iou}

  # Configs saved before the key existed: queries only.
  on_support = bool(config.loss.get("offline_on_support", False))
  joint_template = config.loss.get("joint_template", "mean")
  if joint_template not in config_lib.JOINT_TEMPLATES:
    raise ValueError(f"loss.joint_template={joint_template!r}; allowed: "
                     f"{config_lib.JOINT_TEMPLATES}")

  def loss_fn(params, batch_stats, batch, rng, train_flags):
    del rng
    train = bool(dict(train_flags).get("train", True))
    bb_train = bool(dict(train_flags).get("backbone_train", train))
    variables = {"params": params, "batch_stats": batch_stats}
    mutable = ["batch_stats"] if train else False
    if mode == "pair":
      res = model.apply(variables, _images(batch["template"]), _images(batch["search"]),
                        train=train, backbone_train=bb_train, mutable=mutable)
      out, new_vars = res if train else (res, {"batch_stats": batch_stats})
      positive = ~jnp.asarray(batch["negative"])
      terms, metrics = offline_losses(config, out, batch["search_box"], positive)
    else:
      grid = config_lib.online_grid(config.model)
      support_labels = None
      if config.model.online.startswith("ONC"):
        support_labels = support_onc_labels(config, batch["support_box"], grid)
      centres = batch["support_box"][..., :2] + batch["support_box"][..., 2:] / 2.
      res = model.apply(variables, _images(batch["support_template"]),
                        _images(batch["support_search"]), centres,
                        _images(batch["query_search"]), train=train, backbone_train=bb_train,
                        support_labels=support_labels, mutable=mutable,
                        support_offline=on_support, template_from=joint_template,
                        method=duml_lib.DuML.forward_sequence)
      out, new_vars = res if train else (res, {"batch_stats": batch_stats})
      qbox = batch["query_box"]
      flat = lambda a: None if a is None else a.reshape((-1,) + a.shape[2:])
      score, box_map, boxes_gt = flat(out["score"]), flat(out["box"]), flat(qbox)
      if on_support:      # offline losses on every search crop: queries, then supports
        cat = lambda a, b: None if a is None else jnp.concatenate([a, flat(b)], axis=0)
        score, box_map = cat(score, out["support_score"]), cat(box_map, out["support_box"])
        boxes_gt = cat(boxes_gt, batch["support_box"])
      terms, metrics = offline_losses(config, {"score": score, "box": box_map}, boxes_gt,
                                      jnp.ones((boxes_gt.shape[0],), bool))
      terms["online"], per_iter = online_loss(config, out["online"], qbox)
      metrics["online_first_iter"] = per_iter[0]
      metrics["online_last_iter"] = per_iter[-1]
    total, weighted = losses.total_loss(terms, weights)
    metrics.update({f"loss_{k}": v for k, v in terms.items()})
    # Each term as it enters the total (weight x loss): the balance of Eq. 6 in the logs.
    metrics.update({f"weighted_{k}": v for k, v in weighted.items()})
    return total, (new_vars.get("batch_stats", {}), metrics)

  return loss_fn

"""Training objectives: which crops and anchors the offline losses see."""
import jax
import jax.numpy as jnp
import numpy as np

from configs import duml as duml_config
from duml_jax.models import duml
from duml_jax.training import objectives


def _batch(cfg, b=1, s=2, q=1):
  """Random crops; the support targets sit elsewhere than the query's (order matters)."""
  k = jax.random.split(jax.random.PRNGKey(3), 3)
  u8 = lambda key, shape: jax.random.randint(key, shape, 0, 256).astype(jnp.uint8)
  zs, xs = cfg.exemplar_size, cfg.search_size
  qbox = jnp.array([xs / 2. - 16., xs / 2. - 16., 32., 32.])
  sbox = jnp.array([[xs / 2. - 4., xs / 2. - 30., 24., 44.], [xs / 2. - 40., xs / 2., 40., 24.]])
  return {"support_template": u8(k[0], (b, s, zs, zs, 3)),
          "support_search": u8(k[1], (b, s, xs, xs, 3)),
          "support_box": jnp.broadcast_to(sbox[:s], (b, s, 4)),
          "query_search": u8(k[2], (b, q, xs, xs, 3)),
          "query_box": jnp.broadcast_to(qbox, (b, q, 4)),
          "negative": jnp.zeros((b,), bool)}


def test_offline_losses_on_support_crops_use_their_own_boxes():
  config = duml_config.get_config("tiny").unlock()
  config.loss.offline_on_support = False            # tiny turns it on: test both explicitly
  model = duml.build_model(config.model)
  batch = _batch(config.model)
  variables = jax.jit(lambda k: duml.init_variables(
      model, k, config.model.exemplar_size, config.model.search_size))(jax.random.PRNGKey(0))
  on = config.copy_and_resolve_references()
  on.loss.offline_on_support = True
  run = lambda c: jax.jit(lambda v, bt: objectives.make_loss_fn(model, c)(
      v["params"], v.get("batch_stats", {}), bt, None, {"train": False}))(variables, batch)
  (_, (_, m_off)), (_, (_, m_on)) = run(config), run(on)
  # By hand: the heads on queries then supports, each crop with its own box.
  out = jax.jit(lambda v, bt: model.apply(
      v, bt["support_template"].astype(jnp.float32), bt["support_search"].astype(jnp.float32),
      bt["support_box"][..., :2] + bt["support_box"][..., 2:] / 2.,
      bt["query_search"].astype(jnp.float32), support_offline=True,
      method=duml.DuML.forward_sequence))(variables, batch)
  flat = lambda a: a.reshape((-1,) + a.shape[2:])
  cat = lambda a, b: jnp.concatenate([flat(a), flat(b)])
  boxes = cat(batch["query_box"], batch["support_box"])
  terms, metrics = objectives.offline_losses(
      config, {"score": cat(out["score"], out["support_score"]),
               "box": cat(out["box"], out["support_box"])}, boxes, jnp.ones((3,), bool))
  for k in ("box", "iou", "offline"):
    np.testing.assert_allclose(m_on[f"loss_{k}"], terms[k], rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(m_on["num_pos"], metrics["num_pos"], rtol=1e-6)
  q_terms, _ = objectives.offline_losses(
      config, {"score": flat(out["score"]), "box": flat(out["box"])}, flat(batch["query_box"]),
      jnp.ones((1,), bool))
  np.testing.assert_allclose(m_off["loss_box"], q_terms["box"], rtol=1e-4, atol=1e-6)
  assert abs(float(m_on["loss_box"]) - float(m_off["loss_box"])) > 1e-4
  np.testing.assert_allclose(m_on["loss_online"], m_off["loss_online"], rtol=1e-6)


def test_box_assigner_picks_the_box_losses_positives():
  import pytest
  from duml_jax import config_lib
  from duml_jax import labels
  config = duml_config.get_config("tiny").unlock()
  config.loss.box_assigner = ""                     # the paper's default (tiny sets its own)
  m = config.model
  a = config_lib.box_anchors(m)
  anchors = objectives.offline_anchors(m, a)
  s = anchors.shape[0]
  box = jnp.array([[40.3, 47.1, 37., 29.]])
  out = {"score": jnp.zeros((1, s, s, a)), "box": jnp.zeros((1, s, s, a, 5))}
  count = lambda lbl: float(jnp.sum(lbl == 1))
  atss = count(labels.atss_max_iou(anchors, box[0], topk=config.loss.atss_topk_5s))
  iou = count(labels.iou_threshold_labels(anchors, box[0]))
  assert atss != iou
  _, metrics = objectives.offline_losses(config, out, box, jnp.ones((1,), bool))
  assert float(metrics["num_pos"]) == atss            # "": the OFC assigner's positives
  config.loss.box_assigner = "iou"
  _, metrics = objectives.offline_losses(config, out, box, jnp.ones((1,), bool))
  assert float(metrics["num_pos"]) == iou
  config.loss.box_assigner = "centre_radius"
  _, metrics = objectives.offline_losses(config, out, box, jnp.ones((1,), bool))
  assert float(metrics["num_pos"]) == count(labels.centre_radius_labels(
      anchors, box[0], radius=config.loss.box_radius))
  config.loss.box_assigner = "atss"
  with pytest.raises(ValueError, match="loss.box_assigner"):
    config_lib.validate(config)


def test_iterate_weights_by_hand():
  # T = 3: phi0 1, the two middle iterates 4 / 2 each, phi3 1; sum 6.
  np.testing.assert_allclose(objectives._iterate_weights(3), np.array([1, 2, 2, 1]) / 6.)
  np.testing.assert_allclose(objectives._iterate_weights(3, (1., 4., 1.), normalise=False),
                             [1, 2, 2, 1])
  np.testing.assert_allclose(objectives._iterate_weights(1, (0., 4., 1.), normalise=False),
                             [0, 1])
  config = duml_config.get_config("tiny").unlock()
  config.loss.iterate_weights = (0., 0., 1.)         # final iterate only
  np.testing.assert_allclose(objectives.iterate_weights(config, 2), [0, 0, 1])


def test_online_loss_keys_reach_the_loss():
  """`loss.online_loss`, `online_reduction`, `iterate_weights` against a hand computation."""
  from duml_jax import config_lib
  from duml_jax import labels
  config = duml_config.get_config("tiny").unlock()
  m = config.model
  s = config_lib.score_size(m)
  box = jnp.array([[40.3, 47.1, 37., 29.]])                      # (Q=1, 4), B = 1
  first = m.stride * (config_lib.template_cells(m) // 2) + 0.5
  y = np.asarray(labels.onr_label(box[0], s, m.stride, first, m.online_cfg.label_sigma))
  y = y.reshape(s, s)
  it0 = np.full((s, s), -0.5, np.float32)                        # phi0: negative everywhere
  it1 = (y + 0.1).astype(np.float32)                             # phi1: near the label
  scores = jnp.asarray(np.stack([it0, it1])[None, :, None, :, :, None])   # (1,2,1,S,S,1)
  bg = y < config.loss.hinge_threshold
  hinge = lambda p: np.mean(np.square(np.where(bg, np.maximum(p, 0.), p) - np.where(bg, 0., y)))
  l2 = lambda p: np.mean(np.square(p - y))
  cases = [  # (online_loss, online_reduction, iterate weights, normalise, expected)
      ("hinge", "mean", (1., 4., 1.), True, (hinge(it0) + hinge(it1)) / 2),
      ("hinge", "mean", (1., 4., 1.), False, hinge(it0) + hinge(it1)),
      ("hinge", "mean", (3., 4., 1.), False, 3 * hinge(it0) + hinge(it1)),
      ("l2", "mean", (1., 4., 1.), True, (l2(it0) + l2(it1)) / 2),
      ("hinge", "sum_cells", (1., 4., 1.), True, s * s * (hinge(it0) + hinge(it1)) / 2),
  ]
  for kind, reduction, weights, normalise, expected in cases:
    config.loss.online_loss, config.loss.online_reduction = kind, reduction
    config.loss.iterate_weights, config.loss.normalise_iterate_weights = weights, normalise
    total, per_iter = objectives.online_loss(config, scores, box[None])
    np.testing.assert_allclose(float(total), expected, rtol=1e-5, err_msg=str((kind, reduction)))
  assert l2(it0) > hinge(it0) + 0.1                              # the cases do differ


def test_atss_min_l2_topk_key_picks_the_candidates():
  from duml_jax import config_lib
  from duml_jax import labels
  config = duml_config.get_config("tiny").unlock()
  config.loss.ofc_assigner, config.loss.box_assigner = "atss_min_l2", ""
  m = config.model
  a = config_lib.box_anchors(m)
  anchors = objectives.offline_anchors(m, a)
  s = anchors.shape[0]
  box = jnp.array([[40.3, 47.1, 37., 29.]])
  out = {"score": jnp.zeros((1, s, s, a)), "box": jnp.zeros((1, s, s, a, 5))}
  counts = {}
  for k in (3, 9):
    config.loss.atss_min_l2_topk = k
    _, metrics = objectives.offline_losses(config, out, box, jnp.ones((1,), bool))
    counts[k] = float(metrics["num_pos"])
    assert counts[k] == float(jnp.sum(labels.atss_min_l2(anchors, box[0], topk=k) == 1))
  assert counts[3] != counts[9]


def test_loss_fn_logs_weighted_terms_and_takes_the_joint_template_key():
  config = duml_config.get_config("tiny,loss=eq6").unlock()
  model = duml.build_model(config.model)
  batch = _batch(config.model)
  variables = jax.jit(lambda k: duml.init_variables(
      model, k, config.model.exemplar_size, config.model.search_size))(jax.random.PRNGKey(0))
  run = lambda c: jax.jit(lambda v, bt: objectives.make_loss_fn(model, c)(
      v["params"], v.get("batch_stats", {}), bt, None, {"train": False}))(variables, batch)
  total, (_, m) = run(config)
  weights = {"online": 10., "offline": 1., "box": 1.2, "iou": 1.2}    # the eq6 reading
  for k, w in weights.items():
    np.testing.assert_allclose(m[f"weighted_{k}"], w * m[f"loss_{k}"], rtol=1e-6)
  np.testing.assert_allclose(total, sum(m[f"weighted_{k}"] for k in weights), rtol=1e-5)

  # "first": the first support frame's template, i.e. "mean" over a support set whose
  # template crops are all the first one's.
  first = config.copy_and_resolve_references()
  first.loss.joint_template = "first"
  _, (_, m_first) = run(first)
  same = dict(batch, support_template=jnp.repeat(batch["support_template"][:, :1], 2, axis=1))
  _, (_, m_same) = jax.jit(lambda v, bt: objectives.make_loss_fn(model, config)(
      v["params"], v.get("batch_stats", {}), bt, None, {"train": False}))(variables, same)
  for k in ("offline", "online", "box"):
    np.testing.assert_allclose(m_first[f"loss_{k}"], m_same[f"loss_{k}"], rtol=1e-5)
  assert abs(float(m_first["loss_offline"]) - float(m["loss_offline"])) > 1e-6
  first.loss.joint_template = "last"
  import pytest
  with pytest.raises(ValueError, match="loss.joint_template"):
    objectives.make_loss_fn(model, first)

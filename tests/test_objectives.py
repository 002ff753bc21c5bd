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

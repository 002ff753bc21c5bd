"""backbone=resnet50_dilated (pysot's modified ResNet-50, Appendix B): config, geometry,
the 25x25 maps of every branch, a traced training step and tracking step."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import duml as duml_config
from duml_jax import config_lib
from duml_jax.models import duml
from duml_jax.models import online
from duml_jax.tracking import tracker
from duml_jax.training import objectives


@functools.lru_cache(maxsize=None)
def _paper_dilated():
  c = duml_config.get_config("paper,backbone=resnet50_dilated")
  model = duml.build_model(c.model)
  abstract = jax.eval_shape(lambda: duml.init_variables(model, jax.random.PRNGKey(0)))
  return c, model, abstract


def test_config_geometry_of_the_dilated_backbone():
  c, model, _ = _paper_dilated()
  m = c.model
  assert (m.backbone, m.template_cells) == ("resnet50_dilated", 7)
  assert config_lib.online_grid(m) == 31 and config_lib.online_grid(m, 127) == 15
  assert config_lib.score_size(m) == 25 and config_lib.feature_offset(m) == 7
  assert config_lib.score_size(m, 319) == 33
  assert model.online_window(31) == (3, 25) and model.feature_offset == 7
  # The interpolated paper model: [4:29] of 32, cells at 8 j.
  p = duml.build_model(duml_config.get_config("paper").model)
  assert p.online_window(32) == (4, 25) and p.feature_offset == 0
  # Online cell 3 of the 31 grid sits at crop pixel 8 * 3 + 7 = 31 = 127 - 96: offline cell 0.
  np.testing.assert_allclose(online.box_centre_to_cell(jnp.array([31.5, 127.5]), 8, 7.),
                             [3., 15.])
  # The online window's anchors sit on the offline anchors exactly.
  win = objectives.online_anchors(m, 1, 25)
  off = objectives.offline_anchors(m, 1)
  np.testing.assert_allclose(win[..., :2], off[..., :2])


def test_dilated_backbone_needs_the_7_cell_template():
  c = duml_config.get_config("paper").unlock()
  c.model.backbone = "resnet50_dilated"       # like --config.model.backbone=... alone
  with pytest.raises(ValueError, match="model.template_cells=8 must be odd.*template_cells=7"):
    config_lib.validate(c)


def test_every_branch_gives_25x25_maps():
  c, model, abstract = _paper_dilated()
  z, x = jnp.zeros((2, 127, 127, 3)), jnp.zeros((2, 255, 255, 3))
  out = jax.eval_shape(lambda v: model.apply(v, z, x), abstract)
  assert out["score"].shape == (2, 25, 25, 5)
  assert out["box"].shape == (2, 25, 25, 5, 5)
  assert out["online"].shape == (2, 25, 25, 1)
  zf = jax.eval_shape(lambda v: model.apply(v, z, method=duml.DuML.template), abstract)
  assert [f.shape[1] for f in zf["offline"]] == [7, 7, 7] and zf["online"].shape[1] == 15
  seq = jax.eval_shape(lambda v: model.apply(
      v, jnp.zeros((1, 2, 127, 127, 3)), jnp.zeros((1, 2, 255, 255, 3)),
      jnp.full((1, 2, 2), 127.5), jnp.zeros((1, 1, 255, 255, 3)),
      method=duml.DuML.forward_sequence), abstract)
  assert seq["online"].shape == (1, c.model.online_cfg.train_iters + 1, 1, 25, 25, 1)


def test_training_losses_trace_with_the_dilated_backbone():
  # Sequence mode (both branches): the losses' labels fit the maps; pair mode: the gradient
  # reaches the dilated blocks. Traced only (eval_shape): a ResNet-50 step is slow on CPU.
  c, model, abstract = _paper_dilated()
  b, s, q = 1, 2, 1
  batch = {"support_template": jnp.zeros((b, s, 127, 127, 3), jnp.uint8),
           "support_search": jnp.zeros((b, s, 255, 255, 3), jnp.uint8),
           "support_box": jnp.tile(jnp.array([100., 100., 50., 60.]), (b, s, 1)),
           "query_search": jnp.zeros((b, q, 255, 255, 3), jnp.uint8),
           "query_box": jnp.tile(jnp.array([110., 96., 40., 64.]), (b, q, 1)),
           "negative": jnp.zeros((b,), bool)}
  loss, (_, metrics) = jax.eval_shape(lambda v: objectives.make_loss_fn(model, c)(
      v["params"], v["batch_stats"], batch, None, {"train": False}), abstract)
  assert loss.shape == () and "loss_online" in metrics
  pc = duml_config.get_config("paper,backbone=resnet50_dilated,online=none")
  pm = duml.build_model(pc.model)
  pabs = jax.eval_shape(lambda: duml.init_variables(pm, jax.random.PRNGKey(0)))
  pair = {"template": jnp.zeros((b, 127, 127, 3), jnp.uint8),
          "search": jnp.zeros((b, 255, 255, 3), jnp.uint8),
          "search_box": jnp.array([[110., 96., 40., 64.]]), "negative": jnp.zeros((b,), bool)}
  loss_fn = objectives.make_loss_fn(pm, pc)
  grads = jax.eval_shape(lambda v: jax.grad(lambda p: loss_fn(
      p, v["batch_stats"], pair, None, {"train": True})[0])(v["params"]), pabs)
  assert grads["backbone"]["layer4_2"]["conv2"]["kernel"].shape == (3, 3, 512, 512)


def test_tracking_step_traces_with_the_dilated_backbone():
  c, model, abstract = _paper_dilated()
  tcfg = tracker.tracking_params(c)
  frame = jnp.zeros((240, 320, 3), jnp.uint8)
  state = jax.eval_shape(lambda v: tracker.init(model, v, tcfg, frame,
                                                jnp.array([100., 80., 40., 50.]),
                                                jnp.array([320., 240.])), abstract)
  assert state.memory.feats.shape[1:3] == (31, 31)
  _, out = jax.eval_shape(lambda v, st: tracker.step(model, v, tcfg, st, frame), abstract, state)
  assert out["box"].shape == (4,)

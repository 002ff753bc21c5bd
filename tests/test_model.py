"""The DuML network: every form builds with the documented shapes; gradients through it."""
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import duml as duml_config
from duml_jax import config_lib
from duml_jax.models import duml

OFFLINE = config_lib.OFFLINE_FORMS
ONLINE = config_lib.ONLINE_FORMS
PAIRS = [(a, b) for a, b in itertools.product(OFFLINE, ONLINE) if not a == b == "none"]


def _tiny(off, on, **kw):
  return duml.DuML(backbone_name="tiny", neck_channels=8, offline=off, online=on,
                   online_spec=duml.OnlineSpec(feature_dim=8, train_iters=2), **kw)


def _a(form):
  return config_lib.num_anchors(form)


@pytest.mark.parametrize("off,on", PAIRS)
def test_every_form_and_pairing_has_documented_shapes(off, on):
  """All 6 uni-modal forms and 9 pairings (+ 0 others) on 127/255 inputs (shapes only)."""
  m = _tiny(off, on)
  z = jax.ShapeDtypeStruct((2, 127, 127, 3), jnp.float32)
  x = jax.ShapeDtypeStruct((2, 255, 255, 3), jnp.float32)
  v = jax.eval_shape(lambda: duml.init_variables(m, jax.random.PRNGKey(0)))
  out = jax.eval_shape(lambda v, z, x: m.apply(v, z, x), v, z, x)
  a_box = max(_a(off), _a(on))
  assert out["box"].shape == (2, 25, 25, a_box, 5)
  if off == "none":
    assert out["score"] is None
  else:
    assert out["score"].shape == (2, 25, 25, _a(off))
  if on == "none":
    assert "online" not in out
  else:
    assert out["online"].shape == (2, 25, 25, _a(on))
    assert v["params"]["filter_init"] is not None


def test_resnet50_paper_model_shapes_and_parameter_count():
  cfg = duml_config.get_config("paper")
  m = duml.build_model(cfg.model)
  v = jax.eval_shape(lambda: duml.init_variables(m, jax.random.PRNGKey(0)))
  z = jax.ShapeDtypeStruct((1, 127, 127, 3), jnp.float32)
  x = jax.ShapeDtypeStruct((1, 255, 255, 3), jnp.float32)
  zf = jax.eval_shape(lambda v, z: m.apply(v, z, method=duml.DuML.template), v, z)
  xf = jax.eval_shape(lambda v, x: m.apply(v, x, method=duml.DuML.search), v, x)
  assert [f.shape for f in zf["offline"]] == [(1, 8, 8, 256)] * 3
  assert zf["online"].shape == (1, 16, 16, 256)
  assert [f.shape for f in xf["offline"]] == [(1, 32, 32, 256)] * 3
  assert xf["online"].shape == (1, 32, 32, 256)
  out = jax.eval_shape(lambda v, z, x: m.apply(v, z, x), v, z, x)
  assert out["score"].shape == (1, 25, 25, 5)
  assert out["box"].shape == (1, 25, 25, 5, 5)
  assert out["online"].shape == (1, 25, 25, 1)
  n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(v["params"]))
  from duml_jax.models import summary
  assert summary.count_params(v["params"]) == n
  # The ResNet-50 backbone up to layer4 (23,508,032) is most of it.
  nb = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(v["params"]["backbone"]))
  assert nb == 23_508_032
  assert n > nb


@pytest.mark.parametrize("cells", [4, 6, 8])
def test_template_cells_set_the_score_grid_and_keep_both_branches_aligned(cells):
  """model.template_cells T: a 63/127 crop pair (8 / 16 feature cells) gives 16 - T + 1 score
  cells; the online window starts at cell T / 2 and sits within one pixel of the offline
  anchors (the paper geometry, T = 8 of 16, has the same one-pixel offset)."""
  m = _tiny("OFC-5s", "ONR", template_cells=cells)
  v = jax.eval_shape(lambda: duml.init_variables(m, jax.random.PRNGKey(0), 63, 127))
  out = jax.eval_shape(lambda v, z, x: m.apply(v, z, x), v,
                       jax.ShapeDtypeStruct((1, 63, 63, 3), jnp.float32),
                       jax.ShapeDtypeStruct((1, 127, 127, 3), jnp.float32))
  s = 16 - cells + 1
  assert out["score"].shape == (1, s, s, 5) and out["online"].shape == (1, s, s, 1)
  c = duml_config.get_config("tiny")
  c.model.template_cells = cells
  assert config_lib.score_size(c.model) == s
  from duml_jax.training import objectives   # pylint: disable=g-import-not-at-top
  offline = np.asarray(objectives.offline_anchors(c.model, 1))[0, :, 0, 0]
  online = np.asarray(objectives.online_anchors(c.model, 1, s))[0, :, 0, 0]
  np.testing.assert_allclose(online, 8. * (np.arange(s) + m.online_crop) + 0.5)
  assert np.max(np.abs(online - offline)) <= 1.0 and offline[s // 2] == 63.5


def test_search_319_gives_33x33_maps():
  m = _tiny("OFC-5s", "ONR")
  v = jax.eval_shape(lambda: duml.init_variables(m, jax.random.PRNGKey(0)))
  out = jax.eval_shape(lambda v, z, x: m.apply(v, z, x), v,
                       jax.ShapeDtypeStruct((1, 127, 127, 3), jnp.float32),
                       jax.ShapeDtypeStruct((1, 319, 319, 3), jnp.float32))
  assert out["score"].shape == (1, 33, 33, 5)
  assert out["online"].shape == (1, 33, 33, 1)


def test_forward_sequence_gradients_are_finite_for_all_params():
  m = _tiny("OFC-5s", "ONR")
  v = duml.init_variables(m, jax.random.PRNGKey(0))
  k = jax.random.split(jax.random.PRNGKey(1), 3)
  b, s, q = 1, 3, 2
  sz = 255. * jax.random.uniform(k[0], (b, s, 127, 127, 3))
  sx = 255. * jax.random.uniform(k[1], (b, s, 255, 255, 3))
  qx = 255. * jax.random.uniform(k[2], (b, q, 255, 255, 3))
  centres = jnp.full((b, s, 2), 127.5)

  def loss(params):
    out = m.apply({"params": params, "batch_stats": v["batch_stats"]}, sz, sx, centres, qx,
                  method=duml.DuML.forward_sequence)
    return (jnp.mean(out["online"] ** 2) + jnp.mean(jax.nn.sigmoid(out["score"]))
            + jnp.mean(out["box"] ** 2))

  grads = jax.jit(jax.grad(loss))(v["params"])
  leaves = jax.tree_util.tree_leaves_with_path(grads)
  for path, g in leaves:
    assert np.all(np.isfinite(g)), jax.tree_util.keystr(path)
  # The residual functions and the step length are trained through the inner loop.
  res = grads["residual_fns"]
  for name in ("label_weights", "mask_weights", "spatial_weights", "log_step_length",
               "filter_reg"):
    assert np.any(res[name] != 0), name
  assert np.any(grads["online_features"]["fusion_weights"] != 0)


def test_forward_sequence_online_iterates_and_onc_labels():
  m = _tiny("none", "ONC-5s")
  v = duml.init_variables(m, jax.random.PRNGKey(0))
  b, s, q = 2, 3, 2
  labels = -jnp.ones((b, s, 32, 32, 5)).at[:, :, 15, 15, 2].set(1).at[:, :, :3].set(0)
  out = m.apply(v, jnp.ones((b, s, 127, 127, 3)), jnp.ones((b, s, 255, 255, 3)),
                jnp.full((b, s, 2), 127.5), jnp.ones((b, q, 255, 255, 3)),
                support_labels=labels, num_iter=3, method=duml.DuML.forward_sequence)
  assert out["online"].shape == (b, 4, q, 25, 25, 5)
  assert out["score"] is None and out["box"].shape == (b, q, 25, 25, 5, 5)


def test_fuse_scores_broadcasts_over_anchors():
  r = jnp.ones((2, 25, 25, 1))
  a = jnp.zeros((2, 25, 25, 5))
  f = duml.fuse_scores(r, a, 0.8)
  assert f.shape == (2, 25, 25, 5)
  np.testing.assert_allclose(f, 0.8)
  assert duml.fuse_scores(None, a, 0.8) is a
  assert duml.fuse_scores(r, None, 0.8) is r


def test_template_crop_is_centred():
  from duml_jax.models import neck
  assert neck.template_crop(16, 8) == 4
  feats = [jnp.arange(16.)[None, :, None, None] * jnp.ones((1, 16, 16, 1))]
  c = neck.crop_template(feats, 8)[0]
  np.testing.assert_allclose(c[0, :, 0, 0], np.arange(4, 12))


def test_xcorr_depthwise_by_hand():
  from duml_jax.models import heads
  x = jnp.arange(16.).reshape(1, 4, 4, 1)
  k = jnp.array([[1., 0.], [0., -1.]]).reshape(1, 2, 2, 1)
  out = heads.xcorr_depthwise(x, k)
  # out[i,j] = x[i,j] - x[i+1,j+1] = -5 everywhere (no kernel flip)
  np.testing.assert_allclose(out, -5. * jnp.ones((1, 3, 3, 1)))


def test_forward_sequence_support_offline_heads_match_per_crop_heads():
  # loss.offline_on_support: the offline heads on each support crop, with the support set's
  # averaged template, exactly as on a query crop; without the flag nothing changes.
  m = _tiny("OFC-5s", "ONR")
  v = duml.init_variables(m, jax.random.PRNGKey(0))
  k = jax.random.split(jax.random.PRNGKey(2), 3)
  b, s, q = 1, 2, 1
  sz = 255. * jax.random.uniform(k[0], (b, s, 127, 127, 3))
  sx = 255. * jax.random.uniform(k[1], (b, s, 159, 159, 3))
  qx = 255. * jax.random.uniform(k[2], (b, q, 159, 159, 3))
  centres = jnp.full((b, s, 2), 79.5)
  fwd = lambda **kw: m.apply(v, sz, sx, centres, qx, method=duml.DuML.forward_sequence, **kw)
  plain, both = fwd(), fwd(support_offline=True)
  assert "support_box" not in plain
  np.testing.assert_array_equal(plain["box"], both["box"])
  np.testing.assert_array_equal(plain["online"], both["online"])
  assert both["support_score"].shape == (b, s, 13, 13, 5)
  assert both["support_box"].shape == (b, s, 13, 13, 5, 5)
  zf = m.apply(v, sz.reshape((-1, 127, 127, 3)), method=duml.DuML.template)
  z_mean = [f.reshape((b, s) + f.shape[1:]).mean(1) for f in zf["offline"]]
  xf = m.apply(v, sx[:, 1], method=duml.DuML.search)
  heads = m.apply(v, {"offline": z_mean}, xf, method=duml.DuML.offline_heads)
  np.testing.assert_allclose(both["support_box"][:, 1], heads["box"], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(both["support_score"][:, 1], heads["score"], rtol=1e-5, atol=1e-5)


def test_group_norm_model_has_no_running_statistics_and_one_mode():
  """model.norm='group': every norm layer is a GroupNorm (no 'batch_stats'), so the
  training-mode forward equals the inference-mode one (BatchNorm's differ)."""
  z = 255. * jax.random.uniform(jax.random.PRNGKey(1), (2, 127, 127, 3))
  x = 255. * jax.random.uniform(jax.random.PRNGKey(2), (2, 255, 255, 3))
  outs = {}
  for norm in ("batch", "group"):
    m = _tiny("OFC-5s", "ONR", norm=norm)
    v = duml.init_variables(m, jax.random.PRNGKey(0))
    assert ("batch_stats" in v) == (norm == "batch")
    ev = m.apply(v, z, x, train=False)
    tr, _ = m.apply(v, z, x, train=True, mutable=["batch_stats"])
    outs[norm] = ev, tr
    leaves = jax.tree_util.tree_leaves_with_path(v["params"])
    names = {jax.tree_util.keystr(p) for p, _ in leaves}
    assert any("adjust0_bn" in n for n in names) and any("head_bn" in n for n in names)
  ev, tr = outs["group"]
  for k in ("score", "box"):
    np.testing.assert_allclose(ev[k], tr[k], rtol=1e-5, atol=1e-5)
  ev, tr = outs["batch"]
  assert not np.allclose(ev["box"], tr["box"], atol=1e-3)


def test_group_norm_equals_flax_group_norm():
  """layers.GroupNorm is flax's nn.GroupNorm (same parameters, values and gradients)
  with random scale / bias, in float32 and bfloat16, and on 5D inputs."""
  from duml_jax.models import layers  # pylint: disable=g-import-not-at-top
  ours, ref = layers.GroupNorm(num_groups=8), nn.GroupNorm(num_groups=8, epsilon=1e-5)

  @jax.jit
  def both(v, x, w):
    loss = lambda mod: lambda v, x: jnp.sum(jnp.sin(mod.apply(v, x)) * w)
    return [(mod.apply(v, x), mod.apply(v, x.astype(jnp.bfloat16)),
             jax.grad(loss(mod), argnums=(0, 1))(v, x)) for mod in (ours, ref)]

  shape = (3, 6, 7, 32)
  x = jax.random.normal(jax.random.PRNGKey(0), shape) * 2.5 + 0.7
  assert (jax.tree_util.tree_structure(ours.init(jax.random.PRNGKey(1), x))
          == jax.tree_util.tree_structure(ref.init(jax.random.PRNGKey(1), x)))
  v = {"params": {"scale": 1. + jax.random.normal(jax.random.PRNGKey(2), (32,)),
                  "bias": jax.random.normal(jax.random.PRNGKey(3), (32,))}}
  (y, yb, g), (y_ref, yb_ref, g_ref) = both(v, x, jax.random.normal(jax.random.PRNGKey(4),
                                                                      shape))
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  assert yb.dtype == yb_ref.dtype
  np.testing.assert_allclose(yb, yb_ref, rtol=2e-2, atol=2e-2)
  for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_ref)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  x5 = x.reshape((3, 2, 3, 7, 32))                     # all non-batch axes are positions
  v5 = {"params": {k: p[:16] for k, p in v["params"].items()}}
  np.testing.assert_allclose(ours.apply(v5, x5[..., :16]), ref.apply(v5, x5[..., :16]),
                             rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="12 channels .* 8 groups"):
    layers.GroupNorm(num_groups=8).init(jax.random.PRNGKey(0), jnp.ones((1, 2, 2, 12)))


def test_group_norm_normalises_over_channel_groups():
  """The GroupNorm layer by hand: mean 0 / variance 1 over each group of C / 8 channels and
  all positions of one example (at init: scale 1, bias 0)."""
  from duml_jax.models import layers  # pylint: disable=g-import-not-at-top
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 5, 16)) * 3. + 1.
  layer = layers.norm_layer("group", train=False)
  v = layer.init(jax.random.PRNGKey(1), x)
  y = np.asarray(layer.apply(v, x))
  g = np.asarray(x).reshape(2, 5, 5, layers.GROUPS, 16 // layers.GROUPS)
  mean = g.mean(axis=(1, 2, 4), keepdims=True)
  var = g.var(axis=(1, 2, 4), keepdims=True)
  np.testing.assert_allclose(y, ((g - mean) / np.sqrt(var + 1e-5)).reshape(x.shape),
                             rtol=1e-4, atol=1e-4)
  with pytest.raises(ValueError, match="model.norm='layer'"):
    layers.norm_layer("layer", train=False)

"""Mixed precision (`model.dtype`): bfloat16 compute, float32 parameters and outputs.

One set of float32 variables of the tiny model serves both compute dtypes
(the parameter pytree does not depend on `dtype`).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import duml as duml_config
from duml_jax import config_lib
from duml_jax.models import duml
from duml_jax.tracking import tracker
from duml_jax.training import objectives

# Relative L2 error allowed between the bfloat16 and float32 forwards in
# inference mode (BatchNorm on running statistics, as the tracker runs it).
# bfloat16 keeps 8 significant bits: rounding the inputs and weights of one
# conv layer and its output costs ~0.2% (rms), and the tiny model stacks ~15
# conv / BatchNorm layers (backbone, neck, heads) before the score maps, so
# independent errors reach ~sqrt(15) x 0.2% ~ 0.8% (measured: 0.8% offline
# score, 0.8% box, 1.3% online score). 3% leaves room for other seeds and
# still fails if a stage ran in a lower precision (float16 overflow, an
# integer cast) or a branch were fed different inputs. (In training mode
# at random init, batch-statistics BatchNorm amplifies the perturbation layer
# by layer: 3-4% there, which is why this check is in inference mode.)
REL_TOL = 0.03


def _rel_err(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _images(cfg, b, seed):
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  z = jax.random.uniform(k1, (b, cfg.exemplar_size, cfg.exemplar_size, 3)) * 255.
  x = jax.random.uniform(k2, (b, cfg.search_size, cfg.search_size, 3)) * 255.
  return z, x


@pytest.fixture(scope="module")
def setup():
  """Configs and models per dtype, float32 variables, and a float32 forward of them.

  The variables and the float32 (inference-mode) forward come from one
  compiled `init_with_output`: one compilation fewer in this file.
  """
  configs = {d: duml_config.get_config(f"tiny,dtype={d}") for d in config_lib.DTYPES}
  models = {d: duml.build_model(c.model) for d, c in configs.items()}
  images = _images(configs["float32"].model, 2, seed=1)
  out32, variables = jax.jit(lambda k, z, x: models["float32"].init_with_output(k, z, x))(
      jax.random.PRNGKey(0), *images)
  return configs, models, variables, images, out32


def test_build_model_passes_the_compute_dtype(setup):
  models = setup[1]
  assert models["float32"].dtype == jnp.float32
  assert models["bfloat16"].dtype == jnp.bfloat16


def test_bf16_forward_is_float32_and_close_to_float32_forward(setup):
  _, models, variables, (z, x), out32 = setup
  out16 = jax.jit(lambda v, z, x: models["bfloat16"].apply(v, z, x))(variables, z, x)
  assert set(out16) == set(out32) == {"score", "box", "online"}
  for k in out32:
    assert out16[k].dtype == jnp.float32, k
    assert out16[k].shape == out32[k].shape, k
    assert np.all(np.isfinite(out16[k])), k
    err = _rel_err(out16[k], out32[k])
    assert err < REL_TOL, (k, err)
    assert err > 0., k     # the bfloat16 model did compute in bfloat16


def test_bf16_features_offline_in_bf16_online_branch_in_float32(setup):
  configs, models, variables = setup[:3]
  m, model = configs["bfloat16"].model, models["bfloat16"]
  z = jax.ShapeDtypeStruct((1, m.exemplar_size, m.exemplar_size, 3), jnp.float32)
  zf = jax.eval_shape(lambda v, z: model.apply(v, z, method=duml.DuML.template), variables, z)
  assert {f.dtype for f in zf["offline"]} == {jnp.dtype(jnp.bfloat16)}
  assert zf["online"].dtype == jnp.float32
  filt = jax.eval_shape(lambda v, f: model.apply(v, f, method=duml.DuML.initial_filter),
                        variables, zf["online"])
  assert filt.dtype == jnp.float32


def _sequence_batch(cfg, b=1, s=2, q=1, seed=3):
  """Random crops with the target centred, 32 px, as the pipeline lays them out."""
  k = jax.random.split(jax.random.PRNGKey(seed), 3)
  u8 = lambda key, shape: jax.random.randint(key, shape, 0, 256).astype(jnp.uint8)
  zs, xs = cfg.exemplar_size, cfg.search_size
  box = jnp.array([xs / 2. - 16., xs / 2. - 16., 32., 32.])
  return {"support_template": u8(k[0], (b, s, zs, zs, 3)),
          "support_search": u8(k[1], (b, s, xs, xs, 3)),
          "support_box": jnp.broadcast_to(box, (b, s, 4)),
          "query_search": u8(k[2], (b, q, xs, xs, 3)),
          "query_box": jnp.broadcast_to(box, (b, q, 4)),
          "negative": jnp.zeros((b,), bool)}


def test_bf16_training_loss_gradient_is_finite_and_float32(setup):
  configs, models, variables = setup[:3]
  config = configs["bfloat16"]
  assert objectives.training_mode(config.model) == "sequence"   # through the SD-GN loop
  loss_fn = objectives.make_loss_fn(models["bfloat16"], config)
  batch = _sequence_batch(config.model)
  grad_fn = jax.jit(jax.value_and_grad(
      lambda p, bs, batch: loss_fn(p, bs, batch, None, {"train": True}), has_aux=True))
  (loss, (new_bs, metrics)), grads = grad_fn(variables["params"], variables.get("batch_stats", {}),
                                             batch)
  assert loss.dtype == jnp.float32 and np.isfinite(loss)
  assert all(np.isfinite(v) for v in jax.tree.leaves(metrics))
  for tree in (variables["params"], grads, new_bs):
    assert {leaf.dtype for leaf in jax.tree.leaves(tree)} == {jnp.dtype(jnp.float32)}
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  # The gradient reaches the backbone through the bfloat16 convolutions, and
  # the step length through the (float32) SD-GN inner loop.
  assert any(np.any(g != 0) for g in jax.tree.leaves(grads["backbone"]))
  assert grads["residual_fns"]["log_step_length"] != 0


def test_bf16_tracker_state_and_outputs_are_float32(setup):
  configs, models, variables = setup[:3]
  config, model = configs["bfloat16"], models["bfloat16"]
  tcfg = tracker.tracking_params(config)
  frame = jax.ShapeDtypeStruct((120, 160, 3), jnp.uint8)
  box = jnp.array([60., 40., 32., 32.])
  size = jnp.array([160., 120.])
  state = jax.eval_shape(lambda v, f: tracker.init(model, v, tcfg, f, box, size),
                         variables, frame)
  assert state.filter.dtype == state.memory.feats.dtype == jnp.float32
  _, out = jax.eval_shape(lambda v, st, f: tracker.step(model, v, tcfg, st, f),
                          variables, state, frame)
  assert out["box"].dtype == out["score"].dtype == jnp.float32


@pytest.mark.parametrize("value", ["float16", "bf16", "int8"])
def test_unknown_dtype_is_rejected_naming_the_key(value):
  with pytest.raises(ValueError, match=r"model\.dtype"):
    duml_config.get_config(f"tiny,dtype={value}")
  c = duml_config.get_config("tiny")
  c.unlock()
  c.model.dtype = value
  with pytest.raises(ValueError, match=r"model\.dtype='" + value):
    config_lib.validate(c)

"""Optimiser and LR schedule: pysot recipe numbers worked out by hand (anchors.md 2.7)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from duml_jax.training import optim


def _cfg(**overrides):
  cfg = optim.default_optim_config()
  cfg.update(overrides)
  return cfg


def test_default_config_is_the_pysot_recipe():
  cfg = optim.default_optim_config()
  assert (cfg.base_lr, cfg.end_lr, cfg.warmup_start_lr) == (5e-3, 5e-4, 1e-3)
  assert (cfg.num_epochs, cfg.warmup_epochs, cfg.backbone_freeze_epochs) == (20, 5, 10)
  assert (cfg.momentum, cfg.weight_decay, cfg.grad_clip, cfg.backbone_lr_mult) == (
      0.9, 1e-4, 10.0, 0.1)
  assert tuple(cfg.backbone_train_layers) == ("layer2", "layer3", "layer4")


def test_pysot_schedule_at_key_steps():
  spe = 10
  lr = optim.make_schedule(optim.default_optim_config(), spe)
  mult = 5.0 ** (1 / 5)
  expected = {
      0: 1e-3,                    # warm-up start
      9: 1e-3,                    # constant within epoch 0
      10: 1e-3 * mult,            # epoch 1: x 5^(1/5)
      49: 1e-3 * mult ** 4,       # last warm-up epoch (pysot never reaches 5e-3 in warm-up)
      50: 5e-3,                   # decay start
      120: 5e-3 / math.sqrt(10),  # epoch 12 = halfway (7/14) in log space
      190: 5e-4,                  # last epoch
      199: 5e-4,
      500: 5e-4,                  # past the end: stays at end_lr
  }
  for step, value in expected.items():
    np.testing.assert_allclose(float(lr(step)), value, rtol=1e-5, err_msg=f"step {step}")
  # The decay epochs are exactly np.logspace(log10 5e-3, log10 5e-4, 15), as in pysot.
  got = np.array([float(lr(spe * e)) for e in range(5, 20)])
  np.testing.assert_allclose(got, np.logspace(math.log10(5e-3), math.log10(5e-4), 15), rtol=1e-5)


def test_linear_warmup_cosine_and_constant_schedules():
  lin = optim.make_schedule(_cfg(warmup_type="linear", lr_granularity="step"), 10)
  np.testing.assert_allclose(float(lin(0)), 1e-3, rtol=1e-6)
  np.testing.assert_allclose(float(lin(25)), 3e-3, rtol=1e-5)   # 1e-3 + 4e-3 * 2.5 / 5
  cos = optim.make_schedule(_cfg(schedule="cosine"), 10)
  np.testing.assert_allclose(float(cos(50)), 5e-3, rtol=1e-5)
  np.testing.assert_allclose(float(cos(120)), (5e-3 + 5e-4) / 2, rtol=1e-5)
  np.testing.assert_allclose(float(cos(190)), 5e-4, rtol=1e-5)
  const = optim.make_schedule(_cfg(schedule="constant", warmup_epochs=0), 10)
  assert float(const(0)) == pytest.approx(5e-3) and float(const(999)) == pytest.approx(5e-3)


def test_per_step_cosine_spans_the_whole_run():
  # Per step, the decay runs from the end of the warm-up (step 50) to the last step (200):
  # it must not hold the last epoch at end_lr as the per-epoch (pysot) form does.
  cos = optim.make_schedule(_cfg(schedule="cosine", warmup_type="linear",
                                 lr_granularity="step"), 10)
  np.testing.assert_allclose(float(cos(50)), 5e-3, rtol=1e-5)
  np.testing.assert_allclose(float(cos(125)), (5e-3 + 5e-4) / 2, rtol=1e-5)
  np.testing.assert_allclose(float(cos(200)), 5e-4, rtol=1e-5)
  np.testing.assert_allclose(float(cos(190)),
                             5e-4 + 0.5 * 4.5e-3 * (1 + math.cos(math.pi * 14 / 15)), rtol=1e-5)
  assert float(cos(190)) > 5e-4 * 1.05
  log = optim.make_schedule(_cfg(lr_granularity="step"), 10)     # pysot's log decay, per step
  np.testing.assert_allclose(float(log(125)), 5e-3 / math.sqrt(10), rtol=1e-5)
  np.testing.assert_allclose(float(log(200)), 5e-4, rtol=1e-5)


def test_bad_schedule_name_names_the_key():
  with pytest.raises(ValueError, match="'schedule'"):
    optim.make_schedule(_cfg(schedule="linear"), 10)


def _toy_params():
  one = jnp.ones((), jnp.float32)
  return {"backbone": {"conv1": {"kernel": one}, "bn1": {"scale": one},
                       "layer1": {"kernel": one}, "layer2_0": {"kernel": one},
                       "layer3": {"conv": {"kernel": one}}, "layer4": {"kernel": one}},
          "neck": {"kernel": one}, "head": {"kernel": one}}


def test_param_groups_from_paths():
  cfg = optim.default_optim_config()
  labels = optim.param_labels(_toy_params(), cfg)
  bb = labels["backbone"]
  assert bb["conv1"]["kernel"] == bb["bn1"]["scale"] == bb["layer1"]["kernel"] == "backbone_fixed"
  assert bb["layer2_0"]["kernel"] == bb["layer3"]["conv"]["kernel"] == "backbone_trainable"
  assert labels["neck"]["kernel"] == labels["head"]["kernel"] == "head"
  assert optim.param_group(("backbone", "layer20", "w"), cfg) == "backbone_fixed"


def test_missing_train_layer_is_an_error():
  with pytest.raises(ValueError, match="backbone_train_layers.*layer5"):
    optim.param_labels(_toy_params(), _cfg(backbone_train_layers=("layer2", "layer5")))


def _run(tx, params, grads, steps):
  """Applies `steps` updates with constant grads; returns the params after each update."""
  state = tx.init(params)
  update = jax.jit(tx.update)
  history = []
  for _ in range(steps):
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    history.append(jax.tree.map(float, params))
  return history


def test_backbone_frozen_then_trained_at_tenth_lr():
  cfg = _cfg(schedule="constant", warmup_epochs=0, base_lr=0.1, momentum=0.0, weight_decay=0.0,
             grad_clip=0.0, backbone_freeze_epochs=2)
  params = _toy_params()
  tx = optim.make_optimizer(cfg, params, steps_per_epoch=1)
  grads = jax.tree.map(jnp.ones_like, params)
  hist = _run(tx, params, grads, 4)
  for h in hist[:2]:  # steps 0 and 1: whole backbone frozen, head at base LR
    assert all(v == 1.0 for v in jax.tree.leaves(h["backbone"]))
  assert [h["head"]["kernel"] for h in hist] == pytest.approx([0.9, 0.8, 0.7, 0.6])
  # From step 2: layer2..4 move at 0.1 x 0.1; conv1/bn1/layer1 never move.
  assert [h["backbone"]["layer2_0"]["kernel"] for h in hist] == pytest.approx(
      [1.0, 1.0, 0.99, 0.98])
  assert hist[-1]["backbone"]["layer4"]["kernel"] == pytest.approx(0.98)
  assert hist[-1]["backbone"]["conv1"]["kernel"] == hist[-1]["backbone"]["layer1"]["kernel"] == 1.0
  assert optim.backbone_trainable(1, cfg, 1) is False and optim.backbone_trainable(2, cfg, 1)
  assert optim.trainable_backbone_layers(1, cfg, 1) == ()
  assert optim.trainable_backbone_layers(2, cfg, 1) == ("layer2", "layer3", "layer4")


def test_momentum_is_reset_at_unfreeze():
  cfg = _cfg(schedule="constant", warmup_epochs=0, base_lr=0.1, momentum=0.5, weight_decay=0.0,
             grad_clip=0.0, backbone_freeze_epochs=2)
  params = {"head": jnp.zeros(())}
  grads = {"head": jnp.ones(())}
  hist = [h["head"] for h in _run(optim.make_optimizer(cfg, params, 1), params, grads, 3)]
  # buffers: 1, 1.5, then reset at step 2 -> 1 again (pysot rebuilds its optimiser).
  np.testing.assert_allclose(np.diff([0.0] + hist), [-0.1, -0.15, -0.1], rtol=1e-6)
  cfg.reset_momentum_at_unfreeze = False
  hist = [h["head"] for h in _run(optim.make_optimizer(cfg, params, 1), params, grads, 3)]
  np.testing.assert_allclose(np.diff([0.0] + hist), [-0.1, -0.15, -0.175], rtol=1e-6)


def test_weight_decay_and_clipping_by_hand():
  cfg = _cfg(schedule="constant", warmup_epochs=0, base_lr=0.01, momentum=0.9, weight_decay=0.1,
             grad_clip=10.0, backbone_freeze_epochs=0)
  params = {"w": jnp.array(2.0)}
  hist = _run(optim.make_optimizer(cfg, params, 1), params, {"w": jnp.array(30.0)}, 2)
  # step 1: g = 30 clipped to 10; + 0.1 * 2 = 10.2; buf = 10.2; w = 2 - 0.01 * 10.2 = 1.898
  # step 2: g = 10 + 0.1 * 1.898 = 10.1898; buf = 0.9 * 10.2 + 10.1898 = 19.3698;
  #         w = 1.898 - 0.193698 = 1.704302
  assert [h["w"] for h in hist] == pytest.approx([1.898, 1.704302], rel=1e-6)


def test_clip_norm_ignores_frozen_backbone_gradients():
  cfg = _cfg(schedule="constant", warmup_epochs=0, base_lr=0.1, momentum=0.0, weight_decay=0.0,
             grad_clip=10.0, backbone_freeze_epochs=5, backbone_train_layers=("layer2",))
  params = {"backbone": {"layer2": jnp.array(0.0)}, "head": jnp.array(0.0)}
  grads = {"backbone": {"layer2": jnp.array(1000.0)}, "head": jnp.array(3.0)}
  hist = _run(optim.make_optimizer(cfg, params, 1), params, grads, 1)
  assert hist[0]["head"] == pytest.approx(-0.3)  # norm 3 < 10: unclipped
  assert hist[0]["backbone"]["layer2"] == 0.0


def test_matches_torch_sgd_with_clipping_and_weight_decay():
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  w0 = rng.normal(size=(3,)).astype(np.float32)
  grads = [rng.normal(size=(3,)).astype(np.float32) * s for s in (20.0, 0.5, 8.0, 30.0)]
  cfg = _cfg(schedule="constant", warmup_epochs=0, base_lr=0.05, backbone_freeze_epochs=0)
  params = {"w": jnp.asarray(w0)}
  tx = optim.make_optimizer(cfg, params, 1)
  state = tx.init(params)
  tw = torch.nn.Parameter(torch.tensor(w0))
  sgd = torch.optim.SGD([tw], lr=0.05, momentum=0.9, weight_decay=1e-4)
  for g in grads:
    updates, state = tx.update({"w": jnp.asarray(g)}, state, params)
    params = optax.apply_updates(params, updates)
    tw.grad = torch.tensor(g)
    torch.nn.utils.clip_grad_norm_([tw], 10.0)
    sgd.step()
    np.testing.assert_allclose(np.asarray(params["w"]), tw.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_adamw_matches_optax_adamw_and_respects_the_freeze():
  cfg = _cfg(optimizer="adamw", schedule="constant", warmup_epochs=0, base_lr=0.01,
             weight_decay=0.1, grad_clip=0.0, backbone_freeze_epochs=2, backbone_lr_mult=1.0)
  params = _toy_params()
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.3), params)
  hist = _run(optim.make_optimizer(cfg, params, steps_per_epoch=1), params, grads, 3)
  ref = optax.adamw(0.01, weight_decay=0.1)
  p, s = params["head"], ref.init(params["head"])
  for h in hist:
    u, s = ref.update(grads["head"], s, p)
    p = optax.apply_updates(p, u)
    np.testing.assert_allclose(h["head"]["kernel"], p["kernel"], rtol=1e-6)
  # Frozen for 2 steps, then the trainable stages start their own Adam moments.
  assert [h["backbone"]["layer2_0"]["kernel"] for h in hist[:2]] == [1.0, 1.0]
  first = 1.0 - 0.01 * (1.0 + 0.1 * 1.0)      # Adam's first step is lr * sign(g)
  assert hist[2]["backbone"]["layer2_0"]["kernel"] == pytest.approx(first, rel=1e-5)
  assert hist[2]["backbone"]["conv1"]["kernel"] == 1.0
  cfg.optimizer = "adam_w"
  with pytest.raises(ValueError, match="'optimizer'"):
    optim.make_optimizer(cfg, params, 1)

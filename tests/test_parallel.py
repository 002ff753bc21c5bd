"""Data-parallel step over the 2 CPU devices of conftest: equals a single-device step."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from duml_jax.training import parallel
from duml_jax.training import train_state as ts


class BNNet(nn.Module):
  """Dense -> BatchNorm -> relu -> Dense; `axis_name='data'` syncs BN over devices."""
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool = True):
    x = nn.Dense(4)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, axis_name=self.axis_name)(x)
    return nn.Dense(1)(nn.relu(x))


def _make_loss(model):
  def loss_fn(params, batch_stats, batch, rng, flags):
    del rng
    out, updates = model.apply({"params": params, "batch_stats": batch_stats}, batch["x"],
                               train=flags.get("train", True), mutable=["batch_stats"])
    loss = jnp.mean((out - batch["y"]) ** 2) * flags.get("scale", 1.0)
    return loss, (updates["batch_stats"], {"mae": jnp.mean(jnp.abs(out - batch["y"]))})
  return loss_fn


def _data(n=8, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 3)).astype(np.float32)
  return {"x": x, "y": (x @ np.array([[1.0], [-2.0], [0.5]], np.float32)).astype(np.float32)}


def _init_state(tx):
  v = BNNet().init(jax.random.key(0), jnp.zeros((2, 3)))
  return ts.create_train_state(v["params"], tx, jax.random.PRNGKey(1), v["batch_stats"])


def test_mesh_spans_all_devices():
  mesh = parallel.make_mesh()
  assert mesh.axis_names == ("data",) and mesh.devices.size == jax.device_count() == 2
  assert parallel.local_batch_size(8, mesh) == 8
  with pytest.raises(ValueError, match="not divisible"):
    parallel.local_batch_size(7, mesh)


def test_shard_batch_and_replicate():
  mesh = parallel.make_mesh()
  batch = parallel.shard_batch(_data(), mesh)
  assert batch["x"].shape == (8, 3)
  assert batch["x"].sharding.is_equivalent_to(NamedSharding(mesh, P("data")), 2)
  assert [s.data.shape for s in batch["x"].addressable_shards] == [(4, 3), (4, 3)]
  np.testing.assert_array_equal(np.asarray(batch["x"]), _data()["x"])
  rep = parallel.replicate({"a": np.arange(3.0)}, mesh)
  assert rep["a"].sharding.is_fully_replicated and len(rep["a"].addressable_shards) == 2


def test_two_device_step_equals_single_device_step():
  tx = optax.sgd(0.1, momentum=0.9)
  mesh = parallel.make_mesh()
  step = parallel.make_train_step(_make_loss(BNNet(axis_name="data")), mesh, donate=False)
  state = parallel.replicate(_init_state(tx), mesh)
  ref = _init_state(tx)

  @jax.jit
  def ref_step(ref, data):  # plain single-device step on the whole batch, BN without axis
    (loss, (bs, _)), grads = jax.value_and_grad(_make_loss(BNNet()), has_aux=True)(
        ref.params, ref.batch_stats, data, None, {})
    return ts.apply_gradients(ref, grads, bs), loss, grads

  for i in range(3):
    data = _data(seed=i)
    state, metrics = step(state, parallel.shard_batch(data, mesh))
    ref, loss, grads = ref_step(ref, data)
    np.testing.assert_allclose(float(metrics["loss"]), float(loss), rtol=1e-5)
  assert int(state.step) == 3 and bool(metrics["is_finite"])
  for got, want in zip(jax.tree.leaves((state.params, state.batch_stats, state.opt_state)),
                       jax.tree.leaves((ref.params, ref.batch_stats, ref.opt_state))):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(float(metrics["grad_norm"]), float(optax.tree.norm(grads)),
                             rtol=1e-5)


def test_rng_differs_per_device_and_step():
  mesh = parallel.make_mesh()

  def loss_fn(params, batch_stats, batch, rng, flags):
    return jnp.sum(params["w"] * batch["x"]), (batch_stats, {"u": jax.random.uniform(rng)})

  state = parallel.replicate(
      ts.create_train_state({"w": jnp.ones(())}, optax.sgd(0.0), jax.random.PRNGKey(7)), mesh)
  step = parallel.make_train_step(loss_fn, mesh)
  batch = parallel.shard_batch({"x": np.ones((2,), np.float32)}, mesh)
  for i in range(2):
    state, metrics = step(state, batch)
    keys = [jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(7), i), d) for d in (0, 1)]
    per_device = [float(jax.random.uniform(k)) for k in keys]
    assert per_device[0] != per_device[1]
    np.testing.assert_allclose(float(metrics["u"]), np.mean(per_device), rtol=1e-6)


def test_static_train_flags_reach_the_loss():
  mesh = parallel.make_mesh()
  step = parallel.make_train_step(_make_loss(BNNet(axis_name="data")), mesh, donate=False)
  state = parallel.replicate(_init_state(optax.sgd(0.0)), mesh)
  batch = parallel.shard_batch(_data(), mesh)
  _, m1 = step(state, batch, {"scale": 1.0})
  _, m2 = step(state, batch, {"scale": 2.0})
  np.testing.assert_allclose(float(m2["loss"]), 2 * float(m1["loss"]), rtol=1e-6)
  # Eval-mode BN (backbone frozen): running stats are not updated.
  new, _ = step(state, batch, {"train": False})
  for a, b in zip(jax.tree.leaves(new.batch_stats), jax.tree.leaves(state.batch_stats)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  with pytest.raises(TypeError, match="hashable"):
    step(state, batch, {"layers": ["layer2"]})


def test_nan_guard_keeps_last_good_state():
  mesh = parallel.make_mesh()
  step = parallel.make_train_step(_make_loss(BNNet(axis_name="data")), mesh)
  state = parallel.replicate(_init_state(optax.sgd(0.1, momentum=0.9)), mesh)
  state, metrics = step(state, parallel.shard_batch(_data(), mesh))
  parallel.raise_if_not_finite(metrics, 0)
  good = jax.device_get((state.step, state.params, state.batch_stats, state.opt_state))
  bad = _data(seed=1)
  bad["x"][5, 1] = np.nan  # one sample on the second device
  state, metrics = step(state, parallel.shard_batch(bad, mesh))
  assert not bool(metrics["is_finite"])
  after = jax.device_get((state.step, state.params, state.batch_stats, state.opt_state))
  assert int(after[0]) == 1
  for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(good)):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(FloatingPointError, match="step 1"):
    parallel.raise_if_not_finite(metrics, int(state.step))


def test_eval_step_averages_over_the_global_batch():
  mesh = parallel.make_mesh()
  state = parallel.replicate(_init_state(optax.sgd(0.0)), mesh)
  model = BNNet()

  def metrics_fn(params, batch_stats, batch):
    out = model.apply({"params": params, "batch_stats": batch_stats}, batch["x"], train=False)
    return {"mse": jnp.mean((out - batch["y"]) ** 2)}

  data = _data(seed=3)
  got = parallel.make_eval_step(metrics_fn, mesh)(state, parallel.shard_batch(data, mesh))
  want = metrics_fn(state.params, state.batch_stats, data)
  np.testing.assert_allclose(float(got["mse"]), float(want["mse"]), rtol=1e-6)


def test_typed_key_is_stored_as_raw_key():
  state = ts.create_train_state({"w": jnp.ones(())}, optax.sgd(0.1), jax.random.key(5))
  assert state.rng.dtype == jnp.uint32 and state.rng.shape == (2,)
  np.testing.assert_array_equal(np.asarray(state.rng), np.asarray(jax.random.PRNGKey(5)))
  assert int(state.step) == 0 and state.batch_stats == {}

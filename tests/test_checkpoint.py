"""Orbax checkpoints: exact round trip and kill-and-resume determinism."""
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from duml_jax import checkpoint
from duml_jax.training import optim
from duml_jax.training import parallel
from duml_jax.training import train_state as ts

_DATA = np.random.default_rng(0).normal(size=(6, 4, 3)).astype(np.float32)  # 6 batches of 4


def _config():
  cfg = ml_collections.ConfigDict()
  cfg.optim = optim.default_optim_config()
  cfg.optim.update(warmup_epochs=1, num_epochs=4, backbone_freeze_epochs=1,
                   backbone_train_layers=("layer2",))
  cfg.batch_size = 4
  return cfg


def _params():
  return {"backbone": {"layer2": {"kernel": jnp.full((3, 2), 0.5)}},
          "head": {"kernel": jnp.linspace(-1.0, 1.0, 2), "bias": jnp.zeros(())}}


def _loss_fn(params, batch_stats, batch, rng, flags):
  """Toy loss with noise from `rng`, so a wrong rng after resume changes the result."""
  del flags
  noise = 0.1 * jax.random.normal(rng, batch["x"].shape)
  feats = jnp.tanh((batch["x"] + noise) @ params["backbone"]["layer2"]["kernel"])
  pred = feats @ params["head"]["kernel"] + params["head"]["bias"]
  loss = jnp.mean((pred - batch["x"].sum(-1)) ** 2)
  new_stats = {"mean": 0.9 * batch_stats["mean"] + 0.1 * jnp.mean(batch["x"], 0)}
  return loss, (new_stats, {})


def _host_state(cfg):
  params = _params()
  tx = optim.make_optimizer(cfg.optim, params, steps_per_epoch=2)
  return ts.create_train_state(params, tx, jax.random.PRNGKey(3), {"mean": jnp.zeros(3)})


def _fresh_state(mesh, cfg):
  """What a (re)started process builds: the step-0 state, replicated over the mesh."""
  return parallel.replicate(_host_state(cfg), mesh)


def _train(state, step_fn, mesh, start, stop):
  for i in range(start, stop):
    state, _ = step_fn(state, parallel.shard_batch({"x": _DATA[i]}, mesh))
  return state


def _assert_trees_equal(a, b):
  """Same paths, dtypes and values (static fields such as `tx` may be distinct objects)."""
  la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
  assert [p for p, _ in la] == [p for p, _ in lb]
  for (_, x), (_, y) in zip(la, lb):
    assert x.dtype == y.dtype
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_restores_everything(tmp_path):
  mesh, cfg = parallel.make_mesh(), _config()
  step_fn = parallel.make_train_step(_loss_fn, mesh)
  state = _train(_fresh_state(mesh, cfg), step_fn, mesh, 0, 3)  # past the unfreeze: momentum
  momenta = [x for x in jax.tree.leaves(state.opt_state) if x.dtype == jnp.float32]
  assert momenta and all(float(jnp.abs(x).sum()) > 0 for x in momenta)
  ckpt = checkpoint.CheckpointManager(tmp_path / "work", max_to_keep=2)
  assert ckpt.latest_step() is None
  assert ckpt.restore_latest(jax.eval_shape(lambda: state)) is None
  assert ckpt.save(3, state, {"next_index": 3, "epoch": 1}, cfg)
  ckpt.wait_until_finished()
  assert os.path.isabs(ckpt.directory) and ckpt.latest_step() == 3

  fresh = checkpoint.CheckpointManager(str(tmp_path / "work"))
  abstract = jax.eval_shape(lambda: _fresh_state(mesh, cfg))
  restored, data_state = fresh.restore_latest(abstract, mesh)
  _assert_trees_equal(restored, state)
  assert restored.tx is abstract.tx and restored.tx is not None
  assert data_state == {"next_index": 3, "epoch": 1}
  assert restored.params["head"]["kernel"].sharding.is_fully_replicated
  assert fresh.restore_config()["optim"]["backbone_train_layers"] == ["layer2"]
  with pytest.raises(FileNotFoundError, match="step 7"):
    fresh.restore(7, abstract)


def test_variables_restore_whatever_optimiser_trained_them(tmp_path):
  # Saved with SGD (momentum state); restored for evaluation by a process whose config now
  # builds AdamW (a different opt_state tree): params and BN statistics come back exactly.
  mesh, cfg = parallel.make_mesh(), _config()
  step_fn = parallel.make_train_step(_loss_fn, mesh)
  state = _train(_fresh_state(mesh, cfg), step_fn, mesh, 0, 3)
  ckpt = checkpoint.CheckpointManager(tmp_path / "work", async_save=False)
  ckpt.save(3, state, {}, cfg)
  adam = _config()
  adam.optim.optimizer = "adamw"
  abstract = jax.eval_shape(lambda: _fresh_state(mesh, adam))
  assert (jax.tree.structure(abstract.opt_state) != jax.tree.structure(state.opt_state))
  with pytest.raises(ValueError):
    ckpt.restore(3, abstract, mesh)      # the whole state cannot come back
  got = ckpt.restore_variables(3, {"params": abstract.params,
                                   "batch_stats": abstract.batch_stats}, mesh)
  assert sorted(got) == ["batch_stats", "params"]
  _assert_trees_equal(got["params"], state.params)
  _assert_trees_equal(got["batch_stats"], state.batch_stats)
  with pytest.raises(FileNotFoundError, match="step 9"):
    ckpt.restore_variables(9, {"params": abstract.params}, mesh)
  ckpt.close()


def test_max_to_keep_and_save_interval(tmp_path):
  ckpt = checkpoint.CheckpointManager(tmp_path, max_to_keep=2, save_interval_steps=2)
  tree = {"w": jnp.arange(3.0)}
  saved = [ckpt.save(s, tree, {}) for s in range(1, 7)]
  ckpt.wait_until_finished()
  assert saved == [True, True, False, True, False, True]  # orbax always takes the first save
  assert ckpt.all_steps() == [4, 6]
  assert ckpt.save(7, tree, force=True)
  ckpt.close()


def test_kill_and_resume_is_deterministic(tmp_path):
  mesh, cfg = parallel.make_mesh(), _config()
  step_fn = parallel.make_train_step(_loss_fn, mesh)
  straight = jax.device_get(_train(_fresh_state(mesh, cfg), step_fn, mesh, 0, 6))

  ckpt = checkpoint.CheckpointManager(tmp_path, max_to_keep=1)
  first = _train(_fresh_state(mesh, cfg), step_fn, mesh, 0, 3)
  ckpt.save(int(first.step), first, {"next_index": 3}, cfg)
  ckpt.close()
  del first  # "kill": nothing of the first run survives but the files

  resumed_ckpt = checkpoint.CheckpointManager(tmp_path, max_to_keep=1)
  abstract = jax.eval_shape(lambda: _host_state(cfg))  # no shardings: replicated on restore
  state, data_state = resumed_ckpt.restore_latest(abstract)
  assert state.params["head"]["kernel"].sharding.is_fully_replicated
  assert len(state.params["head"]["kernel"].sharding.device_set) == 2
  assert int(state.step) == data_state["next_index"] == 3
  resumed = jax.device_get(_train(state, step_fn, mesh, data_state["next_index"], 6))
  _assert_trees_equal(resumed, straight)


def test_save_config_writes_once(tmp_path):
  cfg = _config()
  path = checkpoint.save_config(tmp_path / "w", cfg)
  assert os.path.isabs(path)
  with open(path) as f:
    assert json.load(f)["optim"]["base_lr"] == 5e-3
  cfg.optim.base_lr = 1.0
  checkpoint.save_config(tmp_path / "w", cfg)
  with open(path) as f:
    assert json.load(f)["optim"]["base_lr"] == 5e-3

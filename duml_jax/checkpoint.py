"""Checkpoints: what training writes and evaluation reads, in one neutral module.

Both `duml_jax.training` (writing) and `duml_jax.evaluation` / `duml_jax.experiments` (reading)
use this module, so neither has to import the other (docs/architecture.md).

Orbax checkpointing of the train state, the data-iterator position and the config.

Layout under `workdir` (made absolute: orbax refuses relative paths):
  workdir/config.json                     `save_config`, written once on the first run
  workdir/checkpoints/<step>/state        StandardSave of the TrainState pytree (params,
                                          batch_stats, opt_state, step, rng)
  workdir/checkpoints/<step>/data_state   JsonSave: data iterator position and any extras
  workdir/checkpoints/<step>/config       JsonSave: the run's config (ConfigDict as JSON)

Saves are asynchronous: call `wait_until_finished()` before reading a checkpoint back or exiting.
Restoring needs an abstract state (`jax.eval_shape` of the state constructor) whose leaves carry
the shardings of the current mesh; `restore_latest` fills in replicated shardings for leaves
that have none. `restore_variables(workdir)` reads a train.py workdir's model variables and config
for evaluation.

DuML-nano's meta-trained online params (`duml_jax.training.meta_nano`) are one ``.npz`` per
workdir: `save_online_params` / `load_online_params`.
"""
import json
import os
import pathlib
from typing import Any, Mapping, Optional

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from duml_jax.models import duml as duml_lib

PyTree = Any
CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
PARAMS_FILE = "online_params.npz"      # DuML-nano's meta-trained online params
LOG_FILE = "meta_nano.json"            # ... and the config and loss log beside them


def config_to_dict(config: ml_collections.ConfigDict | Mapping[str, Any]) -> dict:
  """A JSON-compatible dict of the config (tuples become lists, odd types their repr)."""
  if isinstance(config, (ml_collections.ConfigDict, ml_collections.FrozenConfigDict)):
    return json.loads(config.to_json_best_effort())
  return json.loads(json.dumps(dict(config), default=repr))


def save_config(workdir: str | os.PathLike,
                config: ml_collections.ConfigDict | Mapping[str, Any]) -> str:
  """Writes `workdir/config.json` unless it exists (first run); process 0 only. Returns its path."""
  path = os.path.join(os.path.abspath(os.fspath(workdir)), CONFIG_FILE)
  if jax.process_index() == 0 and not os.path.exists(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(config_to_dict(config), f, indent=2, sort_keys=True)
    os.replace(tmp, path)
  return path


def _mesh(devices) -> Mesh:
  """A 1-D mesh over `devices` (replicated restores only need some mesh)."""
  return Mesh(np.asarray(devices), ("data",), axis_types=(AxisType.Auto,))


def abstract_like(tree: PyTree, mesh: Mesh | None = None) -> PyTree:
  """ShapeDtypeStructs with shardings for every array leaf of `tree`.

  Leaves may be arrays (their own sharding is kept), or ShapeDtypeStructs from `jax.eval_shape`
  (their sharding is kept if set, else replicated over `mesh`, default: all devices).
  """
  replicated = None

  def leaf(x):
    nonlocal replicated
    sharding = getattr(x, "sharding", None)
    if sharding is None:
      if replicated is None:
        replicated = NamedSharding(mesh if mesh is not None else _mesh(jax.devices()), P())
      sharding = replicated
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

  return jax.tree.map(leaf, tree)


class CheckpointManager:
  """Periodic, asynchronous, bounded checkpoints of (state, data_state, config) in a workdir."""

  def __init__(self, workdir: str | os.PathLike, max_to_keep: int | None = 3,
               save_interval_steps: int = 1, async_save: bool = True):
    self.workdir = os.path.abspath(os.fspath(workdir))
    self.directory = os.path.join(self.workdir, CHECKPOINT_DIR)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, save_interval_steps=save_interval_steps,
        enable_async_checkpointing=async_save, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def save(self, step: int, state: PyTree, data_state: Mapping[str, Any] | None = None,
           config: ml_collections.ConfigDict | Mapping[str, Any] | None = None,
           force: bool = False) -> bool:
    """Starts saving at `step` if due or forced; True if a save began.

    Due: `step` is a multiple of `save_interval_steps`, or no checkpoint exists yet (orbax
    always takes the first save). `data_state` and `config` must be JSON-serialisable.
    """
    args = {"state": ocp.args.StandardSave(state),
            "data_state": ocp.args.JsonSave(dict(data_state or {}))}
    if config is not None:
      args["config"] = ocp.args.JsonSave(config_to_dict(config))
    return self._manager.save(int(step), args=ocp.args.Composite(**args), force=force)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def restore(self, step: int, abstract_state: PyTree,
              mesh: Mesh | None = None) -> tuple[PyTree, dict]:
    """Restores (state, data_state) saved at `step` into the structure of `abstract_state`."""
    if step not in self._manager.all_steps():
      raise FileNotFoundError(f"no checkpoint for step {step} in {self.directory} "
                              f"(have {self.all_steps()})")
    restored = self._manager.restore(int(step), args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_like(abstract_state, mesh)),
        data_state=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["data_state"] or {})

  def restore_variables(self, step: int, abstract_variables: Mapping[str, PyTree],
                        mesh: Mesh | None = None) -> dict:
    """Restores only the named top-level parts of the saved state (e.g. params, batch_stats).

    The rest of the saved state (optimiser state, rng) is not read, so a checkpoint restores
    for evaluation whatever optimiser trained it, including one whose state tree has since
    changed shape.
    """
    if step not in self._manager.all_steps():
      raise FileNotFoundError(f"no checkpoint for step {step} in {self.directory} "
                              f"(have {self.all_steps()})")
    path = os.path.join(self.directory, str(int(step)), "state")
    if not os.path.isdir(path):
      raise FileNotFoundError(f"checkpoint {step} in {self.directory} has no saved state ({path})")
    with ocp.PyTreeCheckpointer() as reader:
      restored = reader.restore(path, args=ocp.args.PyTreeRestore(
          abstract_like(dict(abstract_variables), mesh), partial_restore=True))
    return dict(restored)

  def restore_latest(self, abstract_state: PyTree,
                     mesh: Mesh | None = None) -> tuple[PyTree, dict] | None:
    """(state, data_state) of the newest checkpoint, or None if the directory has none.

    `abstract_state`: e.g. `jax.eval_shape(lambda: create_train_state(...))` -- static fields
    (`tx`, `apply_fn`) come back from it, arrays from disk with the shardings it (or `mesh`)
    gives.
    """
    step = self.latest_step()
    if step is None:
      return None
    return self.restore(step, abstract_state, mesh)

  def restore_config(self, step: int | None = None) -> dict | None:
    """The config dict saved with `step` (default latest), or None without checkpoints."""
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    return dict(self._manager.restore(int(step), args=ocp.args.Composite(
        config=ocp.args.JsonRestore()))["config"])

  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def restore_variables(workdir, step: Optional[int] = None, config=None):
  """Model variables of a training workdir's checkpoint (latest by default), with its config.

  The config saved beside the checkpoints is used unless one is given. Only
  {'params', 'batch_stats'} are read (the optimiser state need not match today's optimiser).
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  ckpt = CheckpointManager(workdir, async_save=False)
  try:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {ckpt.directory}")
    if config is None:
      saved = ckpt.restore_config(step)
      if saved is None:
        raise FileNotFoundError(f"no config saved with checkpoint {step} in {ckpt.directory}")
      config = ml_collections.ConfigDict(saved)
    # The restore target's structure only: nothing is computed and no pretrained backbone read.
    model = duml_lib.build_model(config.model)
    abstract = jax.eval_shape(lambda: duml_lib.init_variables(
        model, jax.random.PRNGKey(0), config.model.exemplar_size, config.model.search_size))
    variables = ckpt.restore_variables(
        step, {"params": abstract["params"], "batch_stats": abstract.get("batch_stats", {})},
        _mesh(jax.local_devices()[:1]))
  finally:
    ckpt.close()
  return jax.device_get(variables), config


def save_online_params(workdir, online):
  """Writes DuML-nano's online params to ``WORKDIR/online_params.npz``."""
  flat = flax.traverse_util.flatten_dict(jax.device_get(online), sep="/")
  np.savez(pathlib.Path(workdir, PARAMS_FILE), **{k: np.asarray(v) for k, v in flat.items()})


def load_online_params(workdir):
  """Online params saved by `save_online_params` (``WORKDIR/online_params.npz``)."""
  path = pathlib.Path(workdir, PARAMS_FILE)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no meta-trained DuML-nano params (run "
                            "python -m duml_jax.training.meta_nano --workdir=...)")
  with np.load(path) as z:
    flat = {k: jnp.asarray(z[k]) for k in z.files}
  return flax.traverse_util.unflatten_dict(flat, sep="/")

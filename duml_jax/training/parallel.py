"""Data parallelism over every device of every host with `jax.shard_map`.

One mesh axis, 'data', spans `jax.devices()` (all hosts). The global batch is split along its
leading axis; params, BatchNorm statistics, optimiser state and rng are replicated. Inside the
per-device step, gradients, loss, metrics and new BatchNorm statistics are `lax.pmean`-ed over
'data', so every device applies the identical update and the state stays replicated.

BatchNorm: build the model's `nn.BatchNorm` with `axis_name='data'` when it runs inside
`make_train_step`, so the batch mean/variance are computed over the *global* batch (synchronised
BN). The resulting step equals a single-device step on the whole global batch (tested).

Why params are cast to 'varying' before differentiating: under `shard_map`'s default
`check_vma=True`, the gradient with respect to a replicated (invariant) input is already summed
over devices; making params explicitly per-device first gives per-device gradients that are then
`pmean`-ed, i.e. the gradient of the mean loss over the global batch.
"""
import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from duml_jax.training import train_state as train_state_lib

PyTree = Any
DATA_AXIS = "data"

# loss_fn(params, batch_stats, batch, rng, train_flags) -> (loss, (new_batch_stats, metrics))
LossFn = Callable[[PyTree, PyTree, PyTree, jax.Array, Mapping[str, Any]],
                  tuple[jax.Array, tuple[PyTree, Mapping[str, jax.Array]]]]


def make_mesh(devices=None) -> Mesh:
  """A 1-D ('data',) mesh over all devices of all processes (or the given ones)."""
  if devices is None:
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=(AxisType.Auto,))
  return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def local_batch_size(global_batch_size: int, mesh: Mesh) -> int:
  """Per-process batch size; the global batch must divide evenly over the mesh's devices."""
  n = mesh.devices.size
  if global_batch_size % n:
    raise ValueError(f"global batch size {global_batch_size} is not divisible by the "
                     f"{n} devices of the mesh")
  return global_batch_size * len(mesh.local_devices) // n


def shard_batch(local_batch: PyTree, mesh: Mesh) -> PyTree:
  """Global arrays, sharded along axis 0 over 'data', from this process's numpy batch.

  Each process passes its own slice (leading size = global batch / process count); the global
  array is their concatenation in process order.
  """
  sharding = NamedSharding(mesh, P(DATA_AXIS))
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                      local_batch)


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
  """Copies every leaf to all devices of the mesh (NamedSharding P()), multi-process safe.

  Host values (numpy, or single-process jax arrays) must be identical on every process.
  Under tracing (`jax.eval_shape`, `jit`) the leaves get a sharding constraint instead, so
  `jax.eval_shape(lambda: replicate(make_state(), mesh))` gives restore targets with shardings.
  """
  sharding = NamedSharding(mesh, P())

  def put(x):
    if isinstance(x, jax.core.Tracer):  # e.g. under jax.eval_shape / jit
      return jax.lax.with_sharding_constraint(x, sharding)
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return jax.device_put(x, sharding)
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

  return jax.tree.map(put, tree)


def replicated_shardings(tree: PyTree, mesh: Mesh) -> PyTree:
  """ShapeDtypeStructs with replicated sharding for every leaf (abstract restore targets)."""
  sharding = NamedSharding(mesh, P())
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def tree_all_finite(tree: PyTree) -> jax.Array:
  """Scalar bool: every element of every floating leaf is finite."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _freeze_flags(train_flags: Mapping[str, Any] | None) -> tuple:
  if train_flags is None:
    return ()
  flags = tuple(sorted(train_flags.items()))
  try:
    hash(flags)
  except TypeError as e:
    raise TypeError(f"train_flags values must be hashable (they are static jit arguments): "
                    f"{train_flags!r}") from e
  return flags


def make_train_step(loss_fn: LossFn, mesh: Mesh, donate: bool = True):
  """Builds `train_step(state, batch, train_flags=None) -> (new_state, metrics)`.

  Args:
    loss_fn: `loss_fn(params, batch_stats, batch, rng, train_flags) ->
      (loss, (new_batch_stats, metrics))`, run per device on its slice of the batch; `rng` is
      a raw uint32 key, distinct per step and per device; `train_flags` is a dict of hashable
      Python values (e.g. `{'train': True, 'backbone_train': False}`), static under jit, so a
      new value compiles a new step (a handful of variants at most, e.g. before/after the
      backbone unfreeze). Metrics must be scalars (they are averaged over devices).
    mesh: a ('data',) mesh (`make_mesh()`).
    donate: donate the input state's buffers to the output (do not reuse the old state).

  The step: per-device loss and gradient -> `pmean` over 'data' of loss, grads, metrics and
  batch_stats -> optimiser update. NaN/Inf guard: if the mean loss or any gradient is not finite,
  the returned state is the input state unchanged (step not incremented) and
  `metrics['is_finite']` is False; the trainer should stop (`raise_if_not_finite`).

  Returned metrics: the loss_fn metrics plus 'loss', 'grad_norm' (global L2 norm of the
  averaged gradient, before clipping) and 'is_finite'.
  """

  def per_device(state: train_state_lib.TrainState, batch, flags):
    device = lax.axis_index(DATA_AXIS)
    rng = train_state_lib.step_rng(state, device)
    params = lax.pcast(state.params, DATA_AXIS, to="varying")

    def loss_of(p):
      return loss_fn(p, state.batch_stats, batch, rng, flags)

    (loss, (batch_stats, metrics)), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
    loss, grads, metrics, batch_stats = lax.pmean((loss, grads, dict(metrics), batch_stats),
                                                  DATA_AXIS)
    new_state = train_state_lib.apply_gradients(state, grads, batch_stats)
    ok = jnp.isfinite(loss) & tree_all_finite(grads)
    new_state = jax.tree.map(lambda new, old: jnp.where(ok, new, old), new_state, state)
    metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads), is_finite=ok)
    return new_state, metrics

  @functools.partial(jax.jit, static_argnums=2, donate_argnums=(0,) if donate else ())
  def jitted(state, batch, flags):
    step = jax.shard_map(functools.partial(per_device, flags=dict(flags)), mesh=mesh,
                         in_specs=(P(), P(DATA_AXIS)), out_specs=(P(), P()))
    return step(state, batch)

  def train_step(state, batch, train_flags: Mapping[str, Any] | None = None):
    return jitted(state, batch, _freeze_flags(train_flags))

  return train_step


def make_eval_step(metrics_fn: Callable[[PyTree, PyTree, PyTree], Mapping[str, jax.Array]],
                   mesh: Mesh):
  """Builds `eval_step(state, batch) -> metrics`: `metrics_fn(params, batch_stats, batch)` per
  device (BatchNorm in eval mode is the caller's choice), averaged over 'data'."""

  def per_device(state, batch):
    return lax.pmean(dict(metrics_fn(state.params, state.batch_stats, batch)), DATA_AXIS)

  @jax.jit
  def eval_step(state, batch):
    return jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(DATA_AXIS)),
                         out_specs=P())(state, batch)

  return eval_step


def raise_if_not_finite(metrics: Mapping[str, Any], step: int) -> None:
  """Raises FloatingPointError naming `step` when the step's guard reported NaN/Inf."""
  if not bool(metrics["is_finite"]):
    raise FloatingPointError(
        f"non-finite loss or gradient at step {step} (loss={float(metrics['loss'])}); the update "
        f"was skipped and the state kept at the last good step")

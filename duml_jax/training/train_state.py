"""Training state pytree: step, params, BatchNorm statistics, optimiser state, rng.

A `flax.struct` dataclass: the array fields are pytree leaves (they are donated, sharded and
checkpointed), `apply_fn` and `tx` are static fields (not saved, not traced).

`rng` is a raw uint32 key (`jax.random.PRNGKey`, shape (2,)) rather than a typed key array so that
it checkpoints with orbax's StandardSave and replicates like any other array. The step function
derives each step's randomness as `fold_in(fold_in(rng, step), device_index)`, so `rng` itself
never changes and a resumed run replays the same randomness.
"""
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax

PyTree = Any


@flax.struct.dataclass
class TrainState:
  """Everything a training step reads and writes.

  Attributes:
    step: int32 scalar, number of optimiser updates applied so far.
    params: trainable parameters (the `params` collection).
    batch_stats: BatchNorm running statistics (the `batch_stats` collection; `{}` if none).
    opt_state: optax state of `tx`.
    rng: uint32[2] base PRNG key.
    apply_fn: the model's `apply` (static).
    tx: the optax transformation (static).
  """
  step: jax.Array
  params: PyTree
  batch_stats: PyTree
  opt_state: optax.OptState
  rng: jax.Array
  apply_fn: Callable[..., Any] = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)


def create_train_state(params: PyTree, tx: optax.GradientTransformation, rng: jax.Array,
                       batch_stats: PyTree | None = None,
                       apply_fn: Callable[..., Any] | None = None) -> TrainState:
  """Builds the step-0 state; `rng` may be a raw uint32 key or a typed key (then unwrapped)."""
  if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    rng = jax.random.key_data(rng)
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats={} if batch_stats is None else batch_stats,
      opt_state=tx.init(params),
      rng=jnp.asarray(rng, jnp.uint32),
      apply_fn=apply_fn,
      tx=tx)


def apply_gradients(state: TrainState, grads: PyTree,
                    batch_stats: PyTree | None = None) -> TrainState:
  """One optimiser update: returns the state with new params, opt_state, step (+1), batch_stats."""
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  return state.replace(
      step=state.step + 1,
      params=optax.apply_updates(state.params, updates),
      opt_state=opt_state,
      batch_stats=state.batch_stats if batch_stats is None else batch_stats)


def step_rng(state: TrainState, device_index: jax.Array | int = 0) -> jax.Array:
  """The raw key for this step on this device: fold_in(fold_in(rng, step), device_index)."""
  return jax.random.fold_in(jax.random.fold_in(state.rng, state.step), device_index)

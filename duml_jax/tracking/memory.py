"""Fixed-size sample memory of the online branch (paper Appendix A, DiMP semantics).

The memory holds M samples: online search features (M, G, G, D), the target
box in each sample's crop (M, 4) ``(cx, cy, w, h)`` crop pixels (labels are
functions of it), weights (M,) summing to 1 over filled slots and 0 on empty
ones, and the number of filled slots. The first `num_init` slots hold the
augmented first frame (the fixed part) and are never replaced.

Adding a sample with learning rate lr (anchors.md 3.4):
  slot = the first empty slot, else the lowest-weight non-init slot;
  w <- (1 - lr) w, w[slot] <- lr, w <- w / sum(w);
  if the init samples' total t < m (init_samples_min_weight):
    init weights <- w m / t, other weights <- w (1 - m) / (1 - t).
Everything is masked arithmetic on fixed shapes (no Python branching on
device values), so it runs under jit and vmap.
"""
import flax
import jax.numpy as jnp


@flax.struct.dataclass
class Memory:
  feats: jnp.ndarray     # (M, G, G, D)
  boxes: jnp.ndarray     # (M, 4) cx, cy, w, h in the sample's crop pixels
  weights: jnp.ndarray   # (M,)
  count: jnp.ndarray     # () int32, filled slots


def create(init_feats, init_boxes, size: int):
  """Memory of `size` slots whose first n = len(init_feats) hold the init samples (weight 1/n)."""
  n = init_feats.shape[0]
  if n > size:
    raise ValueError(f"tracking.num_init_samples={n} exceeds tracking.memory_size={size}")
  feats = jnp.zeros((size,) + init_feats.shape[1:], init_feats.dtype).at[:n].set(init_feats)
  bx = jnp.tile(jnp.asarray([[0., 0., 1., 1.]], jnp.float32), (size, 1)).at[:n].set(init_boxes)
  weights = jnp.zeros((size,), jnp.float32).at[:n].set(1. / n)
  return Memory(feats, bx, weights, jnp.asarray(n, jnp.int32))


def new_weights(weights, count, lr, num_init: int, min_init_weight: float):
  """(slot, weights) after adding a sample with rate `lr` (see module docstring)."""
  size = weights.shape[0]
  idx = jnp.arange(size)
  replaceable = idx >= num_init
  slot = jnp.where(count < size, count,
                   jnp.argmin(jnp.where(replaceable, weights, jnp.inf)))
  w = weights * (1. - lr)
  w = w.at[slot].set(lr)
  w = w / jnp.sum(w)
  if min_init_weight > 0 and num_init > 0:
    t = jnp.sum(jnp.where(replaceable, 0., w))
    scale = jnp.where(replaceable, (1. - min_init_weight) / jnp.maximum(1. - t, 1e-12),
                      min_init_weight / jnp.maximum(t, 1e-12))
    w = jnp.where(t < min_init_weight, w * scale, w)
  return slot, w


def add(memory: Memory, feats, box, lr, keep, num_init: int, min_init_weight: float):
  """Adds a sample where `keep` (traced bool); otherwise returns `memory` unchanged."""
  slot, w = new_weights(memory.weights, memory.count, lr, num_init, min_init_weight)
  size = memory.weights.shape[0]
  # An out-of-range slot makes the scatters no-ops (mode="drop") when not kept.
  target = jnp.where(keep, slot, size)
  return Memory(
      feats=memory.feats.at[target].set(feats, mode="drop"),
      boxes=memory.boxes.at[target].set(box, mode="drop"),
      weights=jnp.where(keep, w, memory.weights),
      count=jnp.where(keep, jnp.minimum(memory.count + 1, size), memory.count))

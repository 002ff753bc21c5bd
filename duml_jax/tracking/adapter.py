"""The DuML tracker behind the evaluation runner's `BatchTracker` interface.

`DuMLBatchTracker` keeps the state of N lanes as one batched pytree and runs
`tracker.init` / `tracker.track` under `jax.vmap`:

* frames of a call are padded (top-left aligned) to a common size, rounded up
  to a multiple of `pad_multiple` (64) so that few shapes are compiled; each
  lane's true size lives in its state;
* `init` runs only on the masked lanes: their indices are padded (by
  repeating the last one) to a power of two, initialised together, and
  scattered into the batched state;
* `update` tracks all lanes (unmasked ones on a blank frame) and keeps the old
  state where the mask is off; the state buffers are donated (not on CPU,
  where XLA does not support donation);
* the lanes are sharded over this process's devices (a ('lanes',) mesh,
  `jax.shard_map`): each device tracks its own block of lanes.

`DuMLTracker` is the one-sequence form (``init(frame, box)``,
``update(frame) -> (box, score)``) for the video mode.
"""
import functools

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from duml_jax.tracking import tracker as tracker_lib


def _round_up(v, m):
  return int(-(-int(v) // m) * m)


def pad_frames(frames, pad_multiple: int = 64):
  """Stacks (H_i, W_i, 3) frames (None = blank) into (N, H, W, 3) uint8 + sizes (N, 2) (W, H)."""
  real = [f for f in frames if f is not None]
  if not real:
    raise ValueError("pad_frames: no frame given")
  h = _round_up(max(f.shape[0] for f in real), pad_multiple)
  w = _round_up(max(f.shape[1] for f in real), pad_multiple)
  out = np.zeros((len(frames), h, w, 3), np.uint8)
  sizes = np.ones((len(frames), 2), np.float32)
  for i, f in enumerate(frames):
    if f is None:
      continue
    if f.ndim != 3 or f.shape[2] != 3:
      raise ValueError(f"lane {i}: frame of shape {f.shape}, expected (H, W, 3)")
    out[i, :f.shape[0], :f.shape[1]] = f
    sizes[i] = (f.shape[1], f.shape[0])
  return out, sizes


LANE_AXIS = "lanes"


def lane_mesh(devices=None) -> Mesh:
  """A 1-D ('lanes',) mesh over this process's devices (default `jax.local_devices()`).

  Lanes are independent, so each process shards its own lanes over its own devices and no
  collective crosses processes (multi-host evaluation splits sequences, not lanes).
  """
  devices = jax.local_devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (LANE_AXIS,), axis_types=(AxisType.Auto,))


@functools.lru_cache(maxsize=16)
def _batched_fns(model, tcfg, mesh):
  """Jitted (init, step, scatter, refine) of a (model, tcfg), shared by all adapters using them.

  Each device runs the vmapped per-lane function on its own block of lanes (`jax.shard_map`), so
  a lane's arithmetic is a one-device run's with (lanes / devices) lanes: with one lane per
  device the result files equal a one-lane, one-device run's byte for byte (tested). Other
  lane counts change float32 rounding only (different matrix shapes).
  """
  donate = jax.default_backend() != "cpu"
  lanes, rep = P(LANE_AXIS), P()

  def sharded(fn, in_specs):
    return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=lanes, check_vma=False)

  def init_one(v, frame, box, size):
    return tracker_lib.init(model, v, tcfg, frame, box, size)

  def track_one(v, state, frame):
    return tracker_lib.track(model, v, tcfg, state, frame)

  def step(v, states, frames, mask):
    new, out = jax.vmap(track_one, in_axes=(None, 0, 0))(v, states, frames)
    keep = lambda n, o: jnp.where(mask.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)
    return jax.tree.map(keep, new, states), out

  def scatter(states, idx, new):
    return jax.tree.map(lambda s, n: s.at[idx].set(n), states, new)

  def refine(v, states, iters):
    return jax.vmap(lambda s, n: tracker_lib.refine_state(model, v, tcfg, s, n))(states, iters)

  init = sharded(jax.vmap(init_one, in_axes=(None, 0, 0, 0)), (rep, lanes, lanes, lanes))
  # The scatter moves whole lanes between devices (exact); the jit places its output back on
  # the lane sharding.
  return (jax.jit(init),
          jax.jit(sharded(step, (rep, lanes, lanes, lanes)),
                  donate_argnums=(1,) if donate else ()),
          jax.jit(scatter, donate_argnums=(0,) if donate else (),
                  out_shardings=NamedSharding(mesh, lanes)),
          jax.jit(sharded(refine, (rep, lanes, lanes)), donate_argnums=(1,) if donate else ()))


def _next_pow2(k):
  return 1 << (int(k) - 1).bit_length()


class DuMLBatchTracker:
  """N independent DuML lanes (`duml_jax.evaluation.runner.BatchTracker`)."""

  deterministic = True

  def __init__(self, model, variables, tcfg, batch_size: int, name: str = "DuML",
               pad_multiple: int = 64, mesh: Mesh | None = None):
    """`mesh`: a `lane_mesh` whose device count divides `batch_size`; default: as many of this
    process's devices as divide it (all of them when `batch_size` is a multiple)."""
    self.name = name
    self.batch_size = int(batch_size)
    self.pad_multiple = int(pad_multiple)
    self.last_output = None     # numpy dict of the last update (flags, iters, ...)
    if mesh is None:
      local = jax.local_devices()
      n = max(d for d in range(1, len(local) + 1) if self.batch_size % d == 0)
      mesh = lane_mesh(local[:n])
    if self.batch_size % mesh.devices.size:
      raise ValueError(f"{name}: {self.batch_size} lanes do not split evenly over the "
                       f"{mesh.devices.size} devices of the mesh")
    self.mesh = mesh
    self._lanes = NamedSharding(mesh, P(LANE_AXIS))
    self._variables = jax.device_put(variables, NamedSharding(mesh, P()))
    self._state = None
    self._ready = np.zeros(self.batch_size, bool)   # lanes initialised at least once
    self._init, self._step, self._scatter, self._refine = _batched_fns(model, tcfg, mesh)

  def _put(self, x):
    return jax.device_put(np.asarray(x), self._lanes)

  @property
  def state(self):
    """The batched `TrackerState` (lane axis first), None before the first init."""
    return self._state

  def init(self, frames, boxes, mask):
    mask = np.asarray(mask, bool)
    idx = np.flatnonzero(mask)
    if idx.size == 0:
      return
    # Per device a power of two of lanes (few compiled shapes), the last lane repeated to fill.
    ndev = self.mesh.devices.size
    n = ndev * min(_next_pow2(-(-idx.size // ndev)), self.batch_size // ndev)
    idx = np.concatenate([idx, np.full(n - idx.size, idx[-1])]).astype(np.int32)
    stacked, sizes = pad_frames([frames[i] for i in idx], self.pad_multiple)
    bxs = np.asarray([np.asarray(boxes[i], np.float32) for i in idx], np.float32)
    new = self._init(self._variables, self._put(stacked), self._put(bxs), self._put(sizes))
    if self._state is None:
      self._state = jax.tree.map(
          lambda a: jnp.repeat(a[:1], self.batch_size, axis=0), new)
    self._state = self._scatter(self._state, jnp.asarray(idx), new)
    self._ready[idx] = True

  def update(self, frames, mask):
    mask = np.asarray(mask, bool)
    boxes = np.full((self.batch_size, 4), np.nan)
    scores = np.zeros(self.batch_size)
    if not mask.any():
      return boxes, scores
    if not self._ready[mask].all():
      lanes = np.flatnonzero(mask & ~self._ready).tolist()
      raise RuntimeError(f"{self.name}: lanes {lanes} updated before init")
    lane_frames = [frames[i] if mask[i] else None for i in range(self.batch_size)]
    stacked, _ = pad_frames(lane_frames, self.pad_multiple)
    self._state, out = self._step(self._variables, self._state, self._put(stacked),
                                  self._put(mask))
    out = jax.device_get(out)
    iters = np.where(mask, out["iters"], 0).astype(np.int32)
    if iters.any():   # filter steps due on some lane (every 20 frames / on distractors)
      self._state = self._refine(self._variables, self._state, self._put(iters))
    self.last_output = out
    boxes[mask] = out["box"][mask]
    scores[mask] = out["score"][mask]
    return boxes, scores


class DuMLTracker:
  """One sequence at a time: ``init(frame, box)``, ``update(frame) -> (box, score)``."""

  def __init__(self, model, variables, tcfg, name: str = "DuML", pad_multiple: int = 64):
    self.name = name
    self._batch = DuMLBatchTracker(model, variables, tcfg, 1, name, pad_multiple)

  def init(self, frame, box):
    self._batch.init([frame], np.asarray(box, np.float32)[None], np.ones(1, bool))

  def update(self, frame):
    boxes, scores = self._batch.update([frame], np.ones(1, bool))
    return boxes[0], float(scores[0])

  @property
  def last_output(self):
    out = self._batch.last_output
    return None if out is None else {k: v[0] for k, v in out.items()}

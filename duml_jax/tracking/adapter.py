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
  where XLA does not support donation).

`DuMLTracker` is the one-sequence form (``init(frame, box)``,
``update(frame) -> (box, score)``) for the video mode.
"""
import functools

import jax
import jax.numpy as jnp
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


@functools.lru_cache(maxsize=16)
def _batched_fns(model, tcfg):
  """Jitted (init, step, scatter, refine) of a (model, tcfg), shared by all adapters using them."""
  donate = jax.default_backend() != "cpu"

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

  return (jax.jit(jax.vmap(init_one, in_axes=(None, 0, 0, 0))),
          jax.jit(step, donate_argnums=(1,) if donate else ()),
          jax.jit(scatter, donate_argnums=(0,) if donate else ()),
          jax.jit(refine, donate_argnums=(1,) if donate else ()))


def _next_pow2(k):
  return 1 << (int(k) - 1).bit_length()


class DuMLBatchTracker:
  """N independent DuML lanes (`duml_jax.evaluation.runner.BatchTracker`)."""

  deterministic = True

  def __init__(self, model, variables, tcfg, batch_size: int, name: str = "DuML",
               pad_multiple: int = 64):
    self.name = name
    self.batch_size = int(batch_size)
    self.pad_multiple = int(pad_multiple)
    self.last_output = None     # numpy dict of the last update (flags, iters, ...)
    self._variables = variables
    self._state = None
    self._ready = np.zeros(self.batch_size, bool)   # lanes initialised at least once
    self._init, self._step, self._scatter, self._refine = _batched_fns(model, tcfg)

  @property
  def state(self):
    """The batched `TrackerState` (lane axis first), None before the first init."""
    return self._state

  def init(self, frames, boxes, mask):
    mask = np.asarray(mask, bool)
    idx = np.flatnonzero(mask)
    if idx.size == 0:
      return
    n = min(_next_pow2(idx.size), self.batch_size)
    idx = np.concatenate([idx, np.full(n - idx.size, idx[-1])]).astype(np.int32)
    stacked, sizes = pad_frames([frames[i] for i in idx], self.pad_multiple)
    bxs = np.asarray([np.asarray(boxes[i], np.float32) for i in idx], np.float32)
    new = self._init(self._variables, stacked, bxs, sizes)
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
    self._state, out = self._step(self._variables, self._state, stacked, jnp.asarray(mask))
    out = jax.device_get(out)
    iters = np.where(mask, out["iters"], 0).astype(np.int32)
    if iters.any():   # filter steps due on some lane (every 20 frames / on distractors)
      self._state = self._refine(self._variables, self._state, jnp.asarray(iters))
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

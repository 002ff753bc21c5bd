"""The steady-state tracker step runs on device: frame in, box out, no host transfer in between.

`tracker.step` is the whole per-frame step of one sequence (`track` and the
filter refinement due on the frame, inside a `lax.cond`).
"""
import jax
from jax.extend import core as jex_core
import numpy as np

from configs import duml as duml_configs
from duml_jax.models import duml as duml_lib
from duml_jax.tracking import tracker

_CALLBACKS = ("callback", "debug_print", "outfeed", "infeed")


def _primitives(jaxpr, out):
  for eqn in jaxpr.eqns:
    out.add(eqn.primitive.name)
    for sub in jex_core.jaxprs_in_params(eqn.params):
      _primitives(sub, out)
  return out


def test_track_step_has_no_host_transfer_or_callback():
  cfg = duml_configs.get_config("tiny")
  model = duml_lib.build_model(cfg.model)
  variables = duml_lib.init_variables(model, jax.random.PRNGKey(0))
  tcfg = tracker.tracking_params(cfg, num_init_samples=2, init_iters=1, memory_size=4,
                                 update_every=1)
  rng = np.random.default_rng(0)
  frames = jax.device_put(rng.integers(0, 255, (3, 128, 160, 3), dtype=np.uint8))
  size = jax.device_put(np.array([160., 128.], np.float32))
  box = jax.device_put(np.array([60., 50., 30., 20.], np.float32))
  state = tracker.init(model, variables, tcfg, frames[0], box, size)
  state, out = tracker.step(model, variables, tcfg, state, frames[1])   # compiles
  jax.block_until_ready((state, out))
  frame = frames[2]
  with jax.transfer_guard("disallow"):
    state, out = tracker.step(model, variables, tcfg, state, frame)
    jax.block_until_ready((state, out))
  assert np.all(np.isfinite(jax.device_get(out["box"])))
  # No callback anywhere in the step's jaxpr (nested jaxprs included: the
  # backbone's convolutions are found, so the walk reached them).
  prims = _primitives(jax.make_jaxpr(
      lambda s, f: tracker.step(model, variables, tcfg, s, f))(state, frame).jaxpr, set())
  assert "conv_general_dilated" in prims and "cond" in prims, sorted(prims)
  assert not [p for p in prims if any(c in p for c in _CALLBACKS)], sorted(prims)


def test_transfer_guard_catches_a_host_value():
  """The guard is active: a host numpy frame passed to the step is refused."""
  x = np.zeros((4,), np.float32)
  f = jax.jit(lambda a: a + 1)
  jax.block_until_ready(f(jax.device_put(x)))
  with jax.transfer_guard("disallow"):
    try:
      f(x)
    except Exception as e:  # pylint: disable=broad-except
      assert "Disallowed" in str(e) or "transfer" in str(e).lower(), e
    else:
      raise AssertionError("transfer_guard('disallow') let a host->device transfer through")

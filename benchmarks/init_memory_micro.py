"""Micro-benchmark: the first-frame SD-GN refinement over the whole memory vs its filled slots.

`tracker.init` fills `num_init_samples` (10) of the `memory_size` (50)
memory slots and runs `init_iters` (10) SD-GN steps over all 50 (the 40
empty slots have weight 0 and change nothing but cost the same as full
ones). This times `tracker._optimise` on both, for the paper's online width
(D=256) and the tiny one (D=32), and checks the filters agree.

  python benchmarks/init_memory_micro.py
"""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from configs import duml as duml_configs  # noqa: E402
from duml_jax.models import duml as duml_lib  # noqa: E402
from duml_jax.tracking import memory as memory_lib  # noqa: E402
from duml_jax.tracking import tracker  # noqa: E402


def main():
  result = common.header("init_memory_micro", "paper + tiny online widths")
  rng = np.random.default_rng(0)
  for preset in ("paper", "tiny"):
    cfg = duml_configs.get_config(preset)
    model = duml_lib.build_model(cfg.model)
    variables = duml_lib.init_variables(model, jax.random.PRNGKey(0), cfg.model.exemplar_size,
                                        cfg.model.search_size)
    tcfg = tracker.tracking_params(cfg)
    g = cfg.model.search_size // cfg.model.stride + 1
    d, k, n = cfg.model.online_cfg.feature_dim, cfg.model.online_cfg.filter_size, tcfg.num_init_samples
    feats = jnp.asarray(rng.standard_normal((n, g, g, d)) / np.sqrt(d * g * g), jnp.float32)
    half = cfg.model.search_size / 2.
    boxes = jnp.tile(jnp.array([half, half, half / 2, half / 2], jnp.float32), (n, 1))
    full = memory_lib.create(feats, boxes, tcfg.memory_size)
    filled = memory_lib.create(feats, boxes, n)
    filt = jnp.asarray(rng.standard_normal((k, k, d, model.a_on)) * 1e-2, jnp.float32)
    fn = jax.jit(lambda f, m: tracker._optimise(model, variables, tcfg, f, m, tcfg.init_iters))  # pylint: disable=protected-access
    out = {}
    for name, mem in (("memory_size_slots", full), ("filled_slots_only", filled)):
      out[name] = common.summary(common.time_repeats(lambda m=mem: fn(filt, m), 3))
      out[name]["slots"] = int(mem.feats.shape[0])
    out["max_abs_filter_diff"] = float(jnp.max(jnp.abs(fn(filt, full) - fn(filt, filled))))
    out["init_iters"] = tcfg.init_iters
    result[preset] = out
  common.finish(result)


if __name__ == "__main__":
  main()

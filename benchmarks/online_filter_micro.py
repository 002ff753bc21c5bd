"""Micro-benchmark: the library's online filter (`online.apply_filter`) vs a tap-matmul form.

`duml_jax.models.online.apply_filter` scores memory features (M, G, G, D)
with a filter (k, k, D, A). Up to commit 597b601 it was a
`lax.conv_general_dilated`; under `jax.vmap` over per-lane filters JAX's
batching rule turns that into a grouped convolution, which XLA's CPU
backend runs ~100x slower. Since 398f9bc it is k*k shifted (D -> A)
contractions: with A = 1 each is a matrix-vector product, one pass over the
features per tap. `apply_filter_taps` below does one (D -> k*k*A) matmul
for all taps (a batched dot under vmap), then k*k shifted adds of the
A-channel maps. The key "library" is whatever `online.apply_filter` is in
the checkout.

Prints one JSON object: ms for the plain call, its VJP w.r.t. the filter
(the SD-GN gradient) and both under vmap, for the tiny (D=32) and paper
(D=256) online widths, and the max abs difference of the two forms.

  python benchmarks/online_filter_micro.py
"""
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from duml_jax.models import online  # noqa: E402


def apply_filter_taps(feats, filt):
  """Same as `online.apply_filter` ('SAME' cross-correlation, (..., H, W, C) x (k, k, C, A))."""
  k = filt.shape[0]
  p = k // 2
  h, w = feats.shape[-3], feats.shape[-2]
  y = jnp.einsum("...hwc,uvca->...hwuva", feats, filt)
  pad = [(0, 0)] * (feats.ndim - 3) + [(p, p), (p, p), (0, 0), (0, 0), (0, 0)]
  yp = jnp.pad(y, pad)
  out = 0.
  for u in range(k):
    for v in range(k):
      out = out + yp[..., u:u + h, v:v + w, u, v, :]
  return out


def _ms(fn, *args, repeats=3):
  t0 = time.perf_counter()
  jax.block_until_ready(fn(*args))
  first = time.perf_counter() - t0
  times = common.time_repeats(lambda: fn(*args), repeats, warmup=0)
  return {"first_call_s": round(first, 2), **common.summary(times)}


def main():
  result = common.header("online_filter_micro", "M=50 memory, G=32, k=5, A=1")
  rng = np.random.default_rng(0)
  result["cases"] = {}
  for d, lanes in ((32, 8), (256, 2)):
    feats = jnp.asarray(rng.standard_normal((50, 32, 32, d)), jnp.float32)
    filt = jnp.asarray(rng.standard_normal((5, 5, d, 1)), jnp.float32)
    g = jnp.ones((50, 32, 32, 1), jnp.float32)
    ref = online.apply_filter(feats, filt)
    case = {"max_abs_diff": float(jnp.max(jnp.abs(apply_filter_taps(feats, filt) - ref))),
            "max_abs_ref": float(jnp.max(jnp.abs(ref))), "lanes": lanes}
    xs, fs, gs = (jnp.stack([a] * lanes) for a in (feats, filt, g))
    for name, fn in (("library", online.apply_filter), ("taps", apply_filter_taps)):
      vjp = lambda f, gg, x, fn=fn: jax.vjp(lambda q: fn(x, q), f)[1](gg)[0]
      case[name] = {
          "fwd": _ms(jax.jit(fn), feats, filt),
          "vjp": _ms(jax.jit(vjp), filt, g, feats),
          "vmap_fwd": _ms(jax.jit(jax.vmap(fn)), xs, fs),
          "vmap_vjp": _ms(jax.jit(jax.vmap(vjp)), fs, gs, xs)}
    result["cases"][f"D={d}"] = case
  common.finish(result)


if __name__ == "__main__":
  main()

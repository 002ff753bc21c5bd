"""Robust localization: an online filter refined by steepest-descent Gauss-Newton.

Paper Eq. 3 (the online branch), Eq. 7 (the residual) and Eq. 8 (the step),
Appendix A; the formulation follows DiMP.

Notation (single sequence; the model vmaps over the batch):
  x_j    (M, H, W, C)  online features of the M support / memory samples
  phi    (k, k, C, A)  the filter; scores s_j = x_j * phi ('SAME' padding)
  beta_j (M,)          sample weights (1/M in training, memory weights when tracking)
  y, m, v              label, mask, spatial weight maps (M, H, W, 1 or A):
                       learned functions of the distance to the target centre
                       built on triangular basis functions (`ResidualFunctions`)

Residual (Eq. 7):  r_j = v * sqrt(beta_j) * (m s_j + (1 - m) max(0, s_j) - y)
Objective:         L(phi) = 1/2 sum_j ||r_j||^2 + lambda/2 ||phi||^2
Gradient:          g = J^T r + lambda phi
Step (Eq. 8):      alpha = g^T g / (g^T Q g + eps g^T g), Q = J^T J + lambda I
                   phi <- phi - exp(log_step) * alpha * g
                   eps (`alpha_eps`, DiMP's form; the paper's Appendix A sets it to 0.01)
                   damps the step where g^T Q g is small next to g^T g.

`sd_gn_step` computes J^T r with the VJP of the (linear in phi) convolution and
J g with one more convolution: no explicit Jacobian. `optimize_filter` runs the
steps in a `lax.scan` with a static trip count, so `jax.grad` differentiates
through every step (the outer loss trains the features, the residual
functions and the step length through the inner loop).
"""
import dataclasses
import functools
import math
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

# Floor of the step-length denominator (a NaN guard, not the damping `alpha_eps`).
ALPHA_DEN_MIN = 1e-8


# --------------------------------------------------------------------------
# Pure functions of the inner loop.


def apply_filter(feats, filt):
  """Scores of features (..., H, W, C) under a filter (k, k, C, A): (..., H, W, A).

  'SAME' cross-correlation computed as ONE contraction of the features with
  all k*k taps, ``y[h, w, u, v] = x[h, w] . phi[u, v]``, followed by k*k
  shifted adds of ``y`` (`tap_sum`). Not `lax.conv_general_dilated`: vmapped over
  per-sequence filters (the batched inner loop, batched tracking) a
  convolution becomes a grouped convolution, which XLA's CPU backend runs
  ~100x slower; and one matrix product instead of k*k matrix-vector products
  over the features is another 10-40x on CPU (benchmarks/RESULTS.md, issue 7).
  """
  kh, kw = filt.shape[0], filt.shape[1]
  return tap_sum(jnp.einsum("...hwc,uvca->...hwuva", feats, filt), kh, kw)


def _tap_sum(y, kh, kw):
  h, w = y.shape[-5], y.shape[-4]
  pad = [(0, 0)] * (y.ndim - 5) + [(kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0), (0, 0),
                                   (0, 0)]
  yp = jnp.pad(y, pad)
  out = jnp.zeros(y.shape[:-5] + (h, w, y.shape[-1]), y.dtype)
  for u in range(kh):
    for v in range(kw):
      out = out + yp[..., u:u + h, v:v + w, u, v, :]
  return out


def _tap_spread(g, kh, kw):
  h, w = g.shape[-3], g.shape[-2]
  pad = [(0, 0)] * (g.ndim - 3) + [(kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)]
  gp = jnp.pad(g, pad)
  rows = [jnp.stack([gp[..., kh - 1 - u:kh - 1 - u + h, kw - 1 - v:kw - 1 - v + w, :]
                     for v in range(kw)], axis=-2) for u in range(kh)]
  return jnp.stack(rows, axis=-3)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def tap_sum(y, kh: int, kw: int):
  """``out[h, w] = sum_{u,v} y[h + u - kh//2, w + v - kw//2, u, v]`` (zero outside the map).

  y: (..., H, W, kh, kw, A) -> (..., H, W, A). Linear; its transpose is `tap_spread`.
  Both carry each other as their VJP: autodiff of the slices-of-a-pad written out
  here would transpose every one of the k*k slices into a pad to the full
  (..., H, W, kh, kw, A) shape and add them (the inner loop is differentiated to
  second order, so that happened at every level); `tap_spread` builds the same
  cotangent as one stack of k*k shifted copies of the small (..., H, W, A) map.
  With it the `tiny` training step went from 0.812 to 0.773 s on 2 CPU cores
  (measured 2026-12-01). Being `custom_vjp`s, neither supports
  forward-mode autodiff (`jax.jvp`, `jax.jacfwd`); reverse mode to any order does.
  """
  return _tap_sum(y, kh, kw)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def tap_spread(g, kh: int, kw: int):
  """Transpose of `tap_sum`: (..., H, W, A) -> (..., H, W, kh, kw, A),
  ``out[h, w, u, v] = g[h - u + kh//2, w - v + kw//2]`` (zero outside the map)."""
  return _tap_spread(g, kh, kw)


tap_sum.defvjp(lambda y, kh, kw: (_tap_sum(y, kh, kw), None),
               lambda kh, kw, _, g: (tap_spread(g, kh, kw),))
tap_spread.defvjp(lambda g, kh, kw: (_tap_spread(g, kh, kw), None),
                  lambda kh, kw, _, d: (tap_sum(d, kh, kw),))


def score_activation(s, mask):
  """m s + (1 - m) max(0, s) (Eq. 7) and its derivative w.r.t. s."""
  act = mask * s + (1. - mask) * jax.nn.relu(s)
  dact = mask + (1. - mask) * (s > 0).astype(s.dtype)
  return act, dact


def residual(filt, feats, label, mask, weight, beta):
  """Eq. 7 residual r (M, H, W, A) of the filter on the samples."""
  s = apply_filter(feats, filt)
  act, _ = score_activation(s, mask)
  sw = weight * jnp.sqrt(beta)[:, None, None, None]
  return sw * (act - label)


def inner_objective(filt, feats, label, mask, weight, beta, reg):
  """L(phi) = 1/2 ||r||^2 + lambda/2 ||phi||^2."""
  r = residual(filt, feats, label, mask, weight, beta)
  return 0.5 * jnp.sum(r * r) + 0.5 * reg * jnp.sum(filt * filt)


def sd_gn_step(filt, feats, label, mask, weight, beta, step_length, reg, alpha_eps=0.):
  """One steepest-descent Gauss-Newton step (Eq. 8), damped by `alpha_eps`.

  alpha = ||g||^2 / max(||J g||^2 + (lambda + alpha_eps) ||g||^2, 1e-8), as DiMP's
  `DiMPSteepestDescentGN` (alpha_eps 0 there by default, 0.01 in the DuML paper).

  Returns:
    (new filter, alpha, objective value before the step).
  """
  s, conv_vjp = jax.vjp(lambda f: apply_filter(feats, f), filt)
  act, dact = score_activation(s, mask)
  sw = weight * jnp.sqrt(beta)[:, None, None, None]
  r = sw * (act - label)
  grad = conv_vjp(sw * dact * r)[0] + reg * filt
  jg = sw * dact * apply_filter(feats, grad)
  gg = jnp.sum(grad * grad)
  den = jnp.sum(jg * jg) + (reg + alpha_eps) * gg
  alpha = gg / jnp.maximum(den, ALPHA_DEN_MIN)
  loss = 0.5 * jnp.sum(r * r) + 0.5 * reg * jnp.sum(filt * filt)
  return filt - step_length * alpha * grad, alpha, loss


def optimize_filter(filt, feats, label, mask, weight, beta, step_length, reg,
                    num_iter: int, checkpoint: bool = False, unroll: bool = False,
                    alpha_eps=0.):
  """`num_iter` (static) SD-GN steps in a `lax.scan`.

  `unroll` unrolls the scan. With `apply_filter` written as contractions the
  rolled loop is as fast or faster on CPU (10 steps over a 50-sample memory:
  49 ms rolled vs 134 ms unrolled) and compiles ~5x faster; XLA's CPU
  convolutions, by contrast, ran ~8x slower inside a while loop.

  Returns:
    final filter, all iterates (num_iter, k, k, C, A) and the objective before
    each step (num_iter,).
  """
  def step(f, _):
    f2, _, loss = sd_gn_step(f, feats, label, mask, weight, beta, step_length, reg, alpha_eps)
    return f2, (f2, loss)
  if checkpoint:
    step = jax.checkpoint(step)
  if num_iter == 0:
    return filt, filt[None][:0], jnp.zeros((0,), filt.dtype)
  final, (iterates, losses) = lax.scan(step, filt, None, length=num_iter, unroll=unroll)
  return final, iterates, losses


def filter_iterates(filt, feats, label, mask, weight, beta, step_length, reg,
                    num_iter: int, checkpoint: bool = False, alpha_eps=0.):
  """phi^(0..T) (T+1, k, k, C, A): the initial filter and its `num_iter` SD-GN iterates.

  What the sequence-wise outer loss scores on the query frames (DuML-nano's
  meta-training; the same as `DuML.forward_sequence`'s inner solve).
  """
  _, iterates, _ = optimize_filter(filt, feats, label, mask, weight, beta, step_length, reg,
                                   num_iter, checkpoint, alpha_eps=alpha_eps)
  return jnp.concatenate([filt[None], iterates], axis=0)


def optimize_filter_masked(filt, feats, label, mask, weight, beta, step_length, reg,
                           num_iter, max_iter: int, unroll: bool = False, alpha_eps=0.):
  """Like `optimize_filter` with a traced `num_iter` <= static `max_iter`.

  Steps with index >= num_iter leave the filter unchanged; used by the
  tracker, whose iteration count depends on device values.
  """
  def step(f, i):
    f2, _, _ = sd_gn_step(f, feats, label, mask, weight, beta, step_length, reg, alpha_eps)
    return jnp.where(i < num_iter, f2, f), None
  final, _ = lax.scan(step, filt, jnp.arange(max_iter), unroll=unroll)
  return final


# --------------------------------------------------------------------------
# Distance maps and triangular basis functions.


def distance_map(grid_size: int, centres):
  """Euclidean distance (cells) of each cell of a grid to `centres` (..., 2) = (x, y)."""
  idx = jnp.arange(grid_size, dtype=jnp.float32)
  dx = idx[None, :] - centres[..., 0, None, None]
  dy = idx[:, None] - centres[..., 1, None, None]
  return jnp.sqrt(dx * dx + dy * dy)


def triangular_basis(dist, num_bins: int, delta: float):
  """rho_k(d) = max(0, 1 - |d / delta - k|), the last bin a ramp to infinity: (..., N)."""
  d = dist[..., None] / delta
  k = jnp.arange(num_bins, dtype=dist.dtype)
  rho = jnp.maximum(0., 1. - jnp.abs(d - k))
  last = jnp.clip(1. + d[..., 0] - (num_bins - 1), 0., 1.)
  return rho.at[..., -1].set(last)


def box_centre_to_cell(centre_px, stride: int, offset: float = 0.):
  """Crop-pixel centre (continuous coords) -> feature-cell coordinates (cell j at pixel
  index s j + offset; offset 7 for the dilated ResNet-50)."""
  return (centre_px - 0.5 - offset) / stride


# --------------------------------------------------------------------------
# Modules.


def instance_l2_norm(x, scale, eps=1e-5):
  """DiMP's InstanceL2Norm over (H, W, C) of each sample."""
  n = x.shape[-3] * x.shape[-2] * x.shape[-1]
  ss = jnp.sum(x * x, axis=(-3, -2, -1), keepdims=True)
  return x * (scale * jnp.sqrt(n / (ss + eps)))


def identity_conv_init(key, shape, dtype=jnp.float32):
  """Conv kernel (kh, kw, C_in, C_out) passing channel i to output i (i < min(C_in, C_out)).

  A closed-form start for the online projections on pretrained features (the
  DuML-nano online branch starts as the L2-normalised NanoTrack features).
  """
  del key
  kh, kw, cin, cout = shape
  n = min(cin, cout)
  k = jnp.zeros(shape, dtype)
  return k.at[kh // 2, kw // 2, jnp.arange(n), jnp.arange(n)].set(1.)


class OnlineFeatures(nn.Module):
  """Levels fused by learned weights beta (Eq. 3), 3x3 conv, instance L2 norm.

  `num_levels` = 1 for a single-level backbone (NanoTrack): the fusion weight
  is then the constant 1. `kernel_init` is the projection's initialiser
  (flax's default, or `identity_conv_init`).

  The fusion and the projection compute in `dtype`; the output (normalised
  in float32) is float32 whatever `dtype`: the online branch -- the SD-GN
  inner loop (Eq. 8 step lengths), the sample memory, the online scores --
  runs in float32.
  """
  feature_dim: int
  filter_size: int
  num_levels: int = 3
  kernel_init: Callable = nn.linear.default_kernel_init
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, feats):
    beta = self.param("fusion_weights", nn.initializers.ones, (self.num_levels,))
    w = jax.nn.softmax(beta).astype(self.dtype)
    fused = sum(w[i] * f.astype(self.dtype) for i, f in enumerate(feats[:self.num_levels]))
    x = nn.Conv(self.feature_dim, (3, 3), padding="SAME", use_bias=False,
                kernel_init=self.kernel_init, dtype=self.dtype, name="proj")(fused)
    return instance_l2_norm(x.astype(jnp.float32),
                            math.sqrt(1. / (self.feature_dim * self.filter_size ** 2)))


def adaptive_avg_pool(x, out_size: int):
  """PyTorch-style adaptive average pooling of (..., H, W, C) to out_size^2."""
  def matrix(n):
    rows = []
    for i in range(out_size):
      a, b = (i * n) // out_size, -(-((i + 1) * n) // out_size)
      rows.append([1. / (b - a) if a <= j < b else 0. for j in range(n)])
    return jnp.asarray(rows, x.dtype)
  ph, pw = matrix(x.shape[-3]), matrix(x.shape[-2])
  return jnp.einsum("ih,...hwc,jw->...ijc", ph, x, pw)


class FilterInitializer(nn.Module):
  """phi^(0): template online features, 3x3 conv, the target region pooled to k x k.

  The target region is the centred `target_cells` x `target_cells` crop of the
  template grid (with context 0.5 the target spans about half the template),
  adaptively average-pooled (paper Appendix A, instead of PrRoI pooling), and
  the same filter is used for each of the A outputs (`target_cells` None:
  half the template grid, 8 of 16 for a 127 template). For NanoTrack's stride
  16 the template grid is 8x8 and the target about 4 cells (`target_cells`
  = 4). `kernel_init` as in `OnlineFeatures`. The conv computes in `dtype`,
  the pooling and the filter are float32 (the SD-GN loop's precision).
  """
  filter_size: int
  num_anchors: int
  target_cells: Optional[int] = None     # None: half the template grid
  kernel_init: Callable = nn.linear.default_kernel_init
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z_online):
    c = z_online.shape[-1]
    x = nn.Conv(c, (3, 3), padding="SAME", kernel_init=self.kernel_init, dtype=self.dtype,
                name="conv")(z_online).astype(jnp.float32)
    t = x.shape[-3] // 2 if self.target_cells is None else self.target_cells
    s = (x.shape[-3] - t) // 2
    x = x[..., s:s + t, s:s + t, :]
    f = adaptive_avg_pool(x, self.filter_size)
    return jnp.repeat(f[..., None], self.num_anchors, axis=-1)


class ResidualFunctions(nn.Module):
  """Learned label y_c, mask m_c and spatial weight v_c (Eq. 7), step length and regulariser.

  Each map is a linear combination of triangular basis functions of the
  distance to the target centre; label initialised as a Gaussian
  (``exp(-d^2 / 2 sigma^2)`` minus its minimum), mask as
  ``sigmoid(f tanh((r - d) / 2))``, spatial weight as ones.
  """
  num_bins: int = 100
  bin_displacement: float = 0.2
  label_sigma: float = 2.0
  mask_init_factor: float = 3.0
  mask_init_radius: float = 4.0
  init_step_length: float = 1.0
  init_filter_reg: float = 0.1
  min_filter_reg: float = 1e-3

  def _bin_centres(self):
    return jnp.arange(self.num_bins, dtype=jnp.float32) * self.bin_displacement

  @nn.compact
  def __call__(self, dist):
    d = self._bin_centres()

    def label_init(_, shape):
      g = jnp.exp(-0.5 * (d / self.label_sigma) ** 2)
      return (g - jnp.min(g)).reshape(shape)

    def mask_init(_, shape):
      return (self.mask_init_factor * jnp.tanh((self.mask_init_radius - d) / 2.)).reshape(shape)

    w_label = self.param("label_weights", label_init, (self.num_bins,))
    w_mask = self.param("mask_weights", mask_init, (self.num_bins,))
    w_spatial = self.param("spatial_weights", nn.initializers.ones, (self.num_bins,))
    log_step = self.param("log_step_length",
                          nn.initializers.constant(math.log(self.init_step_length)), ())
    filter_reg = self.param("filter_reg", nn.initializers.constant(self.init_filter_reg), ())
    rho = triangular_basis(dist, self.num_bins, self.bin_displacement)
    maps = dict(label=rho @ w_label, mask=jax.nn.sigmoid(rho @ w_mask),
                weight=rho @ w_spatial)
    reg = jnp.maximum(filter_reg * filter_reg, self.min_filter_reg ** 2)
    return maps, jnp.exp(log_step), reg


@dataclasses.dataclass(frozen=True)
class OnlineSpec:
  """Hyper-parameters of the online branch (config `model.online_cfg`); the
  residual functions' defaults are `ResidualFunctions`' own."""
  feature_dim: int = 256
  filter_size: int = 5
  train_iters: int = 5
  num_dist_bins: int = ResidualFunctions.num_bins
  bin_displacement: float = ResidualFunctions.bin_displacement
  label_sigma: float = ResidualFunctions.label_sigma
  mask_init_factor: float = ResidualFunctions.mask_init_factor
  mask_init_radius: float = ResidualFunctions.mask_init_radius
  init_step_length: float = ResidualFunctions.init_step_length
  init_filter_reg: float = ResidualFunctions.init_filter_reg
  min_filter_reg: float = ResidualFunctions.min_filter_reg
  checkpoint_steps: bool = False
  # Eq. 8's damping epsilon (`sd_gn_step`); 0 = undamped, the value before the key existed.
  alpha_eps: float = 0.


def residual_functions(spec: OnlineSpec) -> ResidualFunctions:
  """The `ResidualFunctions` module of an `OnlineSpec`."""
  return ResidualFunctions(spec.num_dist_bins, spec.bin_displacement, spec.label_sigma,
                           spec.mask_init_factor, spec.mask_init_radius,
                           spec.init_step_length, spec.init_filter_reg, spec.min_filter_reg)


def online_scores(filt, x_online, crop: Optional[int] = 4, size: Optional[int] = None):
  """Scores of search features (B, G, G, C) under per-sample filters (B, k, k, C, A).

  Returns the map cropped to cells ``[crop, G - crop + 1)`` (32x32 -> [4:29],
  25x25; 40x40 for a 319 search -> 33x33), aligned with the offline grid to
  within one pixel (see `duml_jax/models/duml.py`); ``crop=None`` keeps the
  full grid. `size` (default G - 2 crop + 1) gives the window's cells ``[crop, crop +
  size)``: 25 from cell 3 of the dilated backbone's 31x31 map.
  """
  s = jax.vmap(apply_filter)(x_online, filt)
  if crop is None:
    return s
  g = s.shape[-2]
  n = g - 2 * crop + 1 if size is None else size
  return s[..., crop:crop + n, crop:crop + n, :]

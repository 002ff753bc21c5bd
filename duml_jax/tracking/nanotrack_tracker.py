"""NanoTrack's tracking loop as pure jitted functions (crop on device).

Per frame (NanoTrack's python tracker and OpenCV's ``cv2.TrackerNano``,
modules/video/src/tracking/tracker_nano.cpp, read for the formulas):

1. Search crop: a square of side ``s_x = s_z * 255 / 127`` around the last
   centre, where ``s_z = sqrt((w + a (w + h)) (h + a (w + h)))`` is the
   context-padded target size (a = ``context_amount``), resized to 255x255
   (bilinear; pixels outside the frame take the channel mean). The scale
   factor crop/frame is ``scale_z = 127 / s_z``.
2. Network: search features -> head with the template features of frame 0
   -> foreground probability ``softmax(cls)[..., 1]`` and distances
   ``(l, t, r, b)`` from the grid points ``p_ij = ((j, i) - 8) * 16`` (crop
   pixels, relative to the crop centre): box centre ``p + ((r - l), (b - t)) / 2``,
   size ``(l + r, t + b)``.
3. Penalties: ``s_c = max(q, 1/q)`` with ``q = S(pred) / S(target in crop)``,
   ``S(w, h) = sqrt((w + (w+h)/2) (h + (w+h)/2))``; ``r_c = max(q, 1/q)`` with
   ``q = (w/h)_target / (w/h)_pred``; ``penalty = exp(-(r_c s_c - 1) k)``;
   ``pscore = (1 - wi) penalty * score + wi * window`` (Hanning window).
4. ``best = argmax pscore``; centre moves by the best box's offset / scale_z;
   size is smoothed with ``lr' = penalty * score * lr`` at ``best``; the centre
   is clipped to the frame and the size to ``[min_size, frame side]``.

Crops run on device, inside the jitted step (no host round trip): with
``opencv_compat`` `crop_window_opencv` emulates OpenCV bit for bit (integer
window of a mean-padded frame, uint8 INTER_LINEAR resize in 11-bit fixed
point), because one grey level of difference in ~10% of the crop pixels
(plain float bilinear + rounding) moves the box by ~0.05 px per frame, which
the int-truncated boxes and the argmax amplify into visibly different tracks
within 20 frames; with the exact crop the JAX tracker reports the same
(truncated) boxes as ``cv2.TrackerNano`` on every frame of the OTB sample.
Otherwise `crop_window` samples the exact continuous window bilinearly.
The host wrapper `NanoTracker` can instead crop on the host with OpenCV
(``crop='host'``: `crop_window_host`, `channel_mean_host`, the same pixels)
and send only the crop to a jitted network + post-processing step; the pure
functions `init` / `track` always crop on device.

``cfg.opencv_compat = True`` (the `default_config`) reproduces
``cv2.TrackerNano`` including its quirks, listed so they can be switched off:
integer crop sizes (template ``int(s_z)``; search ``int(2 * s_z)`` because
``255 / 127`` is an integer division there, with ``w + h`` truncated to int
in ``s_z``); crop origin ``int(c) - (size + 1) // 2`` with edge-clamped
bilinear resize inside the crop; the scale-penalty reference ``S(cx, cy)``
of the target *centre* (not its size); the window
``sqrt(hann x hann)`` (``cv2.createHanningWindow``); padding with each frame's
own mean. With ``opencv_compat = False`` the crop is the exact continuous
window of side ``s`` centred on the target, the reference is the target size
in the crop, the window is ``hann x hann`` and the padding value is the first
frame's mean (NanoTrack's python tracker, without its rounding of crop sizes).

Channels: frames are uint8 RGB (`duml_jax.data.frames.read_frame`).
``cfg.network_channels`` is the order the *network* receives: NanoTrack was
trained on BGR (cv2.imread) frames, but ``cv2.TrackerNano`` called on BGR
frames gives the network RGB (``blobFromImage(..., swapRB=true)``), so the
OpenCV-reproducing config uses 'rgb'.

Boxes are ``[x, y, w, h]`` floats in the library's 0-based continuous
convention (`duml_jax.boxes`); centre ``x + w / 2``. (cv2 takes and returns
``int`` boxes: ``int(cx - w/2), int(cy - h/2), int(w), int(h)``.)
"""
import functools
from typing import NamedTuple

import cv2
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from duml_jax.models import nanotrack as nt

# XLA compile options of every jitted step here. On CPU, XLA's YNNPACK fusions are kept
# for reductions only: its 1x1 convolutions / dots of NanoTrack's shapes were 3-10x
# slower than XLA's default dots (block 2's 4096x16x72 expansion 0.39 vs ~0.05 ms), and
# without YNNPACK for the reductions the squeeze-excitation means are slower. Backbone
# 2.40 -> 1.68 ms, head 1.02 -> 0.71 ms (benchmarks/RESULTS.md, 2026-12-01 14:16). Other
# backends ignore xla_cpu_* options.
COMPILER_OPTIONS = {'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_REDUCE'}


def jit(fun=None, **kwargs):
  """`jax.jit` with `COMPILER_OPTIONS` (also a decorator factory: ``@jit(static_argnames=...)``)."""
  if fun is None:
    return functools.partial(jit, **kwargs)
  return jax.jit(fun, compiler_options=COMPILER_OPTIONS, **kwargs)



def default_config():
  """Hyper-parameters of ``cv2.TrackerNano`` (OpenCV 4.7+ / 5.0)."""
  return ml_collections.ConfigDict(dict(
      version='v2',
      exemplar_size=127,
      instance_size=255,
      total_stride=16,
      score_size=16,
      context_amount=0.5,
      window_influence=0.455,
      penalty_k=0.055,
      lr=0.37,
      min_size=10.,
      network_channels='rgb',
      opencv_compat=True,
  ))


def nanotrack_v2_config():
  """NanoTrack's own v2 values (SiamTrackers models/config/configv2.yaml)."""
  cfg = default_config()
  cfg.window_influence = 0.49
  cfg.penalty_k = 0.15
  cfg.lr = 0.385
  cfg.network_channels = 'bgr'
  cfg.opencv_compat = False
  return cfg


class _Cfg(NamedTuple):
  """Hashable copy of the config (a static argument of the jitted steps)."""
  version: str
  exemplar_size: int
  instance_size: int
  total_stride: int
  score_size: int
  context_amount: float
  window_influence: float
  penalty_k: float
  lr: float
  min_size: float
  network_channels: str
  opencv_compat: bool


def freeze(cfg):
  """Hashable `_Cfg` of a config dict (checked keys and values); a `_Cfg` as is."""
  if isinstance(cfg, _Cfg):
    return cfg
  d = dict(cfg)
  for k in d:
    if k not in _Cfg._fields:
      raise KeyError(f'nanotrack tracker config: unknown key {k!r}')
  missing = [k for k in _Cfg._fields if k not in d]
  if missing:
    raise KeyError(f'nanotrack tracker config: missing keys {missing}')
  if d['network_channels'] not in ('rgb', 'bgr'):
    raise ValueError("nanotrack tracker config: network_channels must be 'rgb' "
                     f"or 'bgr', got {d['network_channels']!r}")
  if d['version'] not in nt.VERSIONS:
    raise ValueError(f'nanotrack tracker config: version {d["version"]!r} not '
                     f'in {nt.VERSIONS}')
  return _Cfg(**{k: d[k] for k in _Cfg._fields})


_freeze = freeze  # the name the NanoTrack tests use


class NanoState(NamedTuple):
  """Tracker state (a pytree).

  Attributes:
    z_feat: (1, 8, 8, C) template features of the first frame.
    center: (2,) target centre (cx, cy), 0-based continuous pixels.
    size: (2,) target (w, h).
    mean: (3,) padding value (first frame's rounded channel mean, in the
      frame's RGB order; unused when opencv_compat pads with each frame's).
  """
  z_feat: jnp.ndarray
  center: jnp.ndarray
  size: jnp.ndarray
  mean: jnp.ndarray


def channel_mean(frame):
  """Per-channel mean of an (H, W, 3) uint8 frame rounded to an integer, half to even
  (``cv2.mean`` then the uint8 border value of ``copyMakeBorder``), as float32 (3,).

  Exact: integer sums (uint32, frames up to 16.8 M pixels) and an integer
  rounding of sum / count, no float32 accumulation.
  """
  h, w, c = frame.shape
  n = h * w
  if n * 255 >= 2 ** 32:
    raise ValueError(f"channel_mean: a {h}x{w} frame overflows the uint32 sums")
  rows = jnp.sum(frame.reshape(h, w * c).astype(jnp.uint32), axis=0)   # contiguous: fast
  total = jnp.sum(rows.reshape(w, c), axis=0)
  q, r = total // n, total % n
  up = (2 * r > n) | ((2 * r == n) & (q % 2 == 1))
  return (q + up.astype(jnp.uint32)).astype(jnp.float32)


def _computed_if(pred, fn):
  """``fn()`` where `pred` holds, zeros of its shapes otherwise, as a conditional.

  XLA runs only the branch taken, and a conditional is a fusion boundary:
  its result is computed once rather than inlined into every element of its
  consumers, which XLA does with cheap elementwise producers (the crop's
  255-long tap tables were recomputed for each of its 195k output values:
  2.6 ms instead of 1.0 ms per 255 crop, measured on CPU).
  """
  zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(fn))
  return jax.lax.cond(pred, fn, lambda: zeros)


def crop_window(frame, x0, y0, side, out_size, fill):
  """Bilinear resample of the square window [x0, x0+side)^2 to out_size^2.

  Output pixel i samples frame pixel coordinate ``x0 + (i + .5) side / out - .5``
  (pixel k centred at k; cv2.resize's mapping), so the window may start and
  end at fractional pixels. Frame pixels outside the frame read as ``fill``;
  the result is rounded and clipped to 0..255 like a uint8 image.

  Args:
    frame: (H, W, 3) array. x0, y0, side: scalars (traced is fine).
    out_size: static int. fill: (3,).
  Returns:
    (out_size, out_size, 3) float32.
  """
  frame = frame.astype(jnp.float32)
  h, w = frame.shape[:2]
  i = jnp.arange(out_size, dtype=jnp.float32)

  def taps(origin, n):
    src = origin + (i + 0.5) * side / out_size - 0.5
    lo = jnp.floor(src)
    frac = src - lo
    lo = lo.astype(jnp.int32)
    hi = lo + 1
    return (jnp.clip(lo, 0, n - 1), (lo >= 0) & (lo < n),
            jnp.clip(hi, 0, n - 1), (hi >= 0) & (hi < n), frac)

  ylo, yvlo, yhi, yvhi, fy = taps(y0, h)
  xlo, xvlo, xhi, xvhi, fx = taps(x0, w)
  rows_lo = jnp.where(yvlo[:, None, None], frame[ylo], fill)
  rows_hi = jnp.where(yvhi[:, None, None], frame[yhi], fill)
  rows = rows_lo * (1. - fy)[:, None, None] + rows_hi * fy[:, None, None]
  cols_lo = jnp.where(xvlo[None, :, None], rows[:, xlo], fill)
  cols_hi = jnp.where(xvhi[None, :, None], rows[:, xhi], fill)
  out = cols_lo * (1. - fx)[None, :, None] + cols_hi * fx[None, :, None]
  return jnp.clip(jnp.round(out), 0., 255.)


def _float32_split(num, den):
  """floor and fraction of ``float32(num / den)`` for int32 num, den > 0.

  OpenCV computes the resize source coordinate in double and casts it to
  float, so the fraction is quantised to the float32 spacing of the
  coordinate (2^-17 near 100). XLA's float division may be one ulp off, which
  flips the rounding of a weight now and then; this computes the correctly
  rounded float32 with integer long division instead.
  """
  lo = jnp.floor_divide(num, den)
  r = num - lo * den  # 0 <= r < den
  q = jnp.zeros_like(r)
  rem = r
  for _ in range(3):  # q = floor(r 2^24 / den), rem its remainder
    rem = rem << 8
    q = (q << 8) | (rem // den)
    rem = rem % den
  # float32 keeps 23 - e fractional bits for values in [2^e, 2^(e+1)).
  e = 31 - jax.lax.clz(jnp.maximum(lo, 1))
  t = e + 1  # bits of q to drop
  q_trunc = q >> t
  dropped = q & ((1 << t) - 1)
  half = 1 << (t - 1)
  up = (dropped > half) | ((dropped == half) & ((rem > 0) | ((q_trunc & 1) == 1)))
  qk = q_trunc + up.astype(jnp.int32)
  frac_big = jnp.ldexp(qk.astype(jnp.float32), -(23 - e))
  # Below 1 float32 is fine enough (no rounding tie can be reached there).
  frac = jnp.where(lo >= 1, frac_big, r.astype(jnp.float32) / den)
  carry = frac >= 1.
  return lo + carry.astype(jnp.int32), jnp.where(carry, 0., frac)


def _resize_coeffs(side, out_size, clamp_frac):
  """cv2.resize INTER_LINEAR taps for one axis: (idx0, idx1, w0, w1).

  ``f = (i + .5) side / out - .5`` (as float32), taps ``floor(f)`` and
  ``floor(f) + 1`` clipped to ``[0, side - 1]``, weights
  ``round((1 - frac) 2048)``, ``round(frac 2048)`` (11-bit fixed point).
  Along x, OpenCV also zeroes the fraction where a tap falls outside
  (``clamp_frac``); along y it does not.
  """
  side = jnp.asarray(side).astype(jnp.int32)
  i = jnp.arange(out_size, dtype=jnp.int32)
  lo, frac = _float32_split((2 * i + 1) * side - out_size, 2 * out_size)
  if clamp_frac:
    frac = jnp.where((lo < 0) | (lo >= side - 1), 0., frac)
    lo = jnp.clip(lo, 0, side - 1)
  w0 = jnp.round((1. - frac) * 2048.).astype(jnp.int32)
  w1 = jnp.round(frac * 2048.).astype(jnp.int32)
  return jnp.clip(lo, 0, side - 1), jnp.clip(lo + 1, 0, side - 1), w0, w1


def _window_taps(origin, side, out_size, n, clamp_frac):
  """Indices into the frame padded by one pixel on each side (`crop_window_opencv`) of
  the two taps of every output pixel along one axis, and their 11-bit weights.

  A tap outside the frame lands on the padding (index 0 or n + 1), which holds the
  fill value.
  """
  lo, hi, w0, w1 = _resize_coeffs(side, out_size, clamp_frac)
  return jnp.clip(origin + lo + 1, 0, n + 1), jnp.clip(origin + hi + 1, 0, n + 1), w0, w1


def crop_window_opencv(frame, x0, y0, side, out_size, fill):
  """cv2's crop: ``resize(pad(frame, fill)[y0:y0+side, x0:x0+side], out)``.

  Bit-exact emulation of OpenCV's uint8 INTER_LINEAR resize (horizontal pass
  ``S0 w0 + S1 w1``, vertical pass ``((H0 >> 4) b0 >> 16) + ((H1 >> 4) b1 >> 16)
  + 2 >> 2``, as its SIMD path computes it; checked against ``cv2.resize`` in
  the tests) of the integer window of a frame padded with ``fill``.

  The frame gets a one-pixel border of ``fill`` and every tap index is
  clipped onto it, so that taps outside the frame read ``fill`` without a
  select per pixel (0.45 ms instead of 1.2 ms per 255 crop on CPU, measured).

  Args:
    frame: (H, W, 3) uint8/int. x0, y0, side: integer-valued scalars.
    out_size: static int. fill: (3,) rounded pad value.
  Returns:
    (out_size, out_size, 3) float32 with integer values 0..255.
  """
  h, w = frame.shape[:2]
  x0 = jnp.asarray(x0).astype(jnp.int32)
  y0 = jnp.asarray(y0).astype(jnp.int32)
  side = jnp.asarray(side)
  (xl, xh, a0, a1), (yl, yh, b0, b1) = _computed_if(side > 0, lambda: (
      _window_taps(x0, side, out_size, w, clamp_frac=True),
      _window_taps(y0, side, out_size, h, clamp_frac=False)))
  border = jnp.broadcast_to(fill.astype(frame.dtype), (h + 2, w + 2, frame.shape[2]))
  padded = jax.lax.dynamic_update_slice(border, frame, (1, 1, 0))

  def hpass(ys):
    rows = padded[ys]
    return (rows[:, xl].astype(jnp.int32) * a0[None, :, None]
            + rows[:, xh].astype(jnp.int32) * a1[None, :, None])

  h0, h1 = hpass(yl), hpass(yh)
  out = ((((h0 >> 4) * b0[:, None, None]) >> 16)
         + (((h1 >> 4) * b1[:, None, None]) >> 16) + 2) >> 2
  return jnp.clip(out, 0, 255).astype(jnp.float32)


def crop_origin(cfg, center, side):
  """(x0, y0) top-left of the crop window (continuous frame coordinates):
  OpenCV's ``int(c) - (side + 1) / 2`` in integer arithmetic, or ``c - side / 2``.

  Crop pixel coordinate u' (continuous) is frame coordinate ``x0 + u' side / out``.
  """
  if cfg.opencv_compat:
    return jnp.floor(center) - jnp.floor((side + 1.) / 2.)
  return center - side / 2.


def network_input(cfg, patch):
  """(1, out, out, 3) float32 network input of an (out, out, 3) crop in the frame's
  RGB order (device or host crop; channels reversed for ``network_channels='bgr'``)."""
  patch = patch.astype(jnp.float32)
  if cfg.network_channels == 'bgr':
    patch = patch[..., ::-1]
  return patch[None]


def _crop(cfg, frame, center, side, out_size, fill):
  """Network input (1, out, out, 3) for the square window of `side` at
  `center` (OpenCV's integer window and resize, or the exact continuous
  window)."""
  x0, y0 = crop_origin(cfg, center, side)
  window = crop_window_opencv if cfg.opencv_compat else crop_window
  # Materialised before the network: XLA would fuse the crop into the stem's
  # padding loop, which ran it 2.3x slower (0.78 vs 0.34 ms, measured on CPU).
  patch = _computed_if(side > 0, lambda: window(frame, x0, y0, side, out_size, fill))
  return network_input(cfg, patch)


def hanning_window(cfg):
  """(S, S) cosine window: hann x hann, or its sqrt (OpenCV)."""
  n = cfg.score_size
  hann = 0.5 - 0.5 * jnp.cos(2. * jnp.pi * jnp.arange(n) / (n - 1))
  win = jnp.outer(hann, hann)
  return jnp.sqrt(win) if cfg.opencv_compat else win


def _size_cal(w, h):
  pad = (w + h) * 0.5
  return jnp.sqrt((w + pad) * (h + pad))


def _change(r):
  return jnp.maximum(r, 1. / r)


def _context_side(cfg, size, truncate_sum):
  s = size[0] + size[1]
  if truncate_sum:
    s = jnp.floor(s)
  wc = size[0] + cfg.context_amount * s
  hc = size[1] + cfg.context_amount * s
  return jnp.sqrt(wc * hc)


def _template_geometry(cfg, box):
  """(center, size, s_z) of the first box [x, y, w, h]: s_z is the template window side."""
  box = box.astype(jnp.float32)
  center = box[:2] + box[2:] / 2.
  size = box[2:]
  s_z = _context_side(cfg, size, truncate_sum=False)
  if cfg.opencv_compat:
    s_z = jnp.floor(s_z)
  return center, size, s_z


def _state_of_template(variables, cfg, z, center, size, mean):
  backbone, _ = nt.build(cfg.version)
  return NanoState(backbone.apply(variables['backbone'], z), center, size, mean)


def template_input(cfg, frame, box):
  """The first frame's template as network input (1, 127, 127, 3), with its centre,
  size and the frame's channel mean (the crop's fill)."""
  center, size, s_z = _template_geometry(cfg, box)
  mean = channel_mean(frame)
  return _crop(cfg, frame, center, s_z, cfg.exemplar_size, mean), center, size, mean


def init_state(variables, cfg, frame, box):
  """`NanoState` of the first frame (unjitted; `init` is its jitted form)."""
  z, center, size, mean = template_input(cfg, frame, box)
  return _state_of_template(variables, cfg, z, center, size, mean)


_init = jit(init_state, static_argnames=('cfg',))


def decode_points(cfg, loc):
  """(S, S, 4) distances -> centre offsets (cx, cy) and sizes (w, h) in crop
  pixels, relative to the crop centre."""
  p = (jnp.arange(cfg.score_size, dtype=jnp.float32)
       - cfg.score_size // 2) * cfg.total_stride
  l, t, r, b = jnp.moveaxis(loc, -1, 0)
  cx = p[None, :] + (r - l) / 2.
  cy = p[:, None] + (b - t) / 2.
  return cx, cy, l + r, t + b


def search_geometry(cfg, size):
  """(s_x, scale_z): search window side (frame pixels) and the template scale
  ``127 / s_z`` (by which NanoTrack converts crop offsets to frame pixels)."""
  s_z = _context_side(cfg, size, truncate_sum=cfg.opencv_compat)
  scale_z = cfg.exemplar_size / s_z
  if cfg.opencv_compat:
    s_x = jnp.floor(s_z * (cfg.instance_size // cfg.exemplar_size))
  else:
    s_x = s_z * cfg.instance_size / cfg.exemplar_size
  return s_x, scale_z


def search_window(cfg, state):
  """(3,) float32 ``[x0, y0, side]`` of the search window around the state's centre:
  OpenCV's integer window (integer-valued), what the host crop cuts (`crop_window_host`)."""
  s_x, _ = search_geometry(cfg, state.size)
  x0, y0 = crop_origin(cfg, state.center, s_x)
  return jnp.stack([x0, y0, s_x])


def search_crop(cfg, state, frame):
  """(1, 255, 255, 3) search crop around the state's centre, s_x, scale_z."""
  s_x, scale_z = search_geometry(cfg, state.size)
  if cfg.opencv_compat:   # each frame's own mean, computed only when the window leaves the frame
    h, w = frame.shape[:2]
    x0, y0 = crop_origin(cfg, state.center, s_x)
    outside = (x0 < 0) | (y0 < 0) | (x0 + s_x > w) | (y0 + s_x > h)
    fill = _computed_if(outside, lambda: channel_mean(frame))
  else:
    fill = state.mean
  x = _crop(cfg, frame, state.center, s_x, cfg.instance_size, fill)
  return x, s_x, scale_z


def foreground(cls):
  """(S, S) foreground probability softmax(cls)[..., 1] of (S, S, 2) logits."""
  return jax.nn.softmax(cls, axis=-1)[..., 1]


def select(cfg, score, loc, state, scale_z, window_influence=None):
  """NanoTrack's penalised arg-max over a (S, S) score map.

  Args:
    score: (S, S) map to select on (foreground probability; DuML-nano's
      fused map).
    loc: (S, S, 4) distances. state: current `NanoState`. scale_z: scalar.
    window_influence: the cosine window's weight, possibly traced (None:
      ``cfg.window_influence``; DuML-nano relaxes it to re-acquire a target).
  Returns:
    best (flat index), penalty (S*S,), boxes (S*S, 4) (cx, cy, w, h) crop
    pixels relative to the crop centre (`decode_points`).
  """
  pcx, pcy, pw, ph = decode_points(cfg, loc)
  tw, th = state.size * scale_z
  if cfg.opencv_compat:
    ref = _size_cal(state.center[0], state.center[1])
  else:
    ref = _size_cal(tw, th)
  s_c = _change(_size_cal(pw, ph) / ref)
  r_c = _change((tw / th) / (pw / ph))
  penalty = jnp.exp(-(r_c * s_c - 1.) * cfg.penalty_k)
  wi = cfg.window_influence if window_influence is None else window_influence
  pscore = penalty * score * (1. - wi) + hanning_window(cfg) * wi
  best = jnp.argmax(pscore.reshape(-1))
  boxes = jnp.stack([pcx, pcy, pw, ph], axis=-1).reshape(-1, 4)
  return best, penalty.reshape(-1), boxes


def move(cfg, state, box_crop, lr, scale_z, frame_hw):
  """New (state, box [x, y, w, h]) from the chosen box (cx, cy, w, h) in crop
  pixels relative to the crop centre and the size smoothing rate lr."""
  h_img, w_img = frame_hw
  cx = state.center[0] + box_crop[0] / scale_z
  cy = state.center[1] + box_crop[1] / scale_z
  w = state.size[0] * (1. - lr) + box_crop[2] / scale_z * lr
  h = state.size[1] * (1. - lr) + box_crop[3] / scale_z * lr
  cx = jnp.clip(cx, 0., w_img)
  cy = jnp.clip(cy, 0., h_img)
  w = jnp.clip(w, cfg.min_size, w_img)
  h = jnp.clip(h, cfg.min_size, h_img)
  center = jnp.stack([cx, cy])
  size = jnp.stack([w, h])
  box = jnp.concatenate([center - size / 2., size])
  return state._replace(center=center, size=size), box


def _track_input(variables, cfg, state, x, scale_z, frame_hw):
  """Network + post-processing on the search input `x` (`network_input`):
  (state, box, score); shared by the device-crop and host-crop steps."""
  backbone, head = nt.build(cfg.version)
  x_feat = backbone.apply(variables['backbone'], x)
  cls, loc = head.apply(variables['head'], state.z_feat, x_feat)
  score = foreground(cls[0])
  best, penalty, boxes = select(cfg, score, loc[0], state, scale_z)
  flat_score = score.reshape(-1)
  lr = penalty[best] * flat_score[best] * cfg.lr
  state, box = move(cfg, state, boxes[best], lr, scale_z, frame_hw)
  return state, box, flat_score[best]


@jit(static_argnames=('cfg',))
def _track(variables, cfg, state, frame):
  x, _, scale_z = search_crop(cfg, state, frame)
  return _track_input(variables, cfg, state, x, scale_z, frame.shape[:2])


def opencv_rect(box):
  """[x, y, w, h] (as `track` returns it, x = cx - w/2 in float32) -> the int
  box cv2.TrackerNano reports for the same state: each value truncated
  toward 0, ``(int(cx - w/2), int(cy - h/2), int(w), int(h))``."""
  return tuple(int(v) for v in np.asarray(box, np.float32))


def init(variables, cfg, frame, box):
  """Start tracking.

  Args:
    variables: {'backbone': ..., 'head': ...} (`duml_jax.convert.nanotrack`).
    cfg: tracker config (`default_config` / `nanotrack_v2_config`).
    frame: (H, W, 3) uint8 RGB.
    box: [x, y, w, h], 0-based continuous pixels.
  Returns:
    NanoState.
  """
  return _init(variables, freeze(cfg), jnp.asarray(frame),
               jnp.asarray(box, jnp.float32))


def track(variables, cfg, state, frame):
  """One frame: returns (state, box [x, y, w, h], score).

  ``score`` is the foreground probability at the chosen location (NanoTrack's
  python tracker's ``best_score``; cv2's ``getTrackingScore`` is the
  penalised, windowed ``pscore`` instead). Jitted; recompiles only for a new
  frame shape or config.
  """
  return _track(variables, freeze(cfg), state, jnp.asarray(frame))


# ------------------------------------------------------------ host crop ----
#
# The same crops computed on the host with OpenCV (what cv2.TrackerNano itself
# calls), for the single-sequence `NanoTracker(..., crop='host')`: only the
# 127 / 255 crop goes to the device, and the jitted steps run the network and
# the post-processing (`_track_input`, shared with the device-crop step). The
# window geometry stays on the device (`search_window`, computed by the step
# from the new state and read back with the box), so that its floors of
# float32 values are the same operations as in the device path.


def channel_mean_host(frame):
  """`channel_mean` on the host: (3,) float32, the per-channel mean of an (H, W, 3)
  uint8 frame rounded to an integer, half to even.

  ``cv2.mean`` (0.04 ms for 640x360 on the 2-core CPU, ~5x faster than the device's
  integer sums); the exact integer sums are recovered from it (its double mean is
  within a few ulps of sum / n, far closer than the 0.5 that separates integer
  sums), then rounded as `channel_mean` rounds, so the two agree exactly, ties
  included.
  """
  h, w = frame.shape[:2]
  n = h * w
  total = np.rint(np.asarray(cv2.mean(frame)[:3], np.float64) * n).astype(np.int64)
  q, r = np.divmod(total, n)
  up = (2 * r > n) | ((2 * r == n) & (q % 2 == 1))
  return (q + up).astype(np.float32)


def aligned_empty(shape, dtype=np.uint8, align=64):
  """An uninitialised numpy array whose data starts on an `align`-byte boundary.

  JAX's CPU client reads such a host buffer passed to a jitted function without
  copying it: 0.008 vs 0.035 ms per call for a 255x255x3 uint8 crop (and 0.07 vs
  0.17 ms with ``jax.device_put``), measured on the 2-core CPU.
  """
  dtype = np.dtype(dtype)
  nbytes = int(np.prod(shape)) * dtype.itemsize
  buf = np.empty(nbytes + align, np.uint8)
  start = (-buf.ctypes.data) % align
  return buf[start:start + nbytes].view(dtype).reshape(shape)


def crop_window_host(frame, x0, y0, side, out_size, fill, out=None):
  """`crop_window_opencv` on the host with OpenCV: the integer window
  ``[x0, x0 + side) x [y0, y0 + side)`` of the frame padded with `fill`
  (``copyMakeBorder`` of the part inside the frame), ``cv2.resize`` INTER_LINEAR
  to out_size^2.

  cv2.TrackerNano pads the whole frame and cuts the window from it; padding
  only the part inside gives the same side x side image with less copying.

  Args:
    frame: (H, W, 3) uint8. x0, y0, side: ints. out_size: int.
    fill: (3,) integer-valued pad value (`channel_mean_host`).
    out: optional (out_size, out_size, 3) uint8 array written in place
      (`aligned_empty`); a new array if None.
  Returns:
    (out_size, out_size, 3) uint8 (`out` when given).
  """
  h, w, c = frame.shape
  if side <= 0:
    if out is None:
      return np.zeros((out_size, out_size, c), np.uint8)
    out[...] = 0
    return out
  xa, xb = max(x0, 0), min(x0 + side, w)
  ya, yb = max(y0, 0), min(y0 + side, h)
  if xa >= xb or ya >= yb:   # nothing of the frame in the window
    window = np.empty((side, side, c), np.uint8)
    window[...] = np.asarray(fill).astype(np.uint8)
  else:
    window = frame[ya:yb, xa:xb]
    pads = (ya - y0, y0 + side - yb, xa - x0, x0 + side - xb)
    if any(pads):
      window = cv2.copyMakeBorder(window, *pads, cv2.BORDER_CONSTANT,
                                  value=tuple(float(v) for v in fill))
  return cv2.resize(window, (out_size, out_size), dst=out, interpolation=cv2.INTER_LINEAR)


def search_crop_host(cfg, frame, window, out=None):
  """The host twin of `search_crop`'s crop: (255, 255, 3) uint8 of the search window
  ``[x0, y0, side]`` (`search_window`), padded with the frame's own mean
  (`channel_mean_host`, computed only when the window leaves the frame)."""
  x0, y0, side = window
  h, w = frame.shape[:2]
  outside = x0 < 0 or y0 < 0 or x0 + side > w or y0 + side > h
  fill = channel_mean_host(frame) if outside else np.zeros(3, np.float32)
  return crop_window_host(frame, x0, y0, side, cfg.instance_size, fill, out)


def _ints(a):
  """A small device array of integer values (a window) as a list of Python ints."""
  return [int(v) for v in np.asarray(a)]


@jit(static_argnames=('cfg',))
def _template_window(cfg, box):
  """(3,) ``[x0, y0, side]`` of the template window of the first box."""
  center, _, s_z = _template_geometry(cfg, box)
  x0, y0 = crop_origin(cfg, center, s_z)
  return jnp.stack([x0, y0, s_z])


def _host_input(cfg, patch, side):
  """`_crop`'s output from a host crop, computed as `_crop` computes it (so that
  XLA compiles what follows alike): a conditional on ``side > 0`` (the window side
  stays used: where ``127 / s_z`` is the only user of a sqrt, XLA rewrites it as
  ``127 * rsqrt``, which moved a box by one float32 ulp, seen on MotorRolling)."""
  return network_input(cfg, _computed_if(side > 0, lambda: patch.astype(jnp.float32)))


@jit(static_argnames=('cfg',))
def _init_from_crop(variables, cfg, patch, box, mean):
  """`init_state` from a host template crop: (state, first search window)."""
  center, size, s_z = _template_geometry(cfg, box)
  state = _state_of_template(variables, cfg, _host_input(cfg, patch, s_z), center, size, mean)
  return state, search_window(cfg, state)


@jit(static_argnames=('cfg', 'frame_hw'))
def _track_crop(variables, cfg, state, patch, frame_hw):
  """`_track` from a host search crop: (state, (8,) [box, score, next search window]),
  one array so that the host reads it back in one transfer."""
  s_x, scale_z = search_geometry(cfg, state.size)
  state, box, score = _track_input(variables, cfg, state, _host_input(cfg, patch, s_x),
                                   scale_z, frame_hw)
  return state, jnp.concatenate([box, score[None], search_window(cfg, state)])


_search_window = jit(search_window, static_argnames=('cfg',))

CROP_MODES = ('device', 'host')


class NanoTracker:
  """Host-side wrapper: ``init(frame, box)``, ``update(frame) -> (box, score)``.

  Frames are uint8 RGB (H, W, 3); boxes are float [x, y, w, h] numpy arrays
  in the 0-based continuous convention.

  ``crop`` (one of `CROP_MODES`): 'device' (default) sends the frame to the
  jitted step, which crops it (`crop_window_opencv` / `crop_window`, the pure
  functions `init` / `track` that vmap and grad users call); 'host' crops on
  the host with OpenCV (`crop_window_host`, `channel_mean_host`; the same
  pixels bit for bit, hence the same boxes) and sends only the crop, which is
  faster on CPU (benchmarks/RESULTS.md). 'host' needs ``opencv_compat``
  (OpenCV has no twin of the continuous crop).
  """

  def __init__(self, variables, cfg=None, crop='device'):
    if crop not in CROP_MODES:
      raise ValueError(f'NanoTracker: crop={crop!r}; allowed: {CROP_MODES}')
    # On the device once: numpy leaves would be copied in at every step.
    self.variables = jax.device_put(variables)
    self.cfg = freeze(default_config() if cfg is None else cfg)
    if crop == 'host' and not self.cfg.opencv_compat:
      raise ValueError("NanoTracker: crop='host' needs opencv_compat=True (the host crop "
                       "is OpenCV's integer window; use crop='device' for the continuous one)")
    self.crop = crop
    # host mode: the search crop's buffer, reused (each step is waited for before the next
    # crop overwrites it)
    self._patch = aligned_empty((self.cfg.instance_size,) * 2 + (3,)) if crop == 'host' else None
    self.state = None

  @property
  def state(self):
    return self._state

  @state.setter
  def state(self, state):
    self._state = state
    self._window = None   # host mode: [x0, y0, side] of the next search crop (of `state`)

  def init(self, frame, box):
    box = jnp.asarray(box, jnp.float32)
    if self.crop == 'device':
      self.state = _init(self.variables, self.cfg, jnp.asarray(frame), box)
      return
    frame = np.asarray(frame)
    x0, y0, side = _ints(_template_window(self.cfg, box))
    mean = channel_mean_host(frame)
    patch = crop_window_host(frame, x0, y0, side, self.cfg.exemplar_size, mean)
    self.state, window = _init_from_crop(self.variables, self.cfg, patch, box, mean)
    self._window = _ints(window)

  def update(self, frame):
    if self.state is None:
      raise RuntimeError('NanoTracker.update called before init')
    if self.crop == 'device':
      self.state, box, score = _track(self.variables, self.cfg, self.state,
                                      jnp.asarray(frame))
      return np.asarray(box, np.float64), float(score)
    frame = np.asarray(frame)
    if self._window is None:   # a state set from outside: its window from the device
      self._window = _ints(_search_window(self.cfg, self.state))
    patch = search_crop_host(self.cfg, frame, self._window, self._patch)
    self.state, out = _track_crop(self.variables, self.cfg, self.state, patch, frame.shape[:2])
    out = np.asarray(out)
    self._window = _ints(out[5:])
    return out[:4].astype(np.float64), float(out[4])

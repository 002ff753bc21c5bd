"""Template / search crops on device (SiamRPN++ conventions, anchors.md 2.1).

Around a target of size (w, h) with context amount a (0.5): p = a (w + h),
the template side is ``s_z = sqrt((w + p)(h + p))`` and the search side
``s_x = s_z * search_size / exemplar_size``; both crops share the zoom
``scale_z = exemplar_size / s_z`` (crop pixels per frame pixel).

A crop is one bilinear resampling of the frame along an affine map, the same
map as the training crops (`duml_jax.data.augment.crop_matrix`, i.e. one
``cv2.warpAffine``): in 0-based continuous coordinates (`duml_jax.boxes`) a
frame point u lands at ``u' = k F R (u - c) + out / 2 + d`` with the zoom
``k = s * out / side``, a rotation R, an optional horizontal flip F and a shift
d in crop pixels (the first-frame augmentations of the online memory; the
identity for ordinary crops). Bilinear taps beyond the frame's true size are
replaced by the first frame's channel mean, as ``cv2.warpAffine`` with
``BORDER_CONSTANT`` (pysot pads with that mean, then resizes). Unlike pysot's
``get_subwindow`` the crop side is not rounded to whole pixels: the window is
the exact continuous square, as in training. Frames may be
padded to a common size: only ``image_size`` (w, h) counts as image.

Crops are float32 RGB in 0..255 (the model's input, see
`duml_jax.models.backbone`), not rounded to integers.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np

# Augmentation vector layout: shift x, shift y (crop px), scale, angle (rad),
# flip (0/1), blur sigma x, blur sigma y (crop px).
AUG_DIM = 7
IDENTITY_AUG = np.array([0., 0., 1., 0., 0., 0., 0.], np.float32)
MAX_BLUR_SIGMA = 3.0


def context_side(size, context_amount):
  """s_z = sqrt((w + p)(h + p)), p = context_amount (w + h); size (..., 2) = (w, h)."""
  w, h = size[..., 0], size[..., 1]
  p = context_amount * (w + h)
  return jnp.sqrt((w + p) * (h + p))


def crop_scales(size, context_amount, exemplar_size, search_size):
  """(s_z, s_x, scale_z) of a target of size (w, h)."""
  s_z = context_side(size, context_amount)
  return s_z, s_z * (search_size / exemplar_size), exemplar_size / s_z


def channel_mean(frame, image_size):
  """Per-channel mean (3,) of the true image region of a padded frame."""
  h, w = frame.shape[:2]
  valid = ((jnp.arange(h)[:, None] < image_size[1]) &
           (jnp.arange(w)[None, :] < image_size[0])).astype(jnp.float32)
  total = jnp.einsum("hwc,hw->c", frame.astype(jnp.float32), valid)
  return total / jnp.maximum(jnp.sum(valid), 1.)


def inverse_map(centre, side, out_size: int, aug=None):
  """(A (2, 2), t (2,)) with frame point u = A u' + t for crop point u' (continuous)."""
  aug = IDENTITY_AUG if aug is None else aug
  aug = jnp.asarray(aug, jnp.float32)
  k = aug[2] * out_size / side
  cos, sin = jnp.cos(aug[3]), jnp.sin(aug[3])
  # Forward linear part L = k F R; inverse L^-1 = R^T F / k (F = F^-1).
  flip = jnp.where(aug[4] > 0.5, -1., 1.)
  r_t = jnp.array([[cos, sin], [-sin, cos]])
  f = jnp.array([[flip, 0.], [0., 1.]])
  a = (r_t @ f) / k
  t = centre - a @ (out_size / 2. + aug[:2])
  return a, t


def sample_bilinear(frame, pad_value, image_size, points):
  """Bilinear samples (..., 3) of a frame at continuous points (..., 2) = (x, y).

  Taps outside ``[0, image_size)`` take `pad_value` (cv2 BORDER_CONSTANT).
  """
  h, w = frame.shape[:2]
  px = points[..., 0] - 0.5    # pixel-index coordinates
  py = points[..., 1] - 0.5
  x0, y0 = jnp.floor(px), jnp.floor(py)
  fx, fy = px - x0, py - y0
  x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
  flat = frame.reshape(h * w, frame.shape[2])
  out = 0.
  for dy, wy in ((0, 1. - fy), (1, fy)):
    for dx, wx in ((0, 1. - fx), (1, fx)):
      xi, yi = x0 + dx, y0 + dy
      inside = (xi >= 0) & (yi >= 0) & (xi < image_size[0]) & (yi < image_size[1])
      idx = jnp.clip(yi, 0, h - 1) * w + jnp.clip(xi, 0, w - 1)
      val = jnp.take(flat, idx, axis=0).astype(jnp.float32)
      val = jnp.where(inside[..., None], val, pad_value)
      out = out + (wx * wy)[..., None] * val
  return out


def gaussian_blur(img, sigma):
  """Separable Gaussian blur of (H, W, C) with traced sigma (2,) = (sx, sy); 0 = none."""
  radius = int(math.ceil(2 * MAX_BLUR_SIGMA))
  offs = jnp.arange(-radius, radius + 1, dtype=jnp.float32)

  def kernel(s):
    g = jnp.exp(-0.5 * (offs / jnp.maximum(s, 1e-3)) ** 2)
    g = g / jnp.sum(g)
    return jnp.where(s > 1e-3, g, (offs == 0).astype(jnp.float32))

  def blur_axis(x, k, axis):
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (radius, radius)
    xp = jnp.pad(x, pad, mode="edge")
    return sum(k[i] * jax.lax.slice_in_dim(xp, i, i + n, axis=axis)
               for i in range(2 * radius + 1))

  img = blur_axis(img, kernel(sigma[0]), 1)
  return blur_axis(img, kernel(sigma[1]), 0)


def crop(frame, pad_value, image_size, centre, side, out_size: int, aug=None):
  """Square crop (out, out, 3) float32 of `side` frame pixels around `centre`.

  Args:
    frame: (H, W, 3) frame (uint8 or float), possibly padded beyond `image_size`.
    pad_value: (3,) value of out-of-image pixels (the first frame's channel mean).
    image_size: (2,) true (width, height) of the frame.
    centre: (2,) crop centre (x, y), continuous frame coordinates.
    side: crop side in frame pixels (before `aug`'s scale).
    out_size: output side (static).
    aug: optional (AUG_DIM,) augmentation (shift, scale, angle, flip, blur).
  """
  a, t = inverse_map(centre, side, out_size, aug)
  c = jnp.arange(out_size, dtype=jnp.float32) + 0.5
  grid = jnp.stack(jnp.meshgrid(c, c, indexing="xy"), axis=-1)   # (out, out, 2) = (x, y)
  points = grid @ a.T + t
  out = sample_bilinear(frame, pad_value, image_size, points)
  if aug is not None:
    out = gaussian_blur(out, jnp.asarray(aug, jnp.float32)[5:7])
  return out


def augment_box(box_cxcywh, aug, out_size: int):
  """Target box (cx, cy, w, h) in an augmented crop given it in the plain crop.

  The centre moves with the shift and the map (rotation/flip about the crop
  centre); the size is scaled (rotation is ignored for the size).
  """
  aug = jnp.asarray(aug, jnp.float32)
  c0 = box_cxcywh[:2] - out_size / 2.
  cos, sin = jnp.cos(aug[3]), jnp.sin(aug[3])
  rot = jnp.array([[cos, -sin], [sin, cos]])
  flip = jnp.array([jnp.where(aug[4] > 0.5, -1., 1.), 1.])
  c = flip * (rot @ c0) * aug[2] + out_size / 2. + aug[:2]
  return jnp.concatenate([c, box_cxcywh[2:] * aug[2]])


def init_augmentations(num: int, search_size: int):
  """The first `num` of DiMP's first-frame augmentations (anchors.md 3.4), (num, AUG_DIM).

  Order: identity; 4 shifts of (+-0.6, +-0.6) x search/2; horizontal flip;
  blurs sigma (3, 1), (1, 3), (2, 2); rotations +-10, +-45 degrees. (DiMP's
  2 feature-dropout copies act on features: `tracker.dropout_copies`,
  `tracking.init_dropout_samples`.)
  """
  s = 0.6 * search_size / 2.
  augs = [IDENTITY_AUG]
  for dx, dy in ((s, s), (-s, s), (s, -s), (-s, -s)):
    augs.append(np.array([dx, dy, 1., 0., 0., 0., 0.], np.float32))
  augs.append(np.array([0., 0., 1., 0., 1., 0., 0.], np.float32))
  for sx, sy in ((3., 1.), (1., 3.), (2., 2.)):
    augs.append(np.array([0., 0., 1., 0., 0., sx, sy], np.float32))
  for deg in (10., -10., 45., -45.):
    augs.append(np.array([0., 0., 1., math.radians(deg), 0., 0., 0.], np.float32))
  if not 1 <= num <= len(augs):
    raise ValueError(f"tracking.num_init_samples={num}: must be in [1, {len(augs)}] "
                     "(the number of first-frame augmentations)")
  return np.stack(augs[:num])

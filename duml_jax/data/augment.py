"""Training crops and their augmentation (numpy / cv2, run in grain workers).

SiamRPN++ conventions (anchors.md 2.1, 2.7): around a target box (w, h) with
context amount 0.5, p = (w + h) / 2 and the template side is
s_z = sqrt((w + p)(h + p)); the template crop maps s_z to `template_size`
(127) and the search crop maps s_x = s_z * search_size / template_size to
`search_size` (255), so both crops share the scale ``template_size / s_z``.
Outside the frame the crop is padded with the frame's per-channel mean.

Augmentation of the crop window (shift, per-axis scale) is folded into the
same affine map, so every crop is ONE ``cv2.warpAffine`` from the original
frame (no intermediate 511 crops). With zoom ``k = out / (s * scale)`` and a
shift ``d`` in output pixels, a point ``u`` (0-based continuous coordinates,
`duml_jax.boxes`) maps to ``k * (u - c) + out / 2 + d``: the target centre c
lands at the crop centre plus the sampled shift. Then, on the crop: flip,
motion-style cross blur, PCA colour offset (AlexNet "fancy PCA"), grayscale.

Boxes come back as xywh in crop pixel coordinates, unclipped (a target may
reach past the crop border after a large shift).
"""
import dataclasses

import cv2
import numpy as np

# Principal components of ImageNet RGB pixel colours (Krizhevsky et al. 2012),
# for pixel values in [0, 1]: eigenvalues and unit eigenvectors (columns).
_PCA_EIGVAL = np.array([0.2175, 0.0188, 0.0045], np.float32)
_PCA_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                        [-0.5808, -0.0045, -0.8140],
                        [-0.5836, -0.6948, 0.4203]], np.float32)


def template_aug_defaults():
  """pysot template augmentation (anchors.md 2.7) plus DiMP's grayscale p."""
  return dict(shift=4.0, scale=0.05, zoom=0.0, blur=0.0, flip=0.0, color=1.0, color_std=0.1,
              gray=0.05, brightness=0.0)


def search_aug_defaults():
  """pysot 8-GPU search augmentation (anchors.md 2.7) plus DiMP's grayscale p."""
  return dict(shift=64.0, scale=0.18, zoom=0.0, blur=0.2, flip=0.0, color=1.0,
              color_std=0.1, gray=0.05, brightness=0.0)


AUG_KEYS = frozenset(template_aug_defaults())
# Keys that configs saved before they existed may lack (their default then applies).
OPTIONAL_AUG_KEYS = frozenset({"zoom"})


@dataclasses.dataclass(frozen=True)
class CropParams:
  """The sampled crop window: shift (dx, dy) in output px, scale (sx, sy), flip."""
  shift: tuple = (0.0, 0.0)
  scale: tuple = (1.0, 1.0)
  flip: bool = False


def context_size(box, context=0.5):
  """s_z = sqrt((w + p)(h + p)), p = context * (w + h) (SiamFC/SiamRPN++ crop side)."""
  w, h = float(box[2]), float(box[3])
  p = context * (w + h)
  return float(np.sqrt((w + p) * (h + p)))


def crop_matrix(box, out_size, region_size, params=CropParams()):
  """2x3 affine matrix for cv2.warpAffine (pixel-index coordinates).

  Continuous coordinates map as ``u' = k (u - c) + out/2 + d`` with
  ``k = out / (region_size * scale)`` and c the box centre. Pixel index i has
  its centre at continuous i + 0.5, hence the half-pixel terms.
  """
  x, y, w, h = (float(v) for v in box)
  cx, cy = x + w / 2, y + h / 2
  kx = out_size / (region_size * params.scale[0])
  ky = out_size / (region_size * params.scale[1])
  tx = kx * (0.5 - cx) + out_size / 2 + params.shift[0] - 0.5
  ty = ky * (0.5 - cy) + out_size / 2 + params.shift[1] - 0.5
  return np.array([[kx, 0.0, tx], [0.0, ky, ty]], np.float64)


def transform_box(box, matrix):
  """Maps an xywh box through an axis-aligned crop matrix (continuous coords)."""
  x, y, w, h = (float(v) for v in box)
  kx, ky = matrix[0, 0], matrix[1, 1]
  # Continuous u' = k u + (t + 0.5 - 0.5 k) (pixel centres at index + 0.5).
  ox = matrix[0, 2] + 0.5 - 0.5 * kx
  oy = matrix[1, 2] + 0.5 - 0.5 * ky
  return np.array([kx * x + ox, ky * y + oy, kx * w, ky * h], np.float32)


def channel_mean(frame):
  """Per-channel mean of an (H, W, 3) frame (cv2.mean: ~40x faster than numpy's
  float64 reduction on a 1280x720 frame)."""
  return np.asarray(cv2.mean(frame)[:frame.shape[-1]], np.float64)


def warp_crop(frame, matrix, out_size, pad_value=None):
  """One bilinear warpAffine of `frame`, padded with `pad_value` (default:
  the frame's per-channel mean)."""
  if pad_value is None:
    pad_value = channel_mean(frame)
  return cv2.warpAffine(frame, matrix, (out_size, out_size), flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT,
                        borderValue=tuple(float(v) for v in pad_value))


def sample_crop_params(rng, aug):
  """Draws shift, scale and flip from an augmentation dict.

  The window's scale per axis is ``(1 + u_a * aug['scale']) * exp(v * aug['zoom'])`` with
  u_x, u_y, v uniform in [-1, 1]: pysot's independent per-axis jitter (which also changes
  the target's aspect in the crop) times an optional common log-uniform zoom (the target's
  size alone, what a tracker whose size estimate is off sees). With zoom 0 no v is drawn,
  so the random stream is pysot's.
  """
  shift = tuple(rng.uniform(-1.0, 1.0, 2) * float(aug["shift"]))
  scale = 1.0 + rng.uniform(-1.0, 1.0, 2) * float(aug["scale"])
  zoom = float(aug.get("zoom", 0.0))
  if zoom > 0:
    scale = scale * np.exp(rng.uniform(-zoom, zoom))
  scale = tuple(float(v) for v in scale)
  flip = bool(rng.random() < float(aug["flip"]))
  return CropParams(shift=shift, scale=scale, flip=flip)


def _cross_blur(rng, img):
  """Blur with a random odd kernel (5..45 px, capped by the crop size) shaped
  as a weighted horizontal + vertical cross."""
  k_max = max(5, min(45, (min(img.shape[:2]) // 2) | 1))
  k = int(rng.choice(np.arange(5, k_max + 1, 2)))
  kernel = np.zeros((k, k), np.float32)
  wh = rng.random()
  kernel[k // 2, :] = wh
  kernel[:, k // 2] += 1.0 - wh
  kernel /= kernel.sum()
  return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT)


def _to_gray(img):
  g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
  return np.repeat(g[..., None], 3, axis=-1)


def photometric(rng, img, aug, gray=None):
  """Blur, brightness, PCA colour offset and grayscale on a uint8 RGB crop.

  `gray` forces the grayscale decision (sequence samples draw it once for all
  their crops, like DiMP); None draws it here with probability ``aug['gray']``.
  """
  if float(aug["blur"]) > 0 and rng.random() < float(aug["blur"]):
    img = _cross_blur(rng, img)
  out = img.astype(np.float32)
  if float(aug["brightness"]) > 0:
    out *= rng.uniform(max(0.0, 1 - float(aug["brightness"])), 1 + float(aug["brightness"]))
  if float(aug["color"]) > 0 and rng.random() < float(aug["color"]):
    alpha = rng.normal(0.0, float(aug["color_std"]), 3).astype(np.float32)
    out += 255.0 * (_PCA_EIGVEC @ (alpha * _PCA_EIGVAL))[None, None, :]
  out = np.clip(out, 0, 255).astype(np.uint8)
  if gray is None:
    gray = rng.random() < float(aug["gray"])
  return _to_gray(out) if gray else out


def crop_and_augment(rng, frame, box, out_size, region_size, aug, pad_value=None, gray=None):
  """Crops `frame` around `box` with a sampled window augmentation.

  Args:
    rng: np.random.Generator.
    frame: (H, W, 3) uint8 RGB.
    box: xywh of the target in the frame (centre of the crop window).
    out_size: crop side in output pixels (127 template, 255 search).
    region_size: side of the un-augmented window in frame pixels (s_z or s_x).
    aug: augmentation dict (keys `AUG_KEYS`).
    pad_value: per-channel padding (default: the frame's mean).
    gray: forces the grayscale decision (see `photometric`).

  Returns:
    (crop (out, out, 3) uint8, box (4,) float32 xywh in crop coords, CropParams).
  """
  missing = AUG_KEYS - OPTIONAL_AUG_KEYS - set(aug)
  if missing:
    raise KeyError(f"augmentation config lacks keys {sorted(missing)}")
  params = sample_crop_params(rng, aug)
  m = crop_matrix(box, out_size, region_size, params)
  crop = warp_crop(frame, m, out_size, pad_value)
  out_box = transform_box(box, m)
  if params.flip:
    crop = np.ascontiguousarray(crop[:, ::-1])
    out_box[0] = out_size - out_box[0] - out_box[2]
  crop = photometric(rng, crop, aug, gray=gray)
  return crop, out_box, params

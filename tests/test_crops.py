"""Device crops against cv2.warpAffine, mean padding, padded frames, augmentations."""
import math

import cv2
import jax.numpy as jnp
import numpy as np
import pytest

from duml_jax.data import augment
from duml_jax.tracking import crops


def _smooth_image(h=120, w=160):
  y, x = np.mgrid[0:h, 0:w].astype(np.float32)
  img = np.stack([100 + 80 * np.sin(x / 13.) * np.cos(y / 17.),
                  128 + 60 * np.cos((x + y) / 11.),
                  30 + x + 0.5 * y], axis=-1)
  return np.clip(img, 0, 255).astype(np.uint8)


def _forward_matrix(centre, side, out, aug):
  """cv2 2x3 (pixel-index) matrix of u' = k F R (u - c) + out/2 + d."""
  dx, dy, s, ang, flip = aug[:5]
  k = s * out / side
  r = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
  f = np.diag([-1. if flip > 0.5 else 1., 1.])
  lin = k * f @ r
  c = np.asarray(centre, np.float64)
  t = lin @ (0.5 - c) + out / 2. + np.array([dx, dy]) - 0.5
  return np.concatenate([lin, t[:, None]], axis=1)


def test_context_side_and_scales():
  # w=40, h=20: p = 30, s_z = sqrt(70 * 50).
  s_z, s_x, scale_z = crops.crop_scales(jnp.array([40., 20.]), 0.5, 127, 255)
  np.testing.assert_allclose(s_z, math.sqrt(3500.), rtol=1e-6)
  np.testing.assert_allclose(s_x, math.sqrt(3500.) * 255 / 127, rtol=1e-6)
  np.testing.assert_allclose(scale_z, 127 / math.sqrt(3500.), rtol=1e-6)


@pytest.mark.parametrize("box,out", [((60., 40., 30., 20.), 127),   # inside
                                     ((-10., 90., 50., 40.), 64)])  # over the border
def test_crop_matches_training_warp_affine(box, out):
  img = _smooth_image()
  mean = augment.channel_mean(img)
  side = augment.context_size(box) * 2.0
  ref = augment.warp_crop(img, augment.crop_matrix(box, out, side), out, mean)
  centre = jnp.array([box[0] + box[2] / 2, box[1] + box[3] / 2])
  got = np.asarray(crops.crop(jnp.asarray(img), jnp.asarray(mean, jnp.float32),
                              jnp.array([160., 120.]), centre, side, out))
  diff = np.abs(got - ref.astype(np.float32))
  assert diff.max() <= 1.5, diff.max()
  assert diff.mean() <= 0.5, diff.mean()


def test_outside_is_mean_and_padding_is_ignored():
  img = _smooth_image()
  mean = crops.channel_mean(jnp.asarray(img), jnp.array([160., 120.]))
  np.testing.assert_allclose(mean, img.reshape(-1, 3).mean(0), rtol=1e-5)
  # The same frame padded with garbage to 192x256: same mean, same crops.
  padded = np.full((192, 256, 3), 250, np.uint8)
  padded[:120, :160] = img
  size = jnp.array([160., 120.])
  np.testing.assert_allclose(crops.channel_mean(jnp.asarray(padded), size), mean, rtol=1e-5)
  args = (mean, size, jnp.array([150., 110.]), 100., 64)
  np.testing.assert_allclose(crops.crop(jnp.asarray(padded), *args),
                             crops.crop(jnp.asarray(img), *args), atol=1e-4)
  # A window entirely beyond the image is the mean everywhere.
  far = crops.crop(jnp.asarray(padded), mean, size, jnp.array([400., 400.]), 50., 16)
  np.testing.assert_allclose(far, np.broadcast_to(mean, (16, 16, 3)), atol=1e-4)


def test_augmented_crop_matches_warp_affine():
  img = _smooth_image()
  mean = augment.channel_mean(img)
  centre, side, out = (80., 60.), 90., 64
  aug = np.array([5., -3., 1.1, math.radians(30.), 1., 0., 0.], np.float32)
  ref = cv2.warpAffine(img, _forward_matrix(centre, side, out, aug), (out, out),
                       flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                       borderValue=tuple(float(v) for v in mean))
  got = np.asarray(crops.crop(jnp.asarray(img), jnp.asarray(mean, jnp.float32),
                              jnp.array([160., 120.]), jnp.asarray(centre), side, out, aug))
  diff = np.abs(got - ref.astype(np.float32))
  assert diff.max() <= 1.5 and diff.mean() <= 0.5, (diff.max(), diff.mean())


def test_augment_box_follows_the_target():
  # A bright square at (70..90, 50..70); its centroid in each augmented crop
  # is where augment_box puts the target centre.
  img = np.zeros((120, 160, 3), np.uint8)
  img[50:70, 70:90] = 255
  centre, side, out = jnp.array([80., 60.]), 100., 100
  plain = jnp.array([out / 2, out / 2, 20. * out / side, 20. * out / side])
  for aug in crops.init_augmentations(13, out):
    c = np.asarray(crops.crop(jnp.asarray(img), jnp.zeros(3), jnp.array([160., 120.]),
                              centre, side, out, aug))[..., 0]
    ys, xs = np.mgrid[0:out, 0:out] + 0.5
    cen = np.array([(c * xs).sum(), (c * ys).sum()]) / c.sum()
    want = np.asarray(crops.augment_box(plain, aug, out))
    np.testing.assert_allclose(cen, want[:2], atol=0.6, err_msg=str(aug))


def test_gaussian_blur_matches_cv2_and_identity():
  rng = np.random.default_rng(0)
  img = rng.uniform(0, 255, (40, 50, 3)).astype(np.float32)
  got = np.asarray(crops.gaussian_blur(jnp.asarray(img), jnp.array([2., 1.])))
  ref = cv2.GaussianBlur(img, (13, 13), sigmaX=2., sigmaY=1., borderType=cv2.BORDER_REPLICATE)
  np.testing.assert_allclose(got, ref, atol=1e-2)
  same = crops.gaussian_blur(jnp.asarray(img), jnp.zeros(2))
  np.testing.assert_allclose(same, img, atol=1e-4)


def test_init_augmentations_count_is_checked():
  assert crops.init_augmentations(10, 255).shape == (10, crops.AUG_DIM)
  np.testing.assert_array_equal(crops.init_augmentations(1, 255)[0], crops.IDENTITY_AUG)
  with pytest.raises(ValueError, match="num_init_samples"):
    crops.init_augmentations(20, 255)

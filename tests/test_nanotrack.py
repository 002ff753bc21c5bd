"""NanoTrack: architecture, converter, parity with OpenCV's DNN module and
with cv2.TrackerNano on the OTB sample.

Tests needing the weights / sequences skip (via `shared_dir` / `otb_sample`)
when ../shared is absent.
"""
import json
import re
import time

import cv2
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from duml_jax.convert import nanotrack as conv
from duml_jax.models import nanotrack as nt
from duml_jax.tracking import nanotrack_tracker as ntt

ONNX = {'v1': ('nanotrackv1_nanotrack_backbone_sim.onnx', 'nanotrackv1_nanotrack_head_sim.onnx'),
        'v2': ('nanotrackv2_nanotrack_backbone_sim.onnx', 'nanotrackv2_nanotrack_head_sim.onnx')}


@pytest.fixture(scope='module')
def weights_dir(shared_dir):
  d = shared_dir / 'weights' / 'nanotrack'
  if not (d / ONNX['v2'][0]).is_file():
    pytest.skip(f'{d}: NanoTrack weights not found')
  return d


@pytest.fixture(scope='module')
def v2_vars(weights_dir):
  return conv.load_nanotrack(weights_dir, 'v2')


# ------------------------------------------------------------- model ----


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_feature_and_head_shapes(version):
  backbone, head = nt.build(version)
  shapes = jax.eval_shape(lambda: nt.init_variables(jax.random.PRNGKey(0), version))
  z = jax.eval_shape(backbone.apply, shapes['backbone'],
                     jax.ShapeDtypeStruct((2, 127, 127, 3), jnp.float32))
  x = jax.eval_shape(backbone.apply, shapes['backbone'],
                     jax.ShapeDtypeStruct((2, 255, 255, 3), jnp.float32))
  assert z.shape == (2, 8, 8, 48) and x.shape == (2, 16, 16, 48)
  cls, loc = jax.eval_shape(head.apply, shapes['head'], z, x)
  assert cls.shape == (2, 16, 16, 2) and loc.shape == (2, 16, 16, 4)


@pytest.mark.parametrize('stride,k', [(1, 3), (2, 3), (2, 5), (1, 5)])
def test_depthwise_conv_equals_grouped_conv(stride, k):
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 9, 9, 4))
  dw = nt.DepthwiseConv(k, stride)
  v = dw.init(jax.random.PRNGKey(1), x)
  v = jax.tree.map(lambda a: a + 0.3, v)  # non-zero bias
  ref = nn.Conv(4, (k, k), strides=stride, padding=((k // 2,) * 2,) * 2,
                feature_group_count=4).apply(v, x)
  out = dw.apply(v, x)
  n = (9 + 2 * (k // 2) - k) // stride + 1
  assert out.shape == ref.shape == (1, n, n, 4)
  np.testing.assert_allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize('stride,k', [(2, 3), (1, 3), (2, 5)])
def test_tap_conv_equals_dense_conv(stride, k):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 11, 11, 3))
  tc = nt.TapConv(5, k, stride)
  v = jax.tree.map(lambda a: a + 0.3, tc.init(jax.random.PRNGKey(1), x))  # non-zero bias
  ref = nn.Conv(5, (k, k), strides=stride, padding=((k // 2,) * 2,) * 2).apply(v, x)
  out = tc.apply(v, x)
  assert out.shape == ref.shape
  np.testing.assert_allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_lax_conv_form_equals_the_tracker_form(version):
  """build(conv_impl='lax') (one convolution per layer, what export uses) computes the same
  backbone and head as the shifted multiply-adds the tracker runs, batch 1 and 2."""
  # Random variables drawn from the shapes alone: flax's eager init of v1 takes ~30 s on CPU.
  rng = np.random.RandomState(0)
  v = jax.tree.map(   # lecun-normal weights, non-zero biases
      lambda s: (rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1]) or 1) + 0.01
                 ).astype(np.float32),
      jax.eval_shape(lambda: nt.init_variables(jax.random.PRNGKey(0), version)))
  (b0, h0), (b1, h1) = nt.build(version), nt.build(version, conv_impl='lax')
  assert (b1.conv_impl, h1.conv_impl) == ('lax', 'lax')
  fb0, fb1, fh0, fh1 = (jax.jit(m.apply) for m in (b0, b1, h0, h1))
  for batch in (1, 2):
    keys = jax.random.split(jax.random.PRNGKey(batch), 2)
    z_img = jax.random.uniform(keys[0], (batch, 127, 127, 3)) * 255
    x_img = jax.random.uniform(keys[1], (batch, 255, 255, 3)) * 255
    z, x = fb0(v['backbone'], z_img), fb0(v['backbone'], x_img)
    assert float(jnp.std(x)) > 1e-3          # the features are not all constant
    # Summation order differs between the forms; head outputs reach ~10 here.
    np.testing.assert_allclose(fb1(v['backbone'], x_img), x, rtol=1e-4, atol=1e-4)
    for got, want in zip(fh1(v['head'], z, x), fh0(v['head'], z, x)):
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  # The stacked (N, ...) depthwise form too, and a wrong name is refused.
  xs = jax.random.normal(jax.random.PRNGKey(3), (2, 1, 9, 9, 4))
  ks = jax.random.normal(jax.random.PRNGKey(4), (2, 3, 3, 1, 4))
  np.testing.assert_allclose(nt.depthwise_conv(xs, ks, 2, 'lax'), nt.depthwise_conv(xs, ks, 2),
                             atol=1e-5)
  with pytest.raises(ValueError, match="conv impl 'fast'"):
    nt.depthwise_conv(xs, ks, 1, 'fast')


def test_pixelwise_xcorr_by_hand():
  z = jnp.arange(2 * 2 * 3, dtype=jnp.float32).reshape(1, 2, 2, 3)
  x = jnp.ones((1, 3, 3, 3)).at[0, 1, 2].set(jnp.array([1., 0., -1.]))
  y = nt.pixelwise_xcorr(z, x)
  assert y.shape == (1, 3, 3, 4)
  # channel k = template position (row-major): z[0,0]=(0,1,2), z[1,1]=(9,10,11)
  np.testing.assert_allclose(y[0, 0, 0], [3., 12., 21., 30.])
  np.testing.assert_allclose(y[0, 1, 2], [-2., -2., -2., -2.])


def test_hard_activations_by_hand():
  x = jnp.array([-4., -3., 0., 1.5, 3., 5.])
  np.testing.assert_allclose(nt.hard_sigmoid(x), [0., 0., .5, .75, 1., 1.])
  np.testing.assert_allclose(nt.hard_swish(x), [0., 0., 0., 1.125, 3., 5.])


# --------------------------------------------------------- converter ----


def test_fold_bn_by_hand():
  w = np.array([[[[2.]]], [[[1.]]]], np.float32)  # (2, 1, 1, 1)
  b = np.array([1., 0.], np.float32)
  # BN: gamma (1, 2), beta (0, 1), mean (1, 2), var (3, 0) with eps 1.
  fw, fb = conv.fold_bn(w, b, [1., 2.], [0., 1.], [1., 2.], [3., 0.], eps=1.)
  # ch0: (2x + 1 - 1) * 1/2 + 0 = x ; ch1: (x - 2) * 2/1 + 1 = 2x - 3
  np.testing.assert_allclose(fw.ravel(), [1., 2.])
  np.testing.assert_allclose(fb, [0., -3.])


def test_module_table_covers_every_parameter():
  for version in nt.VERSIONS:
    shapes = jax.eval_shape(lambda v=version: nt.init_variables(jax.random.PRNGKey(0), v))
    table = conv.module_table(version)
    for part in ('backbone', 'head'):
      filled = {row[2] for row in table[part]}
      leaves = jax.tree_util.tree_leaves_with_path(shapes[part]['params'])
      modules = {tuple(k.key for k in path[:-1]) for path, _ in leaves}
      assert filled == modules, (version, part, filled ^ modules)
  with pytest.raises(ValueError, match='v9'):
    conv.module_table('v9')


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_onnx_and_pth_give_the_same_variables(weights_dir, version):
  a = conv.load_nanotrack(weights_dir, version)
  b = conv.load_nanotrack(weights_dir / f'nanotrack{version}.pth', version)
  ref = jax.eval_shape(lambda: nt.init_variables(jax.random.PRNGKey(0), version))
  shape = lambda t: jax.tree.map(lambda l: tuple(l.shape), t)
  assert shape(a) == shape(ref) == shape(b)
  # ONNX has BN folded by the exporter, the .pth is folded here (float64).
  jax.tree.map(lambda p, q: np.testing.assert_allclose(p, q, atol=2e-5, rtol=1e-5), a, b)


def test_cli_roundtrip_and_errors(weights_dir, v2_vars, tmp_path, capsys):
  conv.main(['--input', str(weights_dir), '--output', str(tmp_path / 'out')])
  assert 'NanoTrack v2' in capsys.readouterr().out
  meta = json.loads((tmp_path / 'out' / conv.META_NAME).read_text())
  assert meta['version'] == 'v2'
  back = conv.load_nanotrack(tmp_path / 'out')
  jax.tree.map(np.testing.assert_array_equal, back, v2_vars)
  with pytest.raises(ValueError, match='holds NanoTrack v2'):
    conv.load_nanotrack(tmp_path / 'out', 'v1')
  with pytest.raises(FileNotFoundError, match='nanotrackv2_'):
    conv.load_nanotrack(tmp_path)  # a directory without weights


def _opencv_net(path, inputs):
  net = cv2.dnn.readNetFromONNX(str(path))
  for name, x in inputs.items():
    net.setInput(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)), name)
  return net


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_outputs_match_opencv_dnn(weights_dir, version):
  """Same random input: |jax - opencv| <= 1e-4 + 1e-4 |opencv| elementwise
  (absolute below 1, relative above; loc values reach ~50)."""
  variables = conv.load_nanotrack(weights_dir, version)
  backbone, head = nt.build(version)
  rng = np.random.RandomState(0)
  z_img = rng.uniform(0, 255, (1, 127, 127, 3)).astype(np.float32)
  x_img = rng.uniform(0, 255, (1, 255, 255, 3)).astype(np.float32)
  bpath, hpath = (weights_dir / f for f in ONNX[version])
  feats = {}
  for name, img in (('z', z_img), ('x', x_img)):
    ref = _opencv_net(bpath, {'input': img}).forward().transpose(0, 2, 3, 1)
    feats[name] = np.asarray(jax.jit(backbone.apply)(variables['backbone'], img))
    np.testing.assert_allclose(feats[name], ref, atol=1e-4, rtol=1e-4)
  assert feats['z'].shape == (1, 8, 8, 48) and feats['x'].shape == (1, 16, 16, 48)
  net = _opencv_net(hpath, {'input1': feats['z'], 'input2': feats['x']})
  ref_cls, ref_loc = net.forward(['output1', 'output2'])
  cls, loc = jax.jit(head.apply)(variables['head'], feats['z'], feats['x'])
  np.testing.assert_allclose(cls, ref_cls.transpose(0, 2, 3, 1), atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(loc, ref_loc.transpose(0, 2, 3, 1), atol=1e-4, rtol=1e-4)


# ----------------------------------------------------- tracker parts ----


def _float32_of(num, den):
  f = (np.asarray(num, np.float64) / den).astype(np.float32)
  lo = np.floor(f)
  return lo.astype(np.int64), (f - lo).astype(np.float32)


def test_float32_split_is_correctly_rounded():
  num = np.arange(-600, 400000, 7, dtype=np.int32)
  for den in (254, 510):
    lo, frac = jax.jit(ntt._float32_split)(jnp.asarray(num), den)
    rlo, rfrac = _float32_of(num, den)
    np.testing.assert_array_equal(lo, rlo)
    np.testing.assert_allclose(frac, rfrac, atol=2e-7)
    big = rlo >= 1  # where float32 spacing matters, exact equality
    np.testing.assert_array_equal(np.asarray(frac)[big], rfrac[big])


def _opencv_crop(frame, x0, y0, side, out):
  """What cv2.TrackerNano's getSubwindow computes (reference)."""
  h, w = frame.shape[:2]
  pads = [max(0, -y0), max(0, y0 + side - h), max(0, -x0), max(0, x0 + side - w)]
  padded = cv2.copyMakeBorder(frame, *pads, cv2.BORDER_CONSTANT, value=cv2.mean(frame))
  roi = padded[y0 + pads[0]:y0 + pads[0] + side, x0 + pads[2]:x0 + pads[2] + side]
  return cv2.resize(roi, (out, out))


@pytest.mark.parametrize('x0,y0,side,out', [
    (10, 5, 40, 127),     # upscale, inside
    (-30, 50, 129, 255),  # upscale, off the left edge
    (50, -20, 300, 255),  # downscale, off top/right/bottom
    (3, 4, 255, 255),     # identity
    (0, 0, 254, 127),     # exact 2x
])
def test_opencv_crop_is_bit_exact(x0, y0, side, out):
  frame = np.random.RandomState(side).randint(0, 256, (180, 200, 3)).astype(np.uint8)
  ours = jax.jit(ntt.crop_window_opencv, static_argnums=4)(
      jnp.asarray(frame), x0, y0, float(side), out, ntt.channel_mean(jnp.asarray(frame)))
  ref = _opencv_crop(frame, x0, y0, side, out)
  np.testing.assert_array_equal(np.asarray(ours).astype(np.uint8), ref)
  host = ntt.crop_window_host(frame, x0, y0, side, out, ntt.channel_mean_host(frame))
  np.testing.assert_array_equal(host, ref)


def test_host_channel_mean_rounds_ties_like_the_device():
  # Two pixels, channel sums 1, 3, 5: means 0.5, 1.5, 2.5 -> half to even 0, 2, 2.
  frame = np.array([[[0, 1, 2]], [[1, 2, 3]]], np.uint8)
  np.testing.assert_array_equal(ntt.channel_mean_host(frame), [0., 2., 2.])
  np.testing.assert_array_equal(ntt.channel_mean(jnp.asarray(frame)), [0., 2., 2.])
  # A real-sized frame: 640x360 of 0/255 with sums one off a tie either way.
  frame = np.zeros((360, 640, 3), np.uint8)
  n = 360 * 640
  flat = frame.reshape(-1, 3)
  flat[:n // 2, 0] = 1                   # sum n/2: 0.5 -> 0
  flat[:n // 2 + 1, 1] = 1               # n/2 + 1: just above a tie -> 1
  flat[:3 * n // 2 - n, 2] = 3           # 3 * (n/2): 1.5 -> 2
  want = [0., 1., 2.]
  np.testing.assert_array_equal(ntt.channel_mean_host(frame), want)
  np.testing.assert_array_equal(ntt.channel_mean(jnp.asarray(frame)), want)


def _host_crop_windows(h, w):
  """(x0, y0, side, out) windows of an h x w frame: inside, leaving it on each side,
  larger than it, entirely outside, side = out, 2x downscale, empty."""
  return [
      (w // 4, h // 4, min(h, w) // 2, 255),     # inside, upscale
      (-40, -25, 200, 255),                      # off the left and top edges
      (w - 100, h - 60, 180, 127),               # off the right and bottom edges
      (-50, -70, max(h, w) + 120, 255),          # the whole frame and more, all sides
      (w + 10, -5, 60, 127),                     # nothing of the frame
      (5, 7, 127, 127),                          # side = out (a copy)
      (0, 0, 254, 127),                          # exact 2x downscale
      (10, 10, 0, 127),                          # empty window: zeros
  ]


def test_host_crop_equals_device_crop_on_otb_frames(otb_sample):
  """`crop_window_host` (OpenCV) equals `crop_window_opencv` (device) bit for bit,
  `channel_mean_host` equals `channel_mean` and `search_crop_host` `search_crop`, on
  real frames of every sequence."""
  device_crop = jax.jit(ntt.crop_window_opencv, static_argnums=4)
  cfg = ntt.freeze(ntt.default_config())
  for name, frames, _ in _read_otb_sample(otb_sample):
    for path in (frames[0], frames[len(frames) // 2]):
      frame = np.ascontiguousarray(cv2.imread(str(path))[..., ::-1])
      mean = ntt.channel_mean_host(frame)
      np.testing.assert_array_equal(mean, ntt.channel_mean(jnp.asarray(frame)), err_msg=name)
      for x0, y0, side, out in _host_crop_windows(*frame.shape[:2]):
        dev = device_crop(jnp.asarray(frame), x0, y0, float(side), out, jnp.asarray(mean))
        host = ntt.crop_window_host(frame, x0, y0, side, out, mean)
        assert host.shape == (out, out, 3) and host.dtype == np.uint8
        np.testing.assert_array_equal(host, np.asarray(dev).astype(np.uint8),
                                      err_msg=f'{path}: window {(x0, y0, side, out)}')
        buf = ntt.aligned_empty((out, out, 3))     # written in place (the tracker's buffer)
        assert buf.ctypes.data % 64 == 0
        buf[...] = 77
        assert ntt.crop_window_host(frame, x0, y0, side, out, mean, buf) is buf
        np.testing.assert_array_equal(buf, host)
      # The search crop of a state, inside the frame (no fill) and leaving it (mean fill).
      h, w = frame.shape[:2]
      for center, size in (((w / 2, h / 2), (20., 15.)), ((10.5, h - 3.2), (60., 90.))):
        state = ntt.NanoState(jnp.zeros((1, 8, 8, 48)), jnp.array(center, jnp.float32),
                              jnp.array(size, jnp.float32), jnp.zeros(3))
        dev = jax.jit(ntt.search_crop, static_argnums=0)(cfg, state, jnp.asarray(frame))[0]
        window = [int(v) for v in np.asarray(ntt.search_window(cfg, state))]
        host = ntt.search_crop_host(cfg, frame, window)
        np.testing.assert_array_equal(host, np.asarray(dev[0]).astype(np.uint8),
                                      err_msg=f'{path}: search window {window}')


def test_continuous_crop_by_hand():
  frame = jnp.broadcast_to(jnp.arange(8.)[None, :, None] * 10, (8, 8, 3))
  # Window [2, 6) sampled at 2 px: centres 3 and 5 -> pixel coords 2.5, 4.5.
  out = jax.jit(ntt.crop_window, static_argnums=4)(frame, 2., 2., 4., 2, jnp.zeros(3))
  np.testing.assert_allclose(out[0, :, 0], [25., 45.])
  # Off the right edge: coordinate 7.5 mixes pixel 7 (70) with fill 0.
  out = jax.jit(ntt.crop_window, static_argnums=4)(frame, 7.5, 0., 1., 1, jnp.zeros(3))
  np.testing.assert_allclose(out[0, 0], [35.] * 3)


def test_windows_and_point_decoding():
  cfg = ntt._freeze(ntt.default_config())
  np.testing.assert_allclose(
      ntt.hanning_window(cfg), cv2.createHanningWindow((16, 16), cv2.CV_32F), atol=1e-6)
  cfg2 = ntt._freeze(ntt.nanotrack_v2_config())
  np.testing.assert_allclose(ntt.hanning_window(cfg2),
                             np.outer(np.hanning(16), np.hanning(16)), atol=1e-6)
  loc = jnp.zeros((16, 16, 4)).at[8, 8].set(jnp.array([2., 4., 6., 8.]))
  cx, cy, w, h = ntt.decode_points(cfg, loc)
  assert (float(cx[8, 8]), float(cy[8, 8]), float(w[8, 8]), float(h[8, 8])) == (2., 2., 8., 12.)
  assert (float(cx[0, 3]), float(cy[0, 3])) == (-80., -128.)  # (3 - 8) * 16, (0 - 8) * 16


def test_jit_compiles_with_the_compiler_options():
  """`ntt.jit` (every tracker step) compiles a 1x1 conv + squeeze-excitation mean with
  `COMPILER_OPTIONS` on this XLA (an unknown option or enum value fails at compile), to
  the same values as plain `jax.jit` up to float32 summation order."""
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 16, 16, 40))
  w = jax.random.normal(jax.random.PRNGKey(1), (40, 240))
  f = lambda x, w: jnp.mean(jnp.einsum('bhwc,cd->bhwd', x, w), axis=(1, 2))
  jitted = ntt.jit(f)
  assert jitted.lower(x, w).compile() is not None
  np.testing.assert_allclose(jitted(x, w), jax.jit(f)(x, w), rtol=1e-5, atol=1e-5)
  assert ntt.jit(static_argnames=('k',))(lambda x, k: x * k)(x, k=2).shape == x.shape


def test_config_errors_name_the_key():
  cfg = ntt.default_config()
  cfg.windw_influence = 0.4
  with pytest.raises(KeyError, match='windw_influence'):
    ntt._freeze(cfg)
  cfg = ntt.default_config()
  cfg.network_channels = 'rbg'
  with pytest.raises(ValueError, match='network_channels'):
    ntt._freeze(cfg)
  with pytest.raises(RuntimeError, match='before init'):
    ntt.NanoTracker({}).update(np.zeros((4, 4, 3), np.uint8))
  with pytest.raises(RuntimeError, match='before init'):
    ntt.NanoTracker({}, crop='host').update(np.zeros((4, 4, 3), np.uint8))
  with pytest.raises(ValueError, match=r"crop='cpu'; allowed: \('device', 'host'\)"):
    ntt.NanoTracker({}, crop='cpu')
  with pytest.raises(ValueError, match="crop='host' needs opencv_compat"):
    ntt.NanoTracker({}, ntt.nanotrack_v2_config(), crop='host')


# ------------------------------------------ tracking vs cv2.TrackerNano ----


def _read_otb_sample(root):
  """(name, frame paths, 0-based GT) for each sequence (OTB/UAV GT 1-based)."""
  out = []
  for d in sorted(p for p in root.iterdir() if (p / 'img').is_dir()):
    frames = sorted((d / 'img').glob('*.jpg'))
    rows = [l for l in (d / 'groundtruth_rect.txt').read_text().splitlines() if l.strip()]
    gt = np.array([[float(v) for v in re.split(r'[,\s]+', l.strip())] for l in rows])
    gt[:, :2] -= 1.
    out.append((d.name, frames, gt))
  return out


def _iou_xywh(a, b):
  a, b = np.asarray(a, float), np.asarray(b, float)
  iw = np.clip(np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2])
               - np.maximum(a[..., 0], b[..., 0]), 0, None)
  ih = np.clip(np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3])
               - np.maximum(a[..., 1], b[..., 1]), 0, None)
  inter = iw * ih
  return inter / (a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter)


def _success_auc(ious):
  return float(np.mean([np.mean(ious > t) for t in np.linspace(0, 1, 21)]))


@pytest.fixture(scope='module')
def otb_runs(otb_sample, weights_dir, v2_vars):
  """Both trackers over every frame of the 5 sequences (same process).

  Both start from the rounded 0-based first GT box (cv2 takes int boxes);
  cv2 gets BGR frames as usual, the JAX tracker RGB with the OpenCV config.
  """
  params = cv2.TrackerNano_Params()
  params.backbone = str(weights_dir / ONNX['v2'][0])
  params.neckhead = str(weights_dir / ONNX['v2'][1])
  runs, t0 = {}, time.perf_counter()
  for name, frames, gt in _read_otb_sample(otb_sample):
    init_box = tuple(int(v) for v in np.round(gt[0]))
    ref = cv2.TrackerNano_create(params)
    ours = ntt.NanoTracker(v2_vars, ntt.default_config())
    cv_boxes, jax_boxes = [init_box], [np.array(init_box, float)]
    for i, path in enumerate(frames):
      bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
      rgb = np.ascontiguousarray(bgr[..., ::-1])
      if i == 0:
        ref.init(bgr, init_box)
        ours.init(rgb, np.array(init_box, float))
        continue
      cv_boxes.append(tuple(ref.update(bgr)[1]))
      jax_boxes.append(ours.update(rgb)[0])
    runs[name] = (np.array(cv_boxes, float), np.array(jax_boxes), gt)
  print(f'\nNanoTrack JAX + cv2 over the OTB sample: {time.perf_counter() - t0:.1f}s')
  return runs


def _assert_like_cv2(name, cv_boxes, jax_boxes):
  """IoU(cv2 box, our box reported as cv2 reports it) > 0.9, float boxes within a pixel."""
  ours = np.array([ntt.opencv_rect(b) for b in jax_boxes], float)
  ious = _iou_xywh(cv_boxes, ours)
  assert ious.min() > 0.9, (name, np.round(ious, 3))
  # Float boxes are within a pixel of cv2's (its ints are truncated).
  assert np.abs(jax_boxes - cv_boxes).max() < 1.0 + 1e-6, name


def test_tracker_reproduces_cv2_first_20_frames(otb_runs):
  """IoU(cv2 box, our box reported as cv2 reports it) > 0.9 on frames 0-19.

  cv2 truncates its float state to an int box; we compare like with like via
  `opencv_rect`. (On this machine the boxes are identical, IoU 1.)
  """
  assert len(otb_runs) == 5
  for name, (cv_boxes, jax_boxes, _) in otb_runs.items():
    _assert_like_cv2(name, cv_boxes[:20], jax_boxes[:20])


def test_host_crop_tracker_equals_device_tracker_first_20_frames(otb_sample, v2_vars, otb_runs):
  """``NanoTracker(crop='host')``: the same float boxes and scores as the default
  (device-crop) tracker, bit for bit, on frames 0-19 of every sequence (its windows
  leave the frame on every MotorRolling frame), hence cv2's boxes too."""
  device = ntt.NanoTracker(v2_vars, ntt.default_config())
  host = ntt.NanoTracker(v2_vars, ntt.default_config(), crop='host')
  for name, frames, gt in _read_otb_sample(otb_sample):
    init_box = np.round(gt[0])
    boxes = [init_box]
    for i, path in enumerate(frames[:20]):
      rgb = np.ascontiguousarray(cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1])
      if i == 0:
        device.init(rgb, init_box)
        host.init(rgb, init_box)
        continue
      (box_d, score_d), (box_h, score_h) = device.update(rgb), host.update(rgb)
      np.testing.assert_array_equal(box_h, box_d, err_msg=f'{name} frame {i}')
      assert score_h == score_d, (name, i)
      boxes.append(box_h)
    np.testing.assert_array_equal(np.array(boxes), otb_runs[name][1][:20], err_msg=name)
    _assert_like_cv2(name, otb_runs[name][0][:20], np.array(boxes))
  # A state set from outside (e.g. copied from the device tracker) is cropped around.
  host.state = device.state
  np.testing.assert_array_equal(host.update(rgb)[0], device.update(rgb)[0])


def test_success_auc_matches_cv2(otb_runs):
  """Success AUC (21 thresholds, mean over frames then sequences) of our float
  boxes within 0.02 of cv2's int boxes (cv2: ~0.70 on these 5 sequences)."""
  auc_cv, auc_jax = [], []
  for cv_boxes, jax_boxes, gt in otb_runs.values():
    assert len(cv_boxes) == len(jax_boxes) == len(gt)
    auc_cv.append(_success_auc(_iou_xywh(cv_boxes, gt)))
    auc_jax.append(_success_auc(_iou_xywh(jax_boxes, gt)))
  print(f'\nsuccess AUC cv2 {np.mean(auc_cv):.4f} jax {np.mean(auc_jax):.4f}')
  assert 0.6 < np.mean(auc_cv) < 0.8
  assert abs(np.mean(auc_jax) - np.mean(auc_cv)) < 0.02


def test_functional_api_and_nanotrack_config(otb_sample, v2_vars):
  """init/track as pure functions with NanoTrack's own v2 values (continuous
  crops, BGR to the network): the state is a pytree, and the target is
  followed over the first 10 frames of Crossing."""
  name, frames, gt = _read_otb_sample(otb_sample)[0]
  assert name == 'Crossing'
  cfg = ntt.nanotrack_v2_config()
  read = lambda p: np.ascontiguousarray(cv2.imread(str(p))[..., ::-1])
  state = ntt.init(v2_vars, cfg, read(frames[0]), gt[0])
  assert state.z_feat.shape == (1, 8, 8, 48)
  for i in range(1, 10):
    state, box, score = ntt.track(v2_vars, cfg, state, read(frames[i]))
    assert box.shape == (4,) and 0. <= float(score) <= 1.
    assert _iou_xywh(np.asarray(box), gt[i]) > 0.5, (i, np.asarray(box), gt[i])
  np.testing.assert_allclose(state.center, np.asarray(box[:2] + box[2:] / 2), atol=1e-4)


def test_benchmark_crop_flag():
  from benchmarks import common
  assert common.crop_modes("device, host", ntt.CROP_MODES) == ["device", "host"]
  assert common.crop_modes("host", ntt.CROP_MODES) == ["host"]
  for bad in ("", "gpu", "device,device", "device,,gpu"):
    with pytest.raises(SystemExit, match="--crop"):
      common.crop_modes(bad, ntt.CROP_MODES)

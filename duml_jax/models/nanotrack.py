"""NanoTrack (v1, v2) as flax.linen modules: backbone and anchor-free head.

NanoTrack (HonglinChu/SiamTrackers, NanoTrack folder; Apache-2.0) is a light
Siamese tracker. Its two parts are exposed separately so that the template
branch runs once per sequence:

* `NanoBackbone`: image -> features. A MobileNetV3-small trunk cut at stride
  16 (stem + 8 inverted-residual blocks with squeeze-excitation and
  hard-swish). A 255x255 search crop gives 16x16x48 features, a 127x127
  template crop 8x8x48 (checked against the ONNX graphs
  ``nanotrackv2_nanotrack_backbone_sim.onnx``: input 1x3x255x255, output
  1x48x16x16).
* `NanoHead`: (template features, search features) -> ``cls`` (B, 16, 16, 2)
  logits (background, foreground) and ``loc`` (B, 16, 16, 4) positive box
  distances (left, top, right, bottom) in search-crop pixels (the exp is
  applied inside, as in the ONNX head). The correlation is *pixel-wise*: every
  template position (8x8 = 64) is a channel, ``corr[b, i, j, k] = <x[b, i, j],
  z[b, k]>``, followed by a channel-attention (CA) layer and separable
  conv towers with ReLU6.

Input convention: float32 NHWC pixel values in 0..255, no mean/std
normalisation (as pysot). NanoTrack was trained on BGR frames (cv2.imread);
note that ``cv2.TrackerNano`` feeds the network RGB when given BGR frames
(its blob has ``swapRB=true``) -- the tracker config chooses the order
(`duml_jax.tracking.nanotrack_tracker`).

BatchNorm is folded into the preceding convolutions (inference only); the
converter (`duml_jax.convert.nanotrack`) folds the ``.pth`` statistics and
reads the already-folded ONNX initializers.
"""
import dataclasses
from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class BlockSpec:
  """One inverted-residual block of the backbone.

  Attributes:
    kernel: depthwise kernel size.
    expand: channels after the 1x1 expansion (no expansion conv when it equals
      the block's input channels).
    out: output channels.
    squeeze: squeeze-excitation hidden width (0: no SE).
    act: 'relu' or 'hswish'.
    stride: depthwise stride.
  """
  kernel: int
  expand: int
  out: int
  squeeze: int
  act: str
  stride: int


@dataclasses.dataclass(frozen=True)
class HeadSpec:
  """Head variant.

  Attributes:
    shared_corr: one correlation for both branches (v1) or one per branch (v2).
    adjust: 1x1 conv (BN folded) on template and search features before the
      correlation (v2).
    cls_tower: (kernel, channels) of each separable layer of the cls tower.
    bbox_tower: same for the box tower.
  """
  shared_corr: bool
  adjust: bool
  cls_tower: Tuple[Tuple[int, int], ...]
  bbox_tower: Tuple[Tuple[int, int], ...]


# Read off the ONNX graphs / .pth state dicts (shapes in the test file).
STEM_CHANNELS = 16
MOBILENETV3_SMALL_S16 = (
    BlockSpec(3, 16, 16, 8, 'relu', 2),
    BlockSpec(3, 72, 24, 0, 'relu', 2),
    BlockSpec(3, 88, 24, 0, 'relu', 1),
    BlockSpec(5, 96, 40, 24, 'hswish', 2),
    BlockSpec(5, 240, 40, 64, 'hswish', 1),
    BlockSpec(5, 240, 40, 64, 'hswish', 1),
    BlockSpec(5, 120, 48, 32, 'hswish', 1),
    BlockSpec(5, 144, 48, 40, 'hswish', 1),
)
HEADS = {
    'v1': HeadSpec(shared_corr=True, adjust=False,
                   cls_tower=((5, 128), (5, 128), (3, 128)),
                   bbox_tower=((3, 96), (3, 96), (5, 96), (5, 96))),
    'v2': HeadSpec(shared_corr=False, adjust=True,
                   cls_tower=((3, 96),) * 6, bbox_tower=((3, 96),) * 6),
}
BACKBONES = {'v1': MOBILENETV3_SMALL_S16, 'v2': MOBILENETV3_SMALL_S16}
VERSIONS = tuple(HEADS)


def hard_sigmoid(x):
  """relu6(x + 3) / 6 (= ONNX HardSigmoid with alpha 1/6, beta 1/2)."""
  return jnp.clip(x / 6. + 0.5, 0., 1.)


def hard_swish(x):
  return x * hard_sigmoid(x)


_ACTS = {'relu': nn.relu, 'hswish': hard_swish}


def _conv(features, kernel, stride=1, use_bias=True, name=None):
  """PyTorch-style dense conv: symmetric padding k // 2 (flax 'SAME' pads
  asymmetrically at stride 2)."""
  p = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((p, p), (p, p)), use_bias=use_bias, name=name)


class DepthwiseConv(nn.Module):
  """Depthwise k x k conv, padding k // 2, as k*k shifted multiply-adds.

  Same parameters as ``nn.Conv(C, (k, k), feature_group_count=C)`` (kernel
  (k, k, 1, C)); XLA's CPU grouped convolution is 10-60x slower than this
  fused form at these sizes (measured for every layer of the backbone).
  """
  kernel_size: int
  stride: int = 1
  use_bias: bool = True

  @nn.compact
  def __call__(self, x):
    k, s, c = self.kernel_size, self.stride, x.shape[-1]
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (k, k, 1, c))
    p = k // 2
    h, w = x.shape[1:3]
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    y = 0.
    for i in range(k):
      for j in range(k):
        y = y + xp[:, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s] * kernel[i, j, 0]
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (c,))
    return y


class SqueezeExcite(nn.Module):
  """x * hard_sigmoid(fc2(relu(fc1(mean_hw(x)))))."""
  squeeze: int

  @nn.compact
  def __call__(self, x):
    s = jnp.mean(x, axis=(1, 2))
    s = nn.relu(nn.Dense(self.squeeze, name='fc1')(s))
    s = hard_sigmoid(nn.Dense(x.shape[-1], name='fc2')(s))
    return x * s[:, None, None, :]


class InvertedResidual(nn.Module):
  """MobileNetV3 block (BN folded).

  With expansion: expand 1x1 -> act -> dw -> [SE] -> act -> project 1x1.
  Without (input channels == expand): dw -> act -> [SE] -> project 1x1.
  Residual when stride 1 and input channels == output channels.
  """
  spec: BlockSpec

  @nn.compact
  def __call__(self, x):
    s = self.spec
    act = _ACTS[s.act]
    cin = x.shape[-1]
    y = x
    if s.expand != cin:
      y = act(_conv(s.expand, 1, name='expand')(y))
      y = DepthwiseConv(s.kernel, s.stride, name='dw')(y)
      if s.squeeze:
        y = SqueezeExcite(s.squeeze, name='se')(y)
      y = act(y)
    else:
      y = act(DepthwiseConv(s.kernel, s.stride, name='dw')(y))
      if s.squeeze:
        y = SqueezeExcite(s.squeeze, name='se')(y)
    y = _conv(s.out, 1, name='project')(y)
    if s.stride == 1 and cin == s.out:
      y = x + y
    return y


class NanoBackbone(nn.Module):
  """Image (B, H, W, 3) float 0..255 -> features (B, H/16, W/16, 48)."""
  blocks: Tuple[BlockSpec, ...] = MOBILENETV3_SMALL_S16

  @nn.compact
  def __call__(self, x):
    x = hard_swish(_conv(STEM_CHANNELS, 3, 2, name='stem')(x))
    for i, spec in enumerate(self.blocks):
      x = InvertedResidual(spec, name=f'block{i + 1}')(x)
    return x


def pixelwise_xcorr(z, x):
  """Pixel-wise correlation: (B,h,w,C), (B,H,W,C) -> (B,H,W,h*w).

  Output channel k is template position k in row-major order (as the ONNX
  graph's reshape of the NCHW template to (B, C, h*w)).
  """
  b, h, w, c = z.shape
  return jnp.einsum('bkc,byxc->byxk', z.reshape(b, h * w, c), x,
                    precision=jax.lax.Precision.HIGHEST)


class PixelwiseCorr(nn.Module):
  """[1x1 adjust convs] -> pixel-wise xcorr -> channel attention (CA)."""
  adjust: bool

  @nn.compact
  def __call__(self, z, x):
    if self.adjust:
      z = _conv(z.shape[-1], 1, name='kernel_adjust')(z)
      x = _conv(x.shape[-1], 1, name='search_adjust')(x)
    y = pixelwise_xcorr(z, x)
    n = y.shape[-1]
    a = nn.relu(nn.Dense(n, name='ca_fc1')(jnp.mean(y, axis=(1, 2))))
    a = nn.sigmoid(nn.Dense(n, name='ca_fc2')(a))
    return y * a[:, None, None, :]


class SeparableTower(nn.Module):
  """Layers of depthwise k x k (no bias) -> 1x1 (BN folded) -> ReLU6."""
  layers: Tuple[Tuple[int, int], ...]

  @nn.compact
  def __call__(self, x):
    for i, (k, ch) in enumerate(self.layers):
      x = DepthwiseConv(k, use_bias=False, name=f'dw{i}')(x)
      x = jnp.clip(_conv(ch, 1, name=f'pw{i}')(x), 0., 6.)
    return x


class NanoHead(nn.Module):
  """(template feats (B,8,8,C), search feats (B,16,16,C)) -> (cls, loc).

  cls: (B, 16, 16, 2) logits, channel 1 = foreground (softmax in the tracker).
  loc: (B, 16, 16, 4) = exp(.) distances (l, t, r, b) from each grid point,
    in search-crop pixels.
  """
  spec: HeadSpec = HEADS['v2']

  @nn.compact
  def __call__(self, z, x):
    s = self.spec
    if s.shared_corr:
      fc = fr = PixelwiseCorr(s.adjust, name='corr')(z, x)
    else:
      fc = PixelwiseCorr(s.adjust, name='corr_cls')(z, x)
      fr = PixelwiseCorr(s.adjust, name='corr_reg')(z, x)
    cls = SeparableTower(s.cls_tower, name='cls_tower')(fc)
    cls = _conv(2, 1, name='cls_pred')(cls)
    loc = SeparableTower(s.bbox_tower, name='bbox_tower')(fr)
    loc = jnp.exp(_conv(4, 1, name='bbox_pred')(loc))
    return cls, loc


def build(version='v2'):
  """(NanoBackbone, NanoHead) for a NanoTrack version ('v1' or 'v2')."""
  if version not in HEADS:
    raise ValueError(f'NanoTrack version {version!r} not supported; '
                     f'choose one of {VERSIONS}')
  return NanoBackbone(BACKBONES[version]), NanoHead(HEADS[version])


def init_variables(rng, version='v2', template_size=127, search_size=255):
  """Random variables {'backbone': ..., 'head': ...} (shape reference)."""
  backbone, head = build(version)
  kb, kh = jax.random.split(rng)
  zimg = jnp.zeros((1, template_size, template_size, 3), jnp.float32)
  ximg = jnp.zeros((1, search_size, search_size, 3), jnp.float32)
  vb = backbone.init(kb, zimg)
  z = backbone.apply(vb, zimg)
  x = backbone.apply(vb, ximg)
  vh = head.init(kh, z, x)
  return {'backbone': vb, 'head': vh}

"""ResNet backbone with blocks 2-4 interpolated to stride 8 (DuML, Appendix B).

DuML replaces the dilated ResNet-50 of SiamRPN++ by the *original* ResNet and
bilinearly interpolates the outputs of the last two blocks to the stride-8 grid
of block 2 ("Faster Speed with Interpolation", paper Appendix B).

The network is torchvision's ResNet (v1.5: the stride of a Bottleneck sits on
its 3x3 conv), up to `layer4` (no average pool, no fc):

  conv1 7x7/2 pad 3 -> bn1 -> relu -> maxpool 3x3/2 pad 1 -> layer1..layer4

All paddings are explicit so that every output matches torchvision exactly (see
`duml_jax/convert/torch_resnet.py` for the weight converter and
`tests/test_backbone.py` for the parity test). With these strides cell j of
layerK is centred on input pixel stride_K * j (8j, 16j, 32j for layer2..4).

Input convention: float32 RGB in 0..255, NHWC. `normalize_image` is the only
place where the ImageNet mean/std is applied; `ResNet.__call__` calls it first.

Parameter names follow torchvision's state-dict keys: `conv1`, `bn1`, and block
`layerK.I` becomes the submodule `layerK_I` with children `conv1`, `bn1`, ...,
`downsample_conv`, `downsample_bn`.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from duml_jax.models import layers

# torchvision ImageNet statistics of RGB/255 images.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Output strides of layer2, layer3, layer4 with the original (undilated) ResNet.
FEATURE_STRIDES = (8, 16, 32)

# Stage names, indexed by `backbone_stage_of`: 0 is the stem (conv1 + bn1).
STAGE_NAMES = ('conv1', 'layer1', 'layer2', 'layer3', 'layer4')

BACKBONE_NAMES = ('resnet50', 'resnet18', 'tiny', 'resnet50_dilated')

ModuleDef = Any


def normalize_image(x: jax.Array) -> jax.Array:
  """ImageNet normalisation of RGB images in 0..255 (torchvision convention).

  Returns (x / 255 - mean) / std per channel, with mean = (0.485, 0.456, 0.406)
  and std = (0.229, 0.224, 0.225). This is what torchvision's ImageNet weights
  expect; it is the single place in duml_jax where the mean/std is applied.

  Args:
    x: (..., 3) float RGB values in 0..255 (channels last).

  Returns:
    Array of the same shape and dtype (float32 for integer inputs).
  """
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.float32)
  mean = jnp.asarray(IMAGENET_MEAN, x.dtype) * 255.0
  std = jnp.asarray(IMAGENET_STD, x.dtype) * 255.0
  return (x - mean) / std


def _interp_matrix(n_in: int, n_out: int, scale: int) -> np.ndarray:
  """(n_out, n_in) linear-interpolation weights with aligned cell centres.

  Output cell i samples input coordinate i / scale (cell centres at stride
  s_in * j map onto s_in / scale * i), clamped to the last input cell.
  """
  pos = np.minimum(np.arange(n_out, dtype=np.float64) / scale, n_in - 1)
  lo = np.floor(pos).astype(np.int64)
  hi = np.minimum(lo + 1, n_in - 1)
  frac = pos - lo
  w = np.zeros((n_out, n_in), np.float64)
  w[np.arange(n_out), lo] += 1.0 - frac
  w[np.arange(n_out), hi] += frac
  return w.astype(np.float32)


def resize_aligned(x: jax.Array, out_hw: tuple[int, int],
                   scale: int) -> jax.Array:
  """Bilinear upsampling by an integer `scale` that keeps cell centres aligned.

  Paper Appendix B interpolates blocks 3 and 4 to block 2's stride-8 grid. With
  torchvision strides, cell j of a stride-S map is centred on input pixel S*j,
  so output cell i of the stride-8 grid samples the stride-S map at coordinate
  i * 8 / S = i / scale (scale = S / 8: 2 for layer3, 4 for layer4). Samples
  beyond the last input cell (at most (scale - 1) / scale of a cell, on the
  bottom/right border only) repeat the last cell.

  This equals `jax.image.scale_and_translate(x, ..., scale=s,
  translation=0.5 - 0.5 * s, method='linear')` at every in-range cell; that
  function is not used because it returns zeros where the sample lies more
  than half a cell past the last centre (layer4 cell 31 for a 255 input).

  Args:
    x: (B, H, W, C) features.
    out_hw: output (H', W').
    scale: integer upsampling factor.

  Returns:
    (B, H', W', C) array of x's dtype.
  """
  mh = jnp.asarray(_interp_matrix(x.shape[1], out_hw[0], scale), x.dtype)
  mw = jnp.asarray(_interp_matrix(x.shape[2], out_hw[1], scale), x.dtype)
  x = jnp.einsum('oh,bhwc->bowc', mh, x, precision=jax.lax.Precision.HIGHEST)
  return jnp.einsum('pw,bowc->bopc', mw, x, precision=jax.lax.Precision.HIGHEST)


def _pool_taps(xp: jax.Array, k: int, stride: int, out_hw: tuple[int, int]):
  """xp[:, dy::stride, dx::stride] cut to out_hw, for the k*k window taps (dy, dx) row-major."""
  b, _, _, c = xp.shape
  ho, wo = out_hw
  for dy in range(k):
    for dx in range(k):
      yield jax.lax.slice(
          xp, (0, dy, dx, 0), (b, dy + stride * (ho - 1) + 1, dx + stride * (wo - 1) + 1, c),
          (1, stride, stride, 1))


def _max_pool(x, k, stride, pad):
  # Padding first, then a VALID pool: the same values and speed as padding inside the
  # pool, and the form that jax2onnx exports correctly (duml_jax/export.py).
  xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=-jnp.inf)
  return nn.max_pool(xp, window_shape=(k, k), strides=(stride, stride), padding="VALID")


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def max_pool(x: jax.Array, k: int = 3, stride: int = 2, pad: int = 1) -> jax.Array:
  """k x k max pooling (NHWC) with -inf padding, as torchvision's `MaxPool2d(k, stride, pad)`.

  The forward is `nn.max_pool`; the JVP is written out: each output takes the
  tangent of the first maximum of its window in row-major order (the element
  `select_and_scatter` picks), through k*k strided slices, so that reverse mode
  transposes it into interior-padded adds. XLA's CPU backend differentiates
  `reduce_window` through a variadic (value, index) `reduce_window` over iota
  arrays and a `select_and_scatter`, ~3x slower; for the `tiny` backbone that
  was ~100 ms of a ~750 ms training step on 2 cores (measured 2026-12-01).
  Forward and reverse mode both work.
  """
  return _max_pool(x, k, stride, pad)


@max_pool.defjvp
def _max_pool_jvp(k, stride, pad, primals, tangents):
  (x,), (t,) = primals, tangents
  out = _max_pool(x, k, stride, pad)
  ho, wo = out.shape[1:3]
  widths = ((0, 0), (pad, pad), (pad, pad), (0, 0))
  xp = jnp.pad(x, widths, constant_values=-jnp.inf)
  taps = _pool_taps(jnp.pad(t, widths), k, stride, (ho, wo))
  taken = jnp.zeros(out.shape, bool)
  t_out = jnp.zeros(out.shape, t.dtype)
  for x_tap, t_tap in zip(_pool_taps(xp, k, stride, (ho, wo)), taps):
    hit = (x_tap == out) & ~taken
    taken = taken | hit
    t_out = t_out + jnp.where(hit, t_tap, jnp.zeros((), t.dtype))
  return out, t_out


class BasicBlock(nn.Module):
  """torchvision BasicBlock: 3x3/stride -> 3x3, identity or 1x1 projection."""
  filters: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef
  expansion = 1

  @nn.compact
  def __call__(self, x):
    out_ch = self.filters * self.expansion
    y = self.conv(self.filters, (3, 3), self.strides, padding=((1, 1), (1, 1)),
                  name='conv1')(x)
    y = nn.relu(self.norm(name='bn1')(y))
    y = self.conv(self.filters, (3, 3), 1, padding=((1, 1), (1, 1)),
                  name='conv2')(y)
    y = self.norm(name='bn2')(y)
    if self.strides != 1 or x.shape[-1] != out_ch:
      x = self.conv(out_ch, (1, 1), self.strides, padding='VALID',
                    name='downsample_conv')(x)
      x = self.norm(name='downsample_bn')(x)
    return nn.relu(x + y)


class Bottleneck(nn.Module):
  """torchvision Bottleneck (v1.5): 1x1 -> 3x3/stride -> 1x1 (x4 channels)."""
  filters: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef
  expansion = 4

  @nn.compact
  def __call__(self, x):
    out_ch = self.filters * self.expansion
    y = self.conv(self.filters, (1, 1), 1, padding='VALID', name='conv1')(x)
    y = nn.relu(self.norm(name='bn1')(y))
    y = self.conv(self.filters, (3, 3), self.strides, padding=((1, 1), (1, 1)),
                  name='conv2')(y)
    y = nn.relu(self.norm(name='bn2')(y))
    y = self.conv(out_ch, (1, 1), 1, padding='VALID', name='conv3')(y)
    y = self.norm(name='bn3')(y)
    if self.strides != 1 or x.shape[-1] != out_ch:
      x = self.conv(out_ch, (1, 1), self.strides, padding='VALID',
                    name='downsample_conv')(x)
      x = self.norm(name='downsample_bn')(x)
    return nn.relu(x + y)


class ResNet(nn.Module):
  """Undilated ResNet returning blocks 2-4 on the stride-8 grid (Appendix B).

  Attributes:
    stage_sizes: number of blocks in layer1..layer4.
    block_cls: `BasicBlock` or `Bottleneck`.
    num_filters: block width of layer1; layerK has num_filters * 2**(K-1).
    stem_filters: output channels of conv1 (64 in torchvision).
    frozen_bn: BatchNorm always uses its running statistics (never updates
      them), also when `train=True`.
    axis_name: mapped axis over which BatchNorm statistics are averaged in
      training (e.g. 'data'); None for per-device statistics.
    dtype: computation dtype (parameters stay float32).
  """
  stage_sizes: Sequence[int]
  block_cls: ModuleDef
  num_filters: int = 64
  stem_filters: int = 64
  frozen_bn: bool = False
  axis_name: str | None = None
  dtype: Any = jnp.float32
  norm: str = 'batch'

  @nn.compact
  def stages(self, x: jax.Array, train: bool) -> tuple[jax.Array, ...]:
    """Raw layer2, layer3, layer4 features at strides 8, 16, 32.

    Args:
      x: (B, H, W, 3) float RGB in 0..255.
      train: BatchNorm uses batch statistics (unless `frozen_bn`).

    Returns:
      (layer2, layer3, layer4), each (B, H_K, W_K, C_K).
    """
    # torchvision's init: kaiming_normal_(mode='fan_out', nonlinearity='relu').
    conv = functools.partial(
        nn.Conv, use_bias=False, dtype=self.dtype,
        kernel_init=nn.initializers.variance_scaling(2.0, 'fan_out',
                                                     'normal'))
    layers.check_norm(self.norm)
    if self.norm == 'group':
      norm = functools.partial(layers.group_norm, dtype=self.dtype)
    else:
      norm = functools.partial(
          nn.BatchNorm, use_running_average=self.frozen_bn or not train,
          momentum=0.9, epsilon=1e-5, dtype=self.dtype, axis_name=self.axis_name)
    x = normalize_image(x).astype(self.dtype)
    x = conv(self.stem_filters, (7, 7), 2, padding=((3, 3), (3, 3)),
             name='conv1')(x)
    x = nn.relu(norm(name='bn1')(x))
    x = max_pool(x, 3, 2, 1)
    outputs = []
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        x = self.block_cls(
            filters=self.num_filters * 2**i,
            strides=2 if i > 0 and j == 0 else 1,
            conv=conv, norm=norm, name=f'layer{i + 1}_{j}')(x)
      outputs.append(x)
    return tuple(outputs[1:])

  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, ...]:
    """Blocks 2-4 on block 2's stride-8 grid (paper Appendix B).

    Args:
      x: (B, H, W, 3) float RGB in 0..255 (not normalised).
      train: BatchNorm uses batch statistics (unless `frozen_bn`).

    Returns:
      (layer2, layer3, layer4), each (B, H8, W8, C_K) where H8, W8 is layer2's
      size (32 for a 255 input, 16 for 127); layer3 and layer4 are bilinearly
      upsampled with `resize_aligned` by 2 and 4.
    """
    f2, f3, f4 = self.stages(x, train)
    hw = f2.shape[1:3]
    return (f2, resize_aligned(f3, hw, 2), resize_aligned(f4, hw, 4))


class DilatedBottleneck(nn.Module):
  """pysot's `resnet_atrous` Bottleneck: the 3x3 conv dilated, the projection 3x3 too.

  conv2 and the projection use padding `dilation` at stride 1 ("same") and 0 at stride 2
  (layer2's first block: pysot's `2 - stride`); the projection (when `project`) is a 1x1
  conv for layer1 and a 3x3 conv at the block's stride and dilation for layers 2-4. `dilation` here is what the block itself uses (pysot's first
  block of a dilated layer halves the layer's rate; `DilatedResNet` passes it halved).
  """
  filters: int
  strides: int
  dilation: int
  project: bool
  project_kernel: int
  conv: ModuleDef
  norm: ModuleDef
  expansion = 4

  @nn.compact
  def __call__(self, x):
    out_ch = self.filters * self.expansion
    d = self.dilation
    pad = d if self.strides == 1 else 0
    y = self.conv(self.filters, (1, 1), 1, padding='VALID', name='conv1')(x)
    y = nn.relu(self.norm(name='bn1')(y))
    y = self.conv(self.filters, (3, 3), self.strides, padding=((pad, pad), (pad, pad)),
                  kernel_dilation=(d, d), name='conv2')(y)
    y = nn.relu(self.norm(name='bn2')(y))
    y = self.conv(out_ch, (1, 1), 1, padding='VALID', name='conv3')(y)
    y = self.norm(name='bn3')(y)
    if self.project:
      k = self.project_kernel
      x = self.conv(out_ch, (k, k), self.strides,
                    padding=((pad, pad), (pad, pad)) if k > 1 else 'VALID',
                    kernel_dilation=(d, d), name='downsample_conv')(x)
      x = self.norm(name='downsample_bn')(x)
    return nn.relu(x + y)


class DilatedResNet(ResNet):
  """SiamRPN++'s modified ResNet-50 (pysot `resnet_atrous`, paper Appendix B's baseline).

  conv1 7x7/2 with padding 0, maxpool 3x3/2 pad 1, layer2 at stride 2 with a 3x3 stride-2
  projection (padding 0), layers 3 and 4 at stride 1 with dilation 2 and 4 (their first
  block at half the rate). Every layer keeps layer2's stride-8 grid: 15x15 for a 127
  template, 31x31 for a 255 search, cell k centred on crop pixel 8 k + 7 (`FEATURE_OFFSET`).
  The model crops the template to 7x7 (pysot's neck) and gets 25x25 score maps, the
  interpolated network's. Parameter names are torchvision's, as `ResNet`'s; the layer2-4
  projections are 3x3 here (the converter puts a torchvision 1x1 kernel at their centre).
  """
  dilations: Sequence[int] = (1, 1, 2, 4)

  @nn.compact
  def stages(self, x: jax.Array, train: bool) -> tuple[jax.Array, ...]:
    conv = functools.partial(
        nn.Conv, use_bias=False, dtype=self.dtype,
        kernel_init=nn.initializers.variance_scaling(2.0, 'fan_out', 'normal'))
    layers.check_norm(self.norm)
    if self.norm == 'group':
      norm = functools.partial(layers.group_norm, dtype=self.dtype)
    else:
      norm = functools.partial(
          nn.BatchNorm, use_running_average=self.frozen_bn or not train,
          momentum=0.9, epsilon=1e-5, dtype=self.dtype, axis_name=self.axis_name)
    x = normalize_image(x).astype(self.dtype)
    x = conv(self.stem_filters, (7, 7), 2, padding='VALID', name='conv1')(x)
    x = nn.relu(norm(name='bn1')(x))
    x = max_pool(x, 3, 2, 1)
    outputs = []
    for i, num_blocks in enumerate(self.stage_sizes):
      rate = self.dilations[i]
      strides = 2 if i == 1 else 1
      for j in range(num_blocks):
        first = j == 0
        x = DilatedBottleneck(
            filters=self.num_filters * 2**i, strides=strides if first else 1,
            dilation=max(rate // 2, 1) if first and rate > 1 else rate,
            project=first, project_kernel=1 if i == 0 else 3,
            conv=conv, norm=norm, name=f'layer{i + 1}_{j}')(x)
      outputs.append(x)
    return tuple(outputs[1:])

  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, ...]:
    """(layer2, layer3, layer4), each (B, G, G, C_K) on the same stride-8 grid (no resize)."""
    return self.stages(x, train)


# Crop pixel (index) of feature cell 0's centre, per backbone: cell k sits at 8 k + offset.
FEATURE_OFFSET = {'resnet50': 0, 'resnet18': 0, 'tiny': 0, 'resnet50_dilated': 7}


def feature_grid(name: str, size: int, stride: int = 8) -> int:
  """Cells of the stride-8 feature grid of a `size` crop: 32 / 16 for 255 / 127 with the
  interpolated backbones, 31 / 15 with the dilated one (no padding in conv1 and layer2's
  stride-2 convs)."""
  if FEATURE_OFFSET[name]:
    return (size - FEATURE_OFFSET[name]) // stride
  return size // stride + 1


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2),
                             block_cls=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3),
                             block_cls=Bottleneck)
# CPU-sized ResNet with torchvision's strides (same grids as ResNet-50):
# conv1 16 channels, one BasicBlock per layer, widths 16/32/64/128. On two CPU
# cores the stem dominates the backbone's cost: widths 16/.. instead of 8/..
# cost ~5% more per training step (0.62 vs 0.59 s at batch 16) and gave the
# tracker a better box (docs/experiments.md).
TinyResNet = functools.partial(ResNet, stage_sizes=(1, 1, 1, 1),
                               block_cls=BasicBlock, num_filters=16,
                               stem_filters=16)

ResNet50Dilated = functools.partial(DilatedResNet, stage_sizes=(3, 4, 6, 3),
                                    block_cls=DilatedBottleneck)

_BUILDERS = {'resnet50': ResNet50, 'resnet18': ResNet18, 'tiny': TinyResNet,
             'resnet50_dilated': ResNet50Dilated}


def build_backbone(name: str, frozen_bn: bool = False,
                   axis_name: str | None = None, dtype: Any = jnp.float32,
                   norm: str = 'batch') -> ResNet:
  """Backbone named by the config key `model.backbone`.

  Args:
    name: one of 'resnet50', 'resnet18', 'tiny', 'resnet50_dilated'.
    frozen_bn: BatchNorm always in eval mode (running statistics).
    axis_name: data-parallel axis for synchronised BatchNorm statistics.
    dtype: computation dtype.
    norm: 'batch' (torchvision) or 'group' (GroupNorm, see `layers.group_norm`).

  Raises:
    ValueError: unknown name.
  """
  if name not in _BUILDERS:
    raise ValueError(f'config model.backbone={name!r} is not a known backbone; '
                     f'allowed values: {", ".join(BACKBONE_NAMES)}')
  return _BUILDERS[name](frozen_bn=frozen_bn, axis_name=axis_name, dtype=dtype, norm=norm)


def feature_channels(name: str) -> tuple[int, int, int]:
  """Channels of the (layer2, layer3, layer4) outputs of that backbone."""
  model = build_backbone(name)
  exp = model.block_cls.expansion
  return tuple(model.num_filters * 2**k * exp for k in (1, 2, 3))


def _key_name(key: Any) -> str:
  """A path element as a string (accepts jax.tree_util key entries)."""
  for attr in ('key', 'name', 'idx'):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def backbone_stage_of(path: Sequence[Any]) -> int | None:
  """Stage index of a backbone parameter: 0 = conv1/bn1, K = layerK, else None.

  `path` is a parameter path (strings or `jax.tree_util` key entries, e.g. from
  `jax.tree_util.tree_map_with_path`). If it contains 'backbone', the element
  after it is inspected (full-model paths such as
  ('params', 'backbone', 'layer3_0', 'conv1', 'kernel')); otherwise the path is
  taken as relative to the backbone (('layer3_0', 'conv1', 'kernel')). Paths
  outside the backbone give None.
  """
  names = [_key_name(k) for k in path]
  if 'backbone' in names:
    names = names[names.index('backbone') + 1:]
  if not names:
    return None
  head = names[0]
  if head in ('conv1', 'bn1'):
    return 0
  if head.startswith('layer') and '_' in head:
    stage = head[len('layer'):].split('_', 1)[0]
    if stage in ('1', '2', '3', '4'):
      return int(stage)
  return None


def backbone_stage_label(path: Sequence[Any], other: str = 'other') -> str:
  """'conv1', 'layer1'..'layer4' for backbone parameters, `other` otherwise.

  Meant as the label function of `optax.multi_transform`:
  `jax.tree_util.tree_map_with_path(
      lambda p, _: backbone_stage_label(p), params)`.
  """
  stage = backbone_stage_of(path)
  return other if stage is None else STAGE_NAMES[stage]


def count_params(variables: Any) -> int:
  """Number of trainable scalars: `variables['params']` (or the whole tree).

  BatchNorm running statistics live in 'batch_stats' and are not counted, as
  in torch's `module.parameters()`. Works on arrays or `jax.eval_shape` output.
  """
  if isinstance(variables, dict) and 'params' in variables:
    variables = variables['params']
  return int(sum(int(np.prod(leaf.shape))
                 for leaf in jax.tree_util.tree_leaves(variables)))

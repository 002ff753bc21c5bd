"""The DuML network in PyTorch eager, written from the Flax code, for side-by-side timing.

Same network as `duml_jax.models.duml.DuML` (inference pieces and the
pair-wise forward), layer for layer, NCHW:

  backbone   torchvision-layout ResNet-50 / ResNet-18 / tiny (undilated), blocks
             3-4 bilinearly resized to block 2's stride-8 grid with the same
             aligned interpolation matrices (paper Appendix B,
             `duml_jax.models.backbone.resize_aligned`)
  neck       1x1 conv + BN per level, template centre-cropped to 8x8 cells
  heads      per level 3x3 conv+BN+ReLU on both inputs, depth-wise xcorr
             (grouped conv, the pysot formulation), 1x1+BN+ReLU, 1x1;
             levels fused with softmax weights (Eq. 2)
  online     levels fused with softmax weights (Eq. 3), 3x3 conv, instance
             L2 norm; initial filter (3x3 conv, centre crop, adaptive average
             pool to k x k); scores of per-sample filters ('SAME' conv,
             window [4:29])

Module and parameter names mirror the Flax variable paths (the backbone uses
torchvision's state-dict keys, so `duml_jax.convert.torch_resnet` converts
its state dict back), and `state_dict_from_flax` converts Flax variables into
a state dict for `TorchDuML.load_state_dict`. The inner SD-GN optimiser and
the learned residual functions are not part of this module (tracking-time
filter updates are amortised and benchmarked on the JAX side only).

torch is optional: importing this module raises ImportError without it;
callers (`torch_compare.py`, `tests/test_torch_duml.py`) skip cleanly.
"""
import dataclasses
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from duml_jax import config_lib
from duml_jax.models import backbone as backbone_lib
from duml_jax.models import layers


def _arch(name):
  """(stage sizes, block kind, layer1 width, stem width) read from `backbone._BUILDERS`,
  so that the torch mirror cannot drift from the JAX definition."""
  if name not in backbone_lib._BUILDERS:
    raise ValueError(f"model.backbone={name!r}: torch_duml knows {sorted(backbone_lib._BUILDERS)}")
  kw = dict(backbone_lib._BUILDERS[name].keywords)
  defaults = {f.name: f.default for f in dataclasses.fields(backbone_lib.ResNet)}
  get = lambda k: kw.get(k, defaults[k])
  kind = "bottleneck" if get("block_cls") is backbone_lib.Bottleneck else "basic"
  return tuple(get("stage_sizes")), kind, get("num_filters"), get("stem_filters")



def _bn(c, norm="batch"):
  """BatchNorm2d, or GroupNorm for `model.norm='group'` (`duml_jax.models.layers`)."""
  if norm == "group":
    return nn.GroupNorm(layers.GROUPS, c, eps=1e-5)
  return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, cin, filters, stride, norm="batch"):
    super().__init__()
    out = filters * self.expansion
    self.conv1 = nn.Conv2d(cin, filters, 3, stride, 1, bias=False)
    self.bn1 = _bn(filters, norm)
    self.conv2 = nn.Conv2d(filters, filters, 3, 1, 1, bias=False)
    self.bn2 = _bn(filters, norm)
    self.downsample = None
    if stride != 1 or cin != out:
      self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), _bn(out, norm))

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    s = x if self.downsample is None else self.downsample(x)
    return F.relu(s + y)


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, cin, filters, stride, norm="batch"):
    super().__init__()
    out = filters * self.expansion
    self.conv1 = nn.Conv2d(cin, filters, 1, bias=False)
    self.bn1 = _bn(filters, norm)
    self.conv2 = nn.Conv2d(filters, filters, 3, stride, 1, bias=False)
    self.bn2 = _bn(filters, norm)
    self.conv3 = nn.Conv2d(filters, out, 1, bias=False)
    self.bn3 = _bn(out, norm)
    self.downsample = None
    if stride != 1 or cin != out:
      self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), _bn(out, norm))

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = F.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    s = x if self.downsample is None else self.downsample(x)
    return F.relu(s + y)


class ResNet(nn.Module):
  """Undilated torchvision ResNet to layer4; returns layer2-4 on the stride-8 grid."""

  def __init__(self, arch, norm="batch"):
    super().__init__()
    sizes, kind, width, stem = _arch(arch)
    block = Bottleneck if kind == "bottleneck" else BasicBlock
    self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
    self.bn1 = _bn(stem, norm)
    cin = stem
    for i, n in enumerate(sizes):
      blocks = []
      for j in range(n):
        blocks.append(block(cin, width * 2**i, 2 if i > 0 and j == 0 else 1, norm))
        cin = width * 2**i * block.expansion
      setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
    self.register_buffer("mean", torch.tensor(backbone_lib.IMAGENET_MEAN).view(1, 3, 1, 1) * 255.,
                         persistent=False)
    self.register_buffer("std", torch.tensor(backbone_lib.IMAGENET_STD).view(1, 3, 1, 1) * 255.,
                         persistent=False)

  def forward(self, x):
    """x: (B, 3, H, W) float RGB 0..255 -> 3 x (B, C_K, H8, W8)."""
    x = (x - self.mean) / self.std
    x = F.relu(self.bn1(self.conv1(x)))
    x = F.max_pool2d(x, 3, 2, 1)
    x = self.layer1(x)
    f2 = self.layer2(x)
    f3 = self.layer3(f2)
    f4 = self.layer4(f3)
    hw = f2.shape[-2:]
    return f2, resize_aligned(f3, hw, 2), resize_aligned(f4, hw, 4)


_INTERP_CACHE = {}


def resize_aligned(x, out_hw, scale):
  """Aligned bilinear upsampling (the matrices of `backbone._interp_matrix`)."""
  key = (x.shape[-2], x.shape[-1], tuple(out_hw), scale, x.device)
  if key not in _INTERP_CACHE:
    _INTERP_CACHE[key] = (
        torch.from_numpy(backbone_lib._interp_matrix(x.shape[-2], out_hw[0], scale)).to(x.device),  # pylint: disable=protected-access
        torch.from_numpy(backbone_lib._interp_matrix(x.shape[-1], out_hw[1], scale)).to(x.device))  # pylint: disable=protected-access
  mh, mw = _INTERP_CACHE[key]
  return torch.matmul(torch.matmul(mh, x), mw.t())


class Neck(nn.Module):
  def __init__(self, in_channels, channels, norm="batch"):
    super().__init__()
    for i, c in enumerate(in_channels):
      setattr(self, f"adjust{i}", nn.Conv2d(c, channels, 1, bias=False))
      setattr(self, f"adjust{i}_bn", _bn(channels, norm))
    self.num_levels = len(in_channels)

  def forward(self, feats):
    return [getattr(self, f"adjust{i}_bn")(getattr(self, f"adjust{i}")(f))
            for i, f in enumerate(feats[:self.num_levels])]


def crop_template(feats, crop):
  out = []
  for f in feats:
    s = (f.shape[-2] - crop) // 2
    out.append(f[..., s:s + crop, s:s + crop])
  return out


def xcorr_depthwise(search, kernel):
  """(B, C, Hs, Ws) x (B, C, Hk, Wk) -> (B, C, Ho, Wo), as a grouped conv (pysot)."""
  b, c = kernel.shape[:2]
  x = search.reshape(1, b * c, search.shape[2], search.shape[3])
  k = kernel.reshape(b * c, 1, kernel.shape[2], kernel.shape[3])
  out = F.conv2d(x, k, groups=b * c)
  return out.reshape(b, c, out.shape[2], out.shape[3])


class DepthwiseXCorr(nn.Module):
  def __init__(self, hidden, out_channels, norm="batch"):
    super().__init__()
    self.conv_kernel = nn.Conv2d(hidden, hidden, 3, bias=False)
    self.kernel_bn = _bn(hidden, norm)
    self.conv_search = nn.Conv2d(hidden, hidden, 3, bias=False)
    self.search_bn = _bn(hidden, norm)
    self.head1 = nn.Conv2d(hidden, hidden, 1, bias=False)
    self.head_bn = _bn(hidden, norm)
    self.head2 = nn.Conv2d(hidden, out_channels, 1)

  def forward(self, z, x):
    k = F.relu(self.kernel_bn(self.conv_kernel(z)))
    s = F.relu(self.search_bn(self.conv_search(x)))
    f = F.relu(self.head_bn(self.head1(xcorr_depthwise(s, k))))
    return self.head2(f)


class MultiLevelXCorr(nn.Module):
  def __init__(self, hidden, out_channels, num_levels=3, norm="batch"):
    super().__init__()
    for i in range(num_levels):
      setattr(self, f"level{i}", DepthwiseXCorr(hidden, out_channels, norm))
    self.level_weights = nn.Parameter(torch.ones(num_levels))
    self.num_levels = num_levels

  def forward(self, zs, xs):
    w = torch.softmax(self.level_weights, 0)
    out = 0.
    for i in range(self.num_levels):
      out = out + w[i] * getattr(self, f"level{i}")(zs[i], xs[i])
    return out


def instance_l2_norm(x, scale, eps=1e-5):
  n = x.shape[1] * x.shape[2] * x.shape[3]
  ss = torch.sum(x * x, dim=(1, 2, 3), keepdim=True)
  return x * (scale * torch.sqrt(n / (ss + eps)))


class OnlineFeatures(nn.Module):
  def __init__(self, in_channels, feature_dim, filter_size, num_levels=3):
    super().__init__()
    self.fusion_weights = nn.Parameter(torch.ones(num_levels))
    self.proj = nn.Conv2d(in_channels, feature_dim, 3, 1, 1, bias=False)
    self.scale = math.sqrt(1. / (feature_dim * filter_size ** 2))
    self.num_levels = num_levels

  def forward(self, feats):
    w = torch.softmax(self.fusion_weights, 0)
    fused = 0.
    for i in range(self.num_levels):
      fused = fused + w[i] * feats[i]
    return instance_l2_norm(self.proj(fused), self.scale)


class FilterInitializer(nn.Module):
  def __init__(self, channels, filter_size, num_anchors, target_cells=None):
    super().__init__()
    self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
    self.filter_size, self.num_anchors, self.target_cells = filter_size, num_anchors, target_cells

  def forward(self, z_online):
    """(B, D, 16, 16) -> filters (B, A, D, k, k) (conv weights of the A outputs)."""
    x = self.conv(z_online)
    t = x.shape[-1] // 2 if self.target_cells is None else self.target_cells  # half the grid
    s = (x.shape[-1] - t) // 2
    x = x[..., s:s + t, s:s + t]
    f = F.adaptive_avg_pool2d(x, self.filter_size)
    return f[:, None].expand(-1, self.num_anchors, -1, -1, -1)


def online_scores(filt, x_online, crop):
  """Per-sample filters (B, A, D, k, k) on features (B, D, G, G) -> (B, A, S, S) window."""
  b, a, d, k, _ = filt.shape
  g = x_online.shape[-1]
  x = x_online.reshape(1, b * d, g, g)
  s = F.conv2d(x, filt.reshape(b * a, d, k, k), padding=k // 2, groups=b)
  s = s.reshape(b, a, g, g)
  return s[..., crop:g - crop + 1, crop:g - crop + 1]


class TorchDuML(nn.Module):
  """`duml_jax.models.duml.DuML` in PyTorch (NCHW); the same method names."""

  def __init__(self, backbone="resnet50", neck_channels=256, a_off=5, a_on=1,
               feature_dim=256, filter_size=5, template_cells=8, norm="batch"):
    super().__init__()
    self.template_cells, self.online_crop = template_cells, template_cells // 2
    self.a_off, self.a_on = a_off, a_on
    self.a_box = max(a_off, a_on)
    self.backbone = ResNet(backbone, norm)
    self.neck = Neck(backbone_lib.feature_channels(backbone), neck_channels, norm)
    if a_off:
      self.cls_head = MultiLevelXCorr(neck_channels, a_off, norm=norm)
    self.box_head = MultiLevelXCorr(neck_channels, 5 * self.a_box, norm=norm)
    if a_on:
      self.online_features = OnlineFeatures(neck_channels, feature_dim, filter_size)
      self.filter_init = FilterInitializer(feature_dim, filter_size, a_on)

  def _features(self, img):
    return self.neck(self.backbone(img))

  def template(self, z):
    f = self._features(z)
    return {"offline": crop_template(f, self.template_cells),
            "online": self.online_features(f) if self.a_on else None}

  def search(self, x):
    f = self._features(x)
    return {"offline": f, "online": self.online_features(f) if self.a_on else None}

  def offline_heads(self, zf, xf):
    """{'score': (B, A_off, 25, 25) | None, 'box': (B, 5 A_box, 25, 25)} (NCHW)."""
    box = self.box_head(zf["offline"], xf["offline"])
    score = self.cls_head(zf["offline"], xf["offline"]) if self.a_off else None
    return {"score": score, "box": box}

  def initial_filter(self, z_online):
    return self.filter_init(z_online)

  def forward(self, z, x):
    """Pair-wise forward (as `DuML.__call__`): heads and the initial filter's online scores."""
    zf, xf = self.template(z), self.search(x)
    out = self.offline_heads(zf, xf)
    if self.a_on:
      out["online"] = online_scores(self.initial_filter(zf["online"]), xf["online"],
                                    self.online_crop)
    return out


def from_model_config(model_config):
  """A `TorchDuML` with the shapes of a config's `model` section."""
  n = len(model_config.anchor_ratios)
  return TorchDuML(backbone=model_config.backbone, neck_channels=model_config.neck_channels,
                   a_off=config_lib.num_anchors(model_config.offline, n),
                   a_on=config_lib.num_anchors(model_config.online, n),
                   feature_dim=model_config.online_cfg.feature_dim,
                   filter_size=model_config.online_cfg.filter_size,
                   template_cells=config_lib.template_cells(model_config),
                   norm=config_lib.norm_name(model_config))


# ---------------------------------------------------------------------------- conversion

_LEAF = {("params", "kernel"): "weight", ("params", "scale"): "weight",
         ("params", "bias"): "bias", ("batch_stats", "mean"): "running_mean",
         ("batch_stats", "var"): "running_var"}
# Flax variables with no counterpart here (the inner optimiser's residual functions).
_SKIP = ("residual_fns",)


def _torch_module_path(mods):
  """Flax module path -> torch module path (backbone blocks use torchvision keys)."""
  out = []
  for m in mods:
    if m.startswith("layer") and "_" in m and m[5:].split("_")[0].isdigit():
      out.extend(m.split("_", 1))           # layer3_1 -> layer3.1
    elif m == "downsample_conv":
      out.extend(["downsample", "0"])
    elif m == "downsample_bn":
      out.extend(["downsample", "1"])
    else:
      out.append(m)
  return out


def state_dict_from_flax(variables):
  """Flax {'params', 'batch_stats'} of a DuML -> torch state dict (float32 tensors).

  Conv kernels (kh, kw, I, O) become (O, I, kh, kw); BN scale/bias/mean/var
  become weight/bias/running_mean/running_var; the fusion weights are copied.
  """
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  flat = traverse_util.flatten_dict({k: variables[k] for k in ("params", "batch_stats")
                                     if k in variables})
  out = {}
  for path, value in flat.items():
    coll, mods, leaf = path[0], path[1:-1], path[-1]
    if any(m in _SKIP for m in mods):
      continue
    value = np.asarray(value, np.float32)
    if (coll, leaf) in _LEAF:
      name = _LEAF[(coll, leaf)]
      if leaf == "kernel":
        value = value.transpose(3, 2, 0, 1)
    elif coll == "params" and leaf in ("level_weights", "fusion_weights"):
      name = leaf
    else:
      raise ValueError(f"state_dict_from_flax: no torch counterpart for {'/'.join(path)}")
    key = ".".join(_torch_module_path(list(mods)) + [name])
    out[key] = torch.from_numpy(np.array(value, np.float32, copy=True))
  return out


def load_flax(model: TorchDuML, variables):
  """Loads Flax variables into `model` (strict: every torch tensor must be covered)."""
  sd = state_dict_from_flax(variables)
  want = model.state_dict()
  # num_batches_tracked has no flax counterpart; keep torch's.
  for k, v in want.items():
    if k.endswith("num_batches_tracked"):
      sd[k] = v
  model.load_state_dict(sd, strict=True)
  return model


def nhwc_to_nchw(x):
  """numpy / jax (B, H, W, C) -> contiguous torch (B, C, H, W) float32."""
  return torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 3, 1, 2)))

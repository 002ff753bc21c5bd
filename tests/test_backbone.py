"""Tests for the ResNet backbone (paper Appendix B) and its torch converter."""
import functools
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from duml_jax.convert import torch_resnet
from duml_jax.models import backbone

REPO = pathlib.Path(__file__).resolve().parents[1]

_TORCH_REASON = ('PyTorch is not installed: parity with torchvision ResNet and '
                 'the checkpoint converter CLI cannot be tested')


def _abstract_variables(model, size=64):
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  return jax.eval_shape(
      lambda x: model.init(jax.random.key(0), x, train=False), x)


def _random_variables(name, seed=0):
  """Random backbone variables drawn with NumPy (jax.random compiles slowly)."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    kind = path[-1].key
    if kind == 'kernel':
      fan_in = np.prod(leaf.shape[:-1])
      value = rng.normal(0.0, np.sqrt(2.0 / fan_in), leaf.shape)
    elif kind in ('scale', 'var'):
      value = rng.uniform(0.5, 1.5, leaf.shape)
    else:  # BN bias and running mean
      value = rng.normal(0.0, 0.1, leaf.shape)
    return jnp.asarray(value, jnp.float32)

  abstract = _abstract_variables(backbone.build_backbone(name))
  return jax.tree_util.tree_map_with_path(draw, abstract)


@functools.lru_cache(maxsize=None)
def _tiny_variables():
  return _random_variables('tiny')


def _images(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(0, 255, shape),
                     jnp.float32)


# ----------------------------------------------------------------- shapes --

@pytest.mark.parametrize('name,channels', [
    ('resnet50', (512, 1024, 2048)),
    ('resnet18', (128, 256, 512)),
    ('tiny', (32, 64, 128)),
])
@pytest.mark.parametrize('size,grid', [(127, 16), (255, 32)])
def test_output_shapes(name, channels, size, grid):
  model = backbone.build_backbone(name)
  x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
  variables = jax.eval_shape(
      lambda x: model.init(jax.random.key(0), x, train=False), x)
  outs = jax.eval_shape(lambda v, x: model.apply(v, x, train=False),
                        variables, x)
  assert [o.shape for o in outs] == [(2, grid, grid, c) for c in channels]
  assert backbone.feature_channels(name) == channels


@pytest.mark.parametrize('size,raw', [(127, (16, 8, 4)), (255, (32, 16, 8))])
def test_raw_stage_sizes_have_torchvision_strides(size, raw):
  model = backbone.build_backbone('tiny')
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  variables = jax.eval_shape(
      lambda x: model.init(jax.random.key(0), x, train=False), x)
  outs = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=False, method='stages'),
      variables, x)
  assert tuple(o.shape[1] for o in outs) == raw
  assert tuple(o.shape[2] for o in outs) == raw


def test_tiny_forward_is_layer2_plus_aligned_resizes():
  model = backbone.build_backbone('tiny')
  variables = _tiny_variables()
  x = _images((2, 127, 127, 3), 1)
  outs, (f2, f3, f4) = jax.jit(lambda v, x: (
      model.apply(v, x, train=False),
      model.apply(v, x, train=False, method='stages')))(variables, x)
  assert all(bool(jnp.all(jnp.isfinite(o))) for o in outs)
  np.testing.assert_array_equal(outs[0], f2)
  np.testing.assert_allclose(outs[1], backbone.resize_aligned(f3, (16, 16), 2),
                             rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(outs[2], backbone.resize_aligned(f4, (16, 16), 4),
                             rtol=1e-6, atol=1e-6)
  assert float(jnp.std(outs[2])) > 0.0


# ----------------------------------------------------------------- resize --

@pytest.mark.parametrize('n_in,n_out,scale', [(16, 32, 2), (8, 32, 4),
                                              (8, 16, 2), (4, 16, 4)])
def test_resize_reproduces_ramp_at_aligned_centres(n_in, n_out, scale):
  # Cell j of a stride-(8*scale) map is centred on input pixel 8*scale*j; put
  # that pixel coordinate in the feature (rows) and twice it (columns).
  stride = 8 * scale
  rows = stride * jnp.arange(n_in, dtype=jnp.float32)
  feat = jnp.stack(jnp.broadcast_arrays(rows[:, None], 2 * rows[None, :]), -1)
  out = backbone.resize_aligned(feat[None], (n_out, n_out), scale)[0]
  want = 8.0 * np.arange(n_out, dtype=np.float32)
  interior = (n_in - 1) * scale + 1  # output cells with i / scale <= n_in - 1
  np.testing.assert_allclose(out[:interior, 0, 0], want[:interior], atol=1e-4)
  np.testing.assert_allclose(out[0, :interior, 1], 2 * want[:interior],
                             atol=1e-4)
  # Beyond the last centre the last cell is repeated (not zero, not ramped).
  np.testing.assert_allclose(out[interior:, 3, 0], rows[-1], atol=1e-4)
  # Same as jax.image.scale_and_translate (translation 0.5 - 0.5*s) wherever
  # that one samples within half a cell of the input.
  ref = jax.image.scale_and_translate(
      feat, (n_out, n_out, 2), (0, 1), jnp.array([scale, scale], jnp.float32),
      jnp.array([0.5 - 0.5 * scale] * 2, jnp.float32), 'linear',
      antialias=False)
  valid = int(np.floor((n_in - 0.5) * scale)) + 1
  np.testing.assert_allclose(out[:valid, :valid], ref[:valid, :valid],
                             atol=1e-4)


def test_normalize_image_is_imagenet_mean_std():
  mean = np.array(backbone.IMAGENET_MEAN) * 255
  std = np.array(backbone.IMAGENET_STD) * 255
  x = jnp.asarray(np.stack([mean, mean + std]), jnp.float32)
  np.testing.assert_allclose(backbone.normalize_image(x),
                             [[0, 0, 0], [1, 1, 1]], atol=1e-6)


# ------------------------------------------------------------ batch norm --

def test_frozen_bn_uses_running_stats_in_training():
  x = _images((2, 64, 64, 3), 2)
  variables = _tiny_variables()
  frozen = backbone.build_backbone('tiny', frozen_bn=True)
  live = backbone.build_backbone('tiny')

  @jax.jit
  def run(v, x):
    train_out, frozen_updates = frozen.apply(v, x, train=True,
                                             mutable=['batch_stats'])
    _, live_updates = live.apply(v, x, train=True, mutable=['batch_stats'])
    return (train_out, frozen.apply(v, x, train=False), frozen_updates,
            live_updates)

  out, eval_out, updates, live_updates = run(variables, x)
  jax.tree_util.tree_map(np.testing.assert_array_equal,
                         updates['batch_stats'], variables['batch_stats'])
  for a, b in zip(out, eval_out):
    np.testing.assert_array_equal(a, b)
  # Momentum 0.9 (torch's 0.1): new mean = 0.9 * old + 0.1 * batch mean of
  # conv1's output (7x7, stride 2, padding 3 on the normalised image).
  conv1 = jax.lax.conv_general_dilated(
      backbone.normalize_image(x), variables['params']['conv1']['kernel'],
      (2, 2), ((3, 3), (3, 3)), dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      precision=jax.lax.Precision.HIGHEST)
  old = variables['batch_stats']['bn1']['mean']
  np.testing.assert_allclose(live_updates['batch_stats']['bn1']['mean'],
                             0.9 * old + 0.1 * conv1.mean(axis=(0, 1, 2)),
                             rtol=1e-4, atol=1e-5)


def test_axis_name_syncs_bn_statistics():
  x = _images((2, 1, 32, 32, 3), 3)
  variables = _tiny_variables()
  synced = backbone.build_backbone('tiny', axis_name='data')
  step = lambda x: synced.apply(variables, x, train=True,
                                mutable=['batch_stats'])[1]
  per_shard = jax.jit(jax.vmap(step, axis_name='data'))(x)
  full = jax.jit(lambda x: backbone.build_backbone('tiny').apply(
      variables, x, train=True, mutable=['batch_stats'])[1])(
          x.reshape(2, 32, 32, 3))
  got = per_shard['batch_stats']['bn1']['mean']
  np.testing.assert_allclose(got[0], got[1], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got[0], full['batch_stats']['bn1']['mean'],
                             rtol=1e-4, atol=1e-5)


# ----------------------------------------------------- config and helpers --

def test_unknown_backbone_names_config_key():
  with pytest.raises(ValueError, match=r'model\.backbone.*resnet50.*resnet18'):
    backbone.build_backbone('resnet101')


def test_param_counts_match_torchvision_without_fc():
  # torchvision resnet50: 25,557,032 parameters, fc 2048*1000+1000 = 2,049,000.
  # torchvision resnet18: 11,689,512 parameters, fc 512*1000+1000 = 513,000.
  for name, want in [('resnet50', 25_557_032 - 2_049_000),
                     ('resnet18', 11_689_512 - 513_000)]:
    model = backbone.build_backbone(name)
    variables = _abstract_variables(model)
    assert backbone.count_params(variables) == want
  assert want == 11_176_512  # resnet18 checked last; resnet50 gives 23,508,032
  # Counting a bare params tree gives the same number as the variables dict.
  assert backbone.count_params(variables['params']) == want


def test_backbone_stage_of():
  assert backbone.backbone_stage_of(('conv1', 'kernel')) == 0
  assert backbone.backbone_stage_of(('bn1', 'scale')) == 0
  assert backbone.backbone_stage_of(('layer3_5', 'conv2', 'kernel')) == 3
  assert backbone.backbone_stage_of(
      ('params', 'backbone', 'layer4_0', 'downsample_bn', 'bias')) == 4
  assert backbone.backbone_stage_of(
      ('params', 'neck', 'conv1', 'kernel')) is None
  assert backbone.backbone_stage_of(('head', 'layer1_0')) is None
  params = {'backbone': _tiny_variables()['params'], 'neck': {'w': jnp.ones(2)}}
  labels = jax.tree_util.tree_map_with_path(
      lambda p, _: backbone.backbone_stage_label(p), params)
  assert labels['neck']['w'] == 'other'
  assert labels['backbone']['layer2_0']['downsample_conv']['kernel'] == 'layer2'
  assert set(jax.tree_util.tree_leaves(labels)) == {
      'conv1', 'layer1', 'layer2', 'layer3', 'layer4', 'other'}


# -------------------------------------------------------- torch reference --

def _torch_resnet(arch):
  """torchvision-equivalent ResNet (same state-dict keys) giving layer2-4."""
  torch = pytest.importorskip('torch', reason=_TORCH_REASON)
  nn = torch.nn

  class Basic(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(planes)
      self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(planes)
      self.relu = nn.ReLU()
      self.downsample = _downsample(inplanes, planes, stride, 1)

    def forward(self, x):
      y = self.relu(self.bn1(self.conv1(x)))
      y = self.bn2(self.conv2(y))
      return self.relu(y + (x if self.downsample is None
                            else self.downsample(x)))

  class Bottle(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(planes)
      self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(planes)
      self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
      self.bn3 = nn.BatchNorm2d(planes * 4)
      self.relu = nn.ReLU()
      self.downsample = _downsample(inplanes, planes, stride, 4)

    def forward(self, x):
      y = self.relu(self.bn1(self.conv1(x)))
      y = self.relu(self.bn2(self.conv2(y)))
      y = self.bn3(self.conv3(y))
      return self.relu(y + (x if self.downsample is None
                            else self.downsample(x)))

  def _downsample(inplanes, planes, stride, expansion):
    if stride == 1 and inplanes == planes * expansion:
      return None
    return nn.Sequential(
        nn.Conv2d(inplanes, planes * expansion, 1, stride, bias=False),
        nn.BatchNorm2d(planes * expansion))

  block, layers, width, stem = {
      'resnet50': (Bottle, (3, 4, 6, 3), 64, 64),
      'resnet18': (Basic, (2, 2, 2, 2), 64, 64),
      'tiny': (Basic, (1, 1, 1, 1), 16, 16)}[arch]

  class Net(nn.Module):

    def __init__(self):
      super().__init__()
      self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
      self.bn1 = nn.BatchNorm2d(stem)
      self.relu = nn.ReLU()
      self.maxpool = nn.MaxPool2d(3, 2, 1)
      inplanes = stem
      for i, n in enumerate(layers):
        blocks = []
        for j in range(n):
          stride = 2 if i > 0 and j == 0 else 1
          blocks.append(block(inplanes, width * 2**i, stride))
          inplanes = width * 2**i * block.expansion
        setattr(self, f'layer{i + 1}', nn.Sequential(*blocks))
      self.fc = nn.Linear(inplanes, 10)  # must be ignored by the converter

    def forward(self, x):
      x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
      x = self.layer1(x)
      f2 = self.layer2(x)
      f3 = self.layer3(f2)
      return f2, f3, self.layer4(f3)

  torch.manual_seed(0)
  net = Net()
  with torch.no_grad():  # random affine BN parameters and running statistics
    for m in net.modules():
      if isinstance(m, nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5)
        m.bias.normal_(0.0, 0.1)
        m.running_mean.normal_(0.0, 0.1)
        m.running_var.uniform_(0.5, 1.5)
  return net.eval()


def _numpy_state_dict(net):
  return {k: v.detach().numpy() for k, v in net.state_dict().items()}


@pytest.mark.parametrize('arch', ['tiny', 'resnet18', 'resnet50'])
def test_parity_with_torch_resnet(arch):
  torch = pytest.importorskip('torch', reason=_TORCH_REASON)
  net = _torch_resnet(arch)
  variables = torch_resnet.convert_state_dict(_numpy_state_dict(net), arch)
  rng = np.random.default_rng(0)
  x = rng.uniform(0, 255, size=(2, 64, 64, 3)).astype(np.float32)
  x_norm = np.array(backbone.normalize_image(x))
  with torch.no_grad():
    want = [t.numpy().transpose(0, 2, 3, 1)
            for t in net(torch.from_numpy(x_norm.transpose(0, 3, 1, 2)))]
  model = backbone.build_backbone(arch)
  got = model.apply(variables, jnp.asarray(x), train=False, method='stages')
  assert [g.shape[1] for g in got] == [8, 4, 2]
  for g, w in zip(got, want):
    scale = float(np.abs(w).max())
    assert scale > 1e-3
    np.testing.assert_allclose(np.asarray(g) / scale, w / scale, atol=1e-4)


def test_convert_reports_missing_unexpected_and_mismatched_keys():
  net_sd = {}
  # pylint: disable-next=protected-access
  expected = torch_resnet._expected_leaves('tiny')
  rng = np.random.default_rng(0)
  for path, leaf in expected.items():
    shape = leaf.shape
    if path[-1] == 'kernel':
      shape = (shape[3], shape[2], shape[0], shape[1])
    net_sd[_torch_key(path)] = rng.normal(size=shape).astype(np.float32)
  net_sd['fc.weight'] = np.zeros((10, 64), np.float32)
  net_sd['bn1.num_batches_tracked'] = np.zeros((), np.int64)
  variables = torch_resnet.convert_state_dict(net_sd, 'tiny')
  assert backbone.count_params(variables) == backbone.count_params(
      _tiny_variables())
  np.testing.assert_array_equal(
      variables['params']['layer1_0']['conv1']['kernel'],
      net_sd['layer1.0.conv1.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(
      variables['batch_stats']['layer2_0']['downsample_bn']['var'],
      net_sd['layer2.0.downsample.1.running_var'])

  broken = dict(net_sd)
  del broken['layer3.0.bn2.running_mean']
  broken['layer9.0.conv1.weight'] = np.zeros((1,), np.float32)
  broken['conv1.weight'] = np.zeros((16, 3, 5, 5), np.float32)
  with pytest.raises(ValueError) as err:
    torch_resnet.convert_state_dict(broken, 'tiny')
  msg = str(err.value)
  assert 'missing (1): batch_stats/layer3_0/bn2/mean' in msg
  assert 'unexpected (1): layer9.0.conv1.weight' in msg
  assert 'shape mismatches (1): conv1.weight' in msg
  with pytest.raises(ValueError, match='missing'):
    torch_resnet.convert_state_dict(net_sd, 'resnet18')


def _torch_key(path):
  """Inverse of the converter's key mapping, written out for the test."""
  collection, *modules, leaf = path
  names = []
  for m in modules:
    if m.startswith('layer'):
      names += m.split('_')
    elif m == 'downsample_conv':
      names += ['downsample', '0']
    elif m == 'downsample_bn':
      names += ['downsample', '1']
    else:
      names.append(m)
  torch_leaf = {('params', 'kernel'): 'weight', ('params', 'scale'): 'weight',
                ('params', 'bias'): 'bias',
                ('batch_stats', 'mean'): 'running_mean',
                ('batch_stats', 'var'): 'running_var'}[(collection, leaf)]
  return '.'.join(names + [torch_leaf])


def test_cli_round_trip_and_merge(tmp_path):
  torch = pytest.importorskip('torch', reason=_TORCH_REASON)
  net = _torch_resnet('tiny')
  pth = tmp_path / 'tiny.pth'
  torch.save({'state_dict': net.state_dict()}, pth)
  out_dir = tmp_path / 'converted'
  proc = subprocess.run(
      [sys.executable, '-m', 'duml_jax.convert.torch_resnet', '--input',
       str(pth), '--output', str(out_dir), '--arch', 'tiny'],
      cwd=REPO, capture_output=True, text=True, timeout=120,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'}, check=False)
  assert proc.returncode == 0, proc.stderr
  loaded = torch_resnet.load_params(out_dir)
  want = torch_resnet.convert_state_dict(_numpy_state_dict(net), 'tiny')
  jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, want)
  meta = json.loads((out_dir / 'meta.json').read_text())
  assert meta['arch'] == 'tiny'
  assert meta['num_params'] == backbone.count_params(want)

  # Merge into a full model's variables (backbone is the submodule 'backbone').
  init = _tiny_variables()
  model_vars = {'params': {'backbone': init['params'],
                           'neck': {'kernel': jnp.ones((3,))}},
                'batch_stats': {'backbone': init['batch_stats']}}
  merged = torch_resnet.load_pretrained_backbone(out_dir, model_vars)
  np.testing.assert_array_equal(merged['params']['neck']['kernel'], 1.0)
  np.testing.assert_array_equal(
      merged['batch_stats']['backbone']['bn1']['var'],
      net.bn1.running_var.detach().numpy())
  assert model_vars['params']['backbone'] is init['params']  # not mutated
  assert model_vars['batch_stats']['backbone'] is init['batch_stats']
  assert not np.allclose(init['batch_stats']['bn1']['var'],
                         merged['batch_stats']['backbone']['bn1']['var'])

  bad = jax.tree_util.tree_map(lambda a: a, loaded)
  bad['params']['layer2_0']['conv2']['kernel'] = np.zeros((1, 1, 16, 16))
  with pytest.raises(ValueError, match='params/backbone/layer2_0/conv2/kernel'):
    torch_resnet.merge_backbone(model_vars, bad)
  with pytest.raises(FileNotFoundError, match='model.pretrained'):
    torch_resnet.load_params(tmp_path / 'nowhere')


@pytest.mark.parametrize("shape,k,stride,pad", [((2, 13, 12, 3), 3, 2, 1), ((1, 9, 9, 2), 3, 1, 1),
                                                ((2, 10, 11, 2), 2, 2, 0)])
def test_max_pool_value_and_gradient_equal_flax_max_pool(shape, k, stride, pad):
  """`backbone.max_pool`'s written-out JVP (and its transpose) equal autodiff of `nn.max_pool`, ties included
  (integer-valued inputs with many equal maxima; the first in row-major order gets it)."""
  import flax.linen as nn
  ref = lambda x: nn.max_pool(x, (k, k), strides=(stride, stride), padding=((pad, pad),) * 2)
  rng = np.random.RandomState(0)
  for x in (rng.randn(*shape), np.round(rng.rand(*shape) * 3), np.maximum(rng.randn(*shape), 0)):
    x = jnp.asarray(x, jnp.float32)
    out = backbone.max_pool(x, k, stride, pad)
    np.testing.assert_array_equal(out, ref(x))
    ct = jnp.asarray(rng.randn(*out.shape), jnp.float32)
    got = jax.vjp(lambda a: backbone.max_pool(a, k, stride, pad), x)[1](ct)[0]
    want = jax.vjp(ref, x)[1](ct)[0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    tan = jnp.asarray(rng.randn(*shape), jnp.float32)      # forward mode too
    np.testing.assert_allclose(jax.jvp(lambda a: backbone.max_pool(a, k, stride, pad), (x,), (tan,))[1],
                               jax.jvp(ref, (x,), (tan,))[1], rtol=1e-6, atol=1e-6)


# ------------------------------------------- dilated ResNet-50 (Appendix B) --

def _torch_dilated_resnet50():
  """pysot's `resnet_atrous` ResNet-50 (anchors.md 2.2) in torch, torchvision key names."""
  torch = pytest.importorskip('torch', reason=_TORCH_REASON)
  nn = torch.nn

  class Bottle(nn.Module):

    def __init__(self, inplanes, planes, stride, dilation, downsample):
      super().__init__()
      padding = 2 - stride
      if downsample is not None and dilation > 1:   # first block of a dilated layer
        dilation = dilation // 2
        padding = dilation
      if dilation > 1:
        padding = dilation
      self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(planes)
      self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding, dilation=dilation, bias=False)
      self.bn2 = nn.BatchNorm2d(planes)
      self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
      self.bn3 = nn.BatchNorm2d(planes * 4)
      self.relu = nn.ReLU()
      self.downsample = downsample

    def forward(self, x):
      y = self.relu(self.bn1(self.conv1(x)))
      y = self.relu(self.bn2(self.conv2(y)))
      y = self.bn3(self.conv3(y))
      return self.relu(y + (x if self.downsample is None else self.downsample(x)))

  class Net(nn.Module):

    def __init__(self):
      super().__init__()
      self.conv1 = nn.Conv2d(3, 64, 7, 2, 0, bias=False)
      self.bn1 = nn.BatchNorm2d(64)
      self.relu = nn.ReLU()
      self.maxpool = nn.MaxPool2d(3, 2, 1)
      inplanes = 64
      for i, (n, stride, dil) in enumerate(zip((3, 4, 6, 3), (1, 2, 1, 1), (1, 1, 2, 4))):
        planes = 64 * 2**i
        if stride == 1 and dil == 1:
          ds = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                             nn.BatchNorm2d(planes * 4))
        else:
          dd, pad = (dil // 2, dil // 2) if dil > 1 else (1, 0)
          ds = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 3, stride, pad, dilation=dd,
                                       bias=False), nn.BatchNorm2d(planes * 4))
        blocks = [Bottle(inplanes, planes, stride, dil, ds)]
        inplanes = planes * 4
        blocks += [Bottle(inplanes, planes, 1, dil, None) for _ in range(n - 1)]
        setattr(self, f'layer{i + 1}', nn.Sequential(*blocks))

    def forward(self, x):
      x = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
      f2 = self.layer2(x)
      f3 = self.layer3(f2)
      return f2, f3, self.layer4(f3)

  torch.manual_seed(0)
  net = Net()
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5)
        m.bias.normal_(0.0, 0.1)
        m.running_mean.normal_(0.0, 0.1)
        m.running_var.uniform_(0.5, 1.5)
  return net.eval()


@pytest.mark.parametrize('size,grid', [(127, 15), (255, 31), (319, 39)])
def test_dilated_resnet50_keeps_the_stride8_grid(size, grid):
  model = backbone.build_backbone('resnet50_dilated')
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  out = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x,
                                                        train=False)[0], x)
  assert [o.shape for o in out] == [(1, grid, grid, c) for c in (512, 1024, 2048)]
  assert backbone.feature_grid('resnet50_dilated', size) == grid
  assert backbone.feature_channels('resnet50_dilated') == (512, 1024, 2048)


def test_dilated_resnet50_equals_pysots_resnet_atrous_in_torch():
  # Every dilated block (layer3 at rate 1 then 2, layer4 at 2 then 4), the unpadded stem
  # and the 3x3 projections, on small random weights.
  torch = pytest.importorskip('torch', reason=_TORCH_REASON)
  net = _torch_dilated_resnet50()
  variables = torch_resnet.convert_state_dict(_numpy_state_dict(net), 'resnet50_dilated')
  x = np.random.default_rng(0).uniform(0, 255, size=(1, 71, 71, 3)).astype(np.float32)
  x_norm = np.array(backbone.normalize_image(x))
  with torch.no_grad():
    want = [t.numpy().transpose(0, 2, 3, 1)
            for t in net(torch.from_numpy(x_norm.transpose(0, 3, 1, 2)))]
  got = backbone.build_backbone('resnet50_dilated').apply(variables, jnp.asarray(x),
                                                          train=False)
  assert [g.shape[1] for g in got] == [8, 8, 8] == [w.shape[1] for w in want]
  for g, w in zip(got, want):
    scale = float(np.abs(w).max())
    np.testing.assert_allclose(np.asarray(g) / scale, w / scale, atol=1e-4)


def test_torchvision_weights_load_into_the_dilated_backbone():
  pytest.importorskip('torch', reason=_TORCH_REASON)
  sd = _numpy_state_dict(_torch_resnet('resnet50'))
  v = torch_resnet.convert_state_dict(sd, 'resnet50_dilated')
  k = v['params']['layer3_0']['downsample_conv']['kernel']          # (3, 3, 512, 1024)
  assert k.shape == (3, 3, 512, 1024)
  np.testing.assert_array_equal(k[1, 1], sd['layer3.0.downsample.0.weight'][:, :, 0, 0].T)
  assert not np.any(k[0]) and not np.any(k[:, 2])
  np.testing.assert_array_equal(v['params']['layer3_1']['conv2']['kernel'],
                                sd['layer3.1.conv2.weight'].transpose(2, 3, 1, 0))

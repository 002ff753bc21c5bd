"""torchvision ResNet checkpoint -> flax variables of duml_jax.models.backbone.

Usage:
  python -m duml_jax.convert.torch_resnet --input resnet50.pth --output DIR \
      [--arch resnet50]

then point the training config at it: `config.model.pretrained = 'DIR'`.

Storage format (chosen for being dependency-free and synchronous): DIR holds
  backbone.npz   one array per variable, keyed 'params/layer1_0/conv1/kernel',
                 'batch_stats/bn1/mean', ... ('/'-joined flax paths);
  meta.json      {"arch": ..., "source": ..., "num_params": ...}.
`numpy.load` alone can read it; `load_params` rebuilds the nested dict.

Key mapping (torchvision state dict -> flax backbone variables):
  conv1.weight                 -> params/conv1/kernel (O,I,kh,kw -> kh,kw,I,O)
  bn1.weight / bias            -> params/bn1/scale / bias
  bn1.running_mean / _var      -> batch_stats/bn1/mean / var
  layerK.I.<conv|bn>N.*        -> .../layerK_I/<conv|bn>N/...
  layerK.I.downsample.0 / .1   -> .../layerK_I/downsample_conv / downsample_bn
`fc.*` and `*.num_batches_tracked` are ignored; a leading 'module.' (from
DataParallel) is stripped.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from duml_jax.models import backbone as backbone_lib

_NPZ = 'backbone.npz'
_META = 'meta.json'


def _flax_path(torch_key: str) -> tuple[str, ...] | None:
  """(collection, module..., leaf) for a torch key; None if it is ignored."""
  parts = torch_key.split('.')
  if parts[0] == 'fc' or parts[-1] == 'num_batches_tracked':
    return None
  if parts[0].startswith('layer') and len(parts) >= 4:
    block = f'{parts[0]}_{parts[1]}'
    rest = parts[2:]
    if rest[0] == 'downsample' and len(rest) == 3:
      sub = {'0': 'downsample_conv', '1': 'downsample_bn'}.get(rest[1])
      if sub is None:
        return ('unknown', torch_key)
      modules, leaf = (block, sub), rest[2]
    elif len(rest) == 2:
      modules, leaf = (block, rest[0]), rest[1]
    else:
      return ('unknown', torch_key)
  elif len(parts) == 2:
    modules, leaf = (parts[0],), parts[1]
  else:
    return ('unknown', torch_key)
  is_conv = modules[-1].startswith('conv') or modules[-1] == 'downsample_conv'
  if is_conv:
    table = {'weight': ('params', 'kernel')}
  else:
    table = {'weight': ('params', 'scale'), 'bias': ('params', 'bias'),
             'running_mean': ('batch_stats', 'mean'),
             'running_var': ('batch_stats', 'var')}
  if leaf not in table:
    return ('unknown', torch_key)
  collection, name = table[leaf]
  return (collection, *modules, name)


def _expected_leaves(arch: str) -> dict[tuple[str, ...], Any]:
  """Flat {path: ShapeDtypeStruct} of the backbone's variables."""
  model = backbone_lib.build_backbone(arch)
  abstract = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)),
                         train=False))
  return traverse_util.flatten_dict(abstract)


def convert_state_dict(state_dict: Mapping[str, Any], arch: str = 'resnet50'
                       ) -> dict[str, Any]:
  """torchvision ResNet state dict (numpy arrays) -> backbone flax variables.

  Args:
    state_dict: torch key -> array (numpy, or anything `np.asarray` accepts).
    arch: 'resnet50', 'resnet18', 'tiny' or 'resnet50_dilated' (see
      `backbone.build_backbone`; torchvision's resnet50 weights load into the dilated
      network too, its 3x3 projections taking the 1x1 kernels at their centre).

  Returns:
    {'params': ..., 'batch_stats': ...} for `backbone.build_backbone(arch)`,
    float32 numpy arrays.

  Raises:
    ValueError: listing missing keys, unexpected keys and shape mismatches.
  """
  keys = list(state_dict)
  if keys and all(k.startswith('module.') for k in keys):
    state_dict = {k[len('module.'):]: v for k, v in state_dict.items()}
  expected = _expected_leaves(arch)
  converted, unexpected, mismatched, seen = {}, [], [], set()
  for key, value in state_dict.items():
    path = _flax_path(key)
    if path is None:
      continue
    if path not in expected:
      unexpected.append(key)
      continue
    value = np.asarray(value, dtype=np.float32)
    if path[-1] == 'kernel':
      value = value.transpose(2, 3, 1, 0)
    seen.add(path)
    want = tuple(expected[path].shape)
    if (path[-2] == 'downsample_conv' and value.shape[:2] == (1, 1)
        and want[:2] == (3, 3) and value.shape[2:] == want[2:]):
      # resnet50_dilated's 3x3 projections of layers 2-4 (pysot): torchvision's 1x1 kernel
      # at the centre tap, the rest zero (an initialisation, not pysot's ImageNet weights).
      value = np.pad(value, ((1, 1), (1, 1), (0, 0), (0, 0)))
    if value.shape != want:
      mismatched.append(f'{key}: checkpoint {value.shape} (as flax) vs '
                        f'{"/".join(path)} {want}')
      continue
    converted[path] = value
  missing = sorted('/'.join(p) for p in expected if p not in seen)
  if missing or unexpected or mismatched:
    lines = [f'state dict does not match backbone {arch!r}:']
    if missing:
      lines.append(f'  missing ({len(missing)}): {", ".join(missing)}')
    if unexpected:
      lines.append(f'  unexpected ({len(unexpected)}): '
                   f'{", ".join(sorted(unexpected))}')
    if mismatched:
      lines.append(f'  shape mismatches ({len(mismatched)}): '
                   + '; '.join(mismatched))
    raise ValueError('\n'.join(lines))
  return traverse_util.unflatten_dict(converted)


def load_torch_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a torch `.pth` state dict as {key: numpy array}.

  Accepts a bare state dict or a dict holding one under 'state_dict' or
  'model'. torch is imported here only; it is not a duml_jax dependency.
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f'reading {path} needs PyTorch (pip install torch); it '
                      'is only used by the checkpoint converter') from e
  obj = torch.load(os.fspath(path), map_location='cpu', weights_only=True)
  if isinstance(obj, Mapping):
    for wrapper in ('state_dict', 'model'):
      if isinstance(obj.get(wrapper), Mapping):
        obj = obj[wrapper]
        break
  if not isinstance(obj, Mapping):
    raise ValueError(f'{path}: expected a state dict, got {type(obj).__name__}')
  return {k: v.detach().cpu().numpy() for k, v in obj.items()
          if hasattr(v, 'detach')}


def save_params(variables: Mapping[str, Any], out_dir: str | os.PathLike,
                arch: str | None = None, source: str | None = None) -> None:
  """Writes backbone variables to out_dir/backbone.npz (+ meta.json)."""
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  flat = traverse_util.flatten_dict(variables, sep='/')
  flat = {k: np.asarray(v) for k, v in flat.items()}
  np.savez(out / _NPZ, **flat)
  meta = {'arch': arch, 'source': source,
          'num_params': backbone_lib.count_params(variables)}
  (out / _META).write_text(json.dumps(meta, indent=2) + '\n')


def load_params(directory: str | os.PathLike) -> dict[str, Any]:
  """Reads variables written by `save_params` (nested dict of numpy arrays)."""
  path = pathlib.Path(directory) / _NPZ
  if not path.is_file():
    raise FileNotFoundError(
        f'{path} not found: config model.pretrained must name a directory '
        'written by `python -m duml_jax.convert.torch_resnet`')
  with np.load(path) as data:
    return traverse_util.unflatten_dict({k: data[k] for k in data.files},
                                        sep='/')


def merge_backbone(model_variables: Mapping[str, Any],
                   backbone_variables: Mapping[str, Any],
                   name: str = 'backbone') -> dict[str, Any]:
  """Returns model_variables with variables[col][name] replaced.

  Every collection of `backbone_variables` ('params', 'batch_stats') replaces
  the `name` subtree of the same collection in the full model's variables.
  The input is not modified; values are cast to the model's dtypes.

  Raises:
    ValueError: naming the first path whose presence or shape differs.
  """
  merged = dict(model_variables)
  for col, sub in backbone_variables.items():
    if col not in model_variables or name not in model_variables[col]:
      raise ValueError(f'model variables have no {col}/{name} subtree to '
                       'receive the pretrained backbone')
    target = traverse_util.flatten_dict(model_variables[col][name])
    source = traverse_util.flatten_dict(sub)
    for p in sorted(set(target) | set(source)):
      where = '/'.join((col, name) + p)
      if p not in source:
        raise ValueError(f'pretrained backbone lacks {where}')
      if p not in target:
        raise ValueError(f'pretrained backbone has {where}, the model does not')
      if tuple(np.shape(source[p])) != tuple(target[p].shape):
        raise ValueError(f'shape mismatch at {where}: pretrained '
                         f'{tuple(np.shape(source[p]))} vs model '
                         f'{tuple(target[p].shape)}')
    new_sub = traverse_util.unflatten_dict(
        {p: jnp.asarray(source[p], dtype=target[p].dtype) for p in target})
    merged[col] = {**model_variables[col], name: new_sub}
  return merged


def load_pretrained_backbone(path: str | os.PathLike,
                             variables: Mapping[str, Any],
                             name: str = 'backbone') -> dict[str, Any]:
  """merge_backbone(variables, load_params(path)), for model.pretrained."""
  return merge_backbone(variables, load_params(path), name=name)


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      prog='python -m duml_jax.convert.torch_resnet',
      description='Convert a torchvision ResNet checkpoint to duml_jax flax '
                  'backbone variables (for config.model.pretrained).')
  parser.add_argument('--input', required=True, help='torch .pth state dict')
  parser.add_argument('--output', required=True, help='output directory')
  parser.add_argument('--arch', default='resnet50',
                      choices=backbone_lib.BACKBONE_NAMES)
  args = parser.parse_args(argv)
  state_dict = load_torch_checkpoint(args.input)
  try:
    variables = convert_state_dict(state_dict, args.arch)
  except ValueError as e:
    raise SystemExit(f'{args.input}: {e}') from e
  save_params(variables, args.output, arch=args.arch,
              source=os.path.abspath(args.input))
  print(f'wrote {backbone_lib.count_params(variables):,} parameters of '
        f'{args.arch} to {os.path.join(args.output, _NPZ)}', file=sys.stderr)


if __name__ == '__main__':
  main()

"""NanoTrack weights (ONNX graphs or PyTorch ``.pth``) -> flax variables.

Sources (HonglinChu/SiamTrackers, NanoTrack, Apache-2.0):

* ONNX: ``nanotrack{v}_nanotrack_backbone*.onnx`` and ``*_head*.onnx``. Their
  BatchNorms are already folded into the convolutions; the initializers are
  read with the ``onnx`` package (torch not needed).
* ``.pth``: a training checkpoint ``{'epoch', 'state_dict', 'optimizer'}`` with
  separate BatchNorms (folded here, eps 1e-5, running statistics). torch is
  imported lazily. The unused ``neck.*`` weights are ignored.

Both give ``{'backbone': {'params': ...}, 'head': {'params': ...}}`` for
`duml_jax.models.nanotrack.NanoBackbone` / `NanoHead`.

Mapping: `module_table(version)` lists, in the order the ONNX graphs execute
them, every PyTorch conv/linear (with its BN, if any) and the flax path it
fills. ONNX nodes are matched to it in graph order; where a node still carries
its PyTorch name (v2 graphs) the name is checked too, and every shape is
checked, so a wrong pairing raises instead of loading silently.

CLI::

  python -m duml_jax.convert.nanotrack --input ../shared/weights/nanotrack \
      --version v2 --output /tmp/nanotrack_v2

writes ``nanotrack.npz`` (flattened variables, keys ``backbone/params/...``)
and ``meta.json`` into the output directory; `load_nanotrack` reads it back.
"""
import argparse
import json
import pathlib

import numpy as np

from duml_jax.models import nanotrack as nt

BN_EPS = 1e-5
NPZ_NAME = 'nanotrack.npz'
META_NAME = 'meta.json'
_REPO = pathlib.Path(__file__).resolve().parents[2]


def default_weights_dir():
  """``../shared/weights/nanotrack`` beside the repository (absolute path), where the
  project's NanoTrack weights are expected unless a config or flag says otherwise."""
  return _REPO.parent / 'shared' / 'weights' / 'nanotrack'


def _backbone_table():
  rows = [('features.0.0', 'features.0.1', ('stem',), 'conv')]
  cin = nt.STEM_CHANNELS
  for i, s in enumerate(nt.MOBILENETV3_SMALL_S16, start=1):
    p, f = f'features.{i}.conv', (f'block{i}',)
    if s.expand != cin:
      rows.append((f'{p}.0', f'{p}.1', f + ('expand',), 'conv'))
      rows.append((f'{p}.3', f'{p}.4', f + ('dw',), 'conv'))
      se, proj = f'{p}.5', (f'{p}.7', f'{p}.8')
    else:
      rows.append((f'{p}.0', f'{p}.1', f + ('dw',), 'conv'))
      se, proj = f'{p}.3', (f'{p}.4', f'{p}.5')
    if s.squeeze:
      rows.append((f'{se}.fc.0', None, f + ('se', 'fc1'), 'dense'))
      rows.append((f'{se}.fc.2', None, f + ('se', 'fc2'), 'dense'))
    rows.append(proj + (f + ('project',), 'conv'))
    cin = s.out
  return rows


def _tower_rows(torch_name, flax_name, layers):
  rows = []
  for j in range(len(layers)):
    rows.append((f'{torch_name}.{4 * j}', None, (flax_name, f'dw{j}'), 'conv'))
    rows.append((f'{torch_name}.{4 * j + 1}', f'{torch_name}.{4 * j + 2}',
                 (flax_name, f'pw{j}'), 'conv'))
  return rows


def _corr_rows(torch_name, flax_name, adjust):
  rows = []
  if adjust:
    rows.append((f'{torch_name}.conv_kernel.0', f'{torch_name}.conv_kernel.1',
                 (flax_name, 'kernel_adjust'), 'conv'))
    rows.append((f'{torch_name}.conv_search.0', f'{torch_name}.conv_search.1',
                 (flax_name, 'search_adjust'), 'conv'))
  rows.append((f'{torch_name}.CA_layer.fc1', None, (flax_name, 'ca_fc1'), 'dense'))
  rows.append((f'{torch_name}.CA_layer.fc2', None, (flax_name, 'ca_fc2'), 'dense'))
  return rows


def _head_table(version):
  spec = nt.HEADS[version]
  if version == 'v1':
    return (_corr_rows('corr_pw', 'corr', spec.adjust)
            + _tower_rows('cls_tower', 'cls_tower', spec.cls_tower)
            + [('cls_logits.0', None, ('cls_pred',), 'conv')]
            + _tower_rows('bbox_tower', 'bbox_tower', spec.bbox_tower)
            + [('bbox_pred.0', None, ('bbox_pred',), 'conv')])
  return (_corr_rows('corr_pw_reg', 'corr_reg', spec.adjust)
          + _corr_rows('corr_pw_cls', 'corr_cls', spec.adjust)
          + _tower_rows('cls_pw_tower', 'cls_tower', spec.cls_tower)
          + [('cls_pred.0', None, ('cls_pred',), 'conv')]
          + _tower_rows('bbox_pw_tower', 'bbox_tower', spec.bbox_tower)
          + [('bbox_pred.0', None, ('bbox_pred',), 'conv')])


def module_table(version='v2'):
  """{'backbone': rows, 'head': rows}; row = (torch module, torch BN or None,
  flax path, 'conv' | 'dense'), in ONNX execution order."""
  if version not in nt.HEADS:
    raise ValueError(f'NanoTrack version {version!r} not supported; '
                     f'choose one of {nt.VERSIONS}')
  return {'backbone': _backbone_table(), 'head': _head_table(version)}


def _to_flax(weight, bias, kind):
  """PyTorch layout -> flax {'kernel', 'bias'} (bias None: conv w/o bias)."""
  w = np.asarray(weight, np.float32)
  if kind == 'dense':  # torch Linear (out, in) or 1x1 conv (out, in, 1, 1)
    out = {'kernel': w.reshape(w.shape[0], w.shape[1]).T.copy()}
  else:  # (O, I/g, kh, kw) -> (kh, kw, I/g, O)
    out = {'kernel': w.transpose(2, 3, 1, 0).copy()}
  if bias is not None:
    out['bias'] = np.asarray(bias, np.float32)
  return out


def fold_bn(weight, bias, gamma, beta, mean, var, eps=BN_EPS):
  """Conv (O, ...) followed by eval-mode BN -> one conv (weight, bias)."""
  s = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
  w = np.asarray(weight, np.float64) * s.reshape((-1,) + (1,) * (weight.ndim - 1))
  b = 0. if bias is None else np.asarray(bias, np.float64)
  b = (b - np.asarray(mean, np.float64)) * s + np.asarray(beta, np.float64)
  return w.astype(np.float32), b.astype(np.float32)


def _set(tree, path, leaf):
  for k in path[:-1]:
    tree = tree.setdefault(k, {})
  if path[-1] in tree:
    raise ValueError(f'flax path {"/".join(path)} filled twice')
  tree[path[-1]] = leaf


# ----------------------------------------------------------------- ONNX ----


def _onnx_torch_name(node, init_names):
  """The PyTorch module a Conv/Gemm node came from, or None if unnamed.

  Uses the weight initializer's name when it is a PyTorch parameter name,
  else the node's scoped output name ('/features/features.1/conv/conv.0/Conv_output_0'
  -> 'features.1.conv.0').
  """
  wname = node.input[1]
  if wname in init_names and not wname.startswith('onnx::') and wname.endswith('.weight'):
    return wname[:-len('.weight')]
  parts = node.output[0].split('/')
  if len(parts) < 3 or parts[0] != '':
    return None
  path = []
  for comp in parts[1:-1]:
    if path and comp.startswith(path[-1] + '.'):
      path[-1] = comp
    else:
      path.append(comp)
  return '.'.join(path)


def _onnx_params(model_path, rows):
  import onnx  # pylint: disable=g-import-not-at-top
  from onnx import numpy_helper  # pylint: disable=g-import-not-at-top
  model = onnx.load(str(model_path))
  inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
  nodes = [n for n in model.graph.node
           if n.op_type in ('Conv', 'Gemm') and n.input[1] in inits]
  if len(nodes) != len(rows):
    raise ValueError(f'{model_path}: {len(nodes)} Conv/Gemm nodes with weights, '
                     f'expected {len(rows)} for this NanoTrack version')
  params = {}
  for node, (tname, _, fpath, kind) in zip(nodes, rows):
    name = _onnx_torch_name(node, inits)
    if name is not None and name != tname:
      raise ValueError(f'{model_path}: node {node.output[0]} comes from {name}, '
                       f'expected {tname}')
    if node.op_type == 'Gemm':
      attrs = {a.name: a for a in node.attribute}
      if 'transB' not in attrs or attrs['transB'].i != 1:
        raise ValueError(f'{model_path}: Gemm {node.output[0]} without transB=1')
    w = inits[node.input[1]]
    b = inits[node.input[2]] if len(node.input) > 2 and node.input[2] else None
    _set(params, fpath, _to_flax(w, b, kind))
  return params


def find_onnx(directory, version):
  """{'backbone': path, 'head': path} of the ONNX graphs of `version` in `directory`
  (``nanotrack{version}_*backbone*.onnx``, ``*head*.onnx``; exactly one each)."""
  d = pathlib.Path(directory)
  found = {}
  for part in ('backbone', 'head'):
    hits = sorted(d.glob(f'nanotrack{version}_*{part}*.onnx'))
    if len(hits) != 1:
      raise FileNotFoundError(
          f'{d}: expected one nanotrack{version}_*{part}*.onnx, found '
          f'{[h.name for h in hits]}')
    found[part] = hits[0]
  return found


def from_onnx(backbone_onnx, head_onnx, version='v2'):
  """Variables from the two ONNX graphs (BN already folded there)."""
  table = module_table(version)
  return {'backbone': {'params': _onnx_params(backbone_onnx, table['backbone'])},
          'head': {'params': _onnx_params(head_onnx, table['head'])}}


# ------------------------------------------------------------------ pth ----


def load_torch_state_dict(path):
  """The ``state_dict`` of a NanoTrack ``.pth`` as numpy arrays (lazy torch).

  The checkpoints pickle a numpy scalar, so ``weights_only`` loading needs it
  allow-listed (under its numpy-1 name).
  """
  import torch  # pylint: disable=g-import-not-at-top
  scalar = np._core.multiarray.scalar  # pylint: disable=protected-access
  allowed = [(scalar, 'numpy.core.multiarray.scalar'), np.dtype,
             type(np.dtype('float32')), type(np.dtype('float64'))]
  with torch.serialization.safe_globals(allowed):
    ckpt = torch.load(str(path), map_location='cpu', weights_only=True)
  sd = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
  return {k: v.detach().cpu().numpy() for k, v in sd.items()}


def from_state_dict(sd, version='v2'):
  """Variables from a NanoTrack state dict (numpy values), BN folded."""
  table = module_table(version)
  out = {}
  for part, prefix in (('backbone', 'backbone.'), ('head', 'ban_head.')):
    params = {}
    for tname, bn, fpath, kind in table[part]:
      key = prefix + tname
      if key + '.weight' not in sd:
        raise KeyError(f'state dict has no {key}.weight (NanoTrack {version})')
      w, b = sd[key + '.weight'], sd.get(key + '.bias')
      if bn is not None:
        k = prefix + bn
        w, b = fold_bn(w, b, sd[k + '.weight'], sd[k + '.bias'],
                       sd[k + '.running_mean'], sd[k + '.running_var'])
      params_leaf = _to_flax(w, b, kind)
      _set(params, fpath, params_leaf)
    out[part] = {'params': params}
  return out


def from_pth(path, version='v2'):
  return from_state_dict(load_torch_state_dict(path), version)


# --------------------------------------------------------------- saving ----


def _flatten(tree, prefix=''):
  flat = {}
  for k, v in tree.items():
    key = f'{prefix}/{k}' if prefix else k
    if isinstance(v, dict):
      flat.update(_flatten(v, key))
    else:
      flat[key] = np.asarray(v)
  return flat


def _unflatten(flat):
  tree = {}
  for key, v in flat.items():
    _set(tree, tuple(key.split('/')), v)
  return tree


def save(variables, out_dir, version, source):
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  np.savez(out / NPZ_NAME, **_flatten(variables))
  (out / META_NAME).write_text(json.dumps(
      {'model': 'nanotrack', 'version': version, 'source': str(source)}, indent=1))


def load_nanotrack(path_or_dir, version='v2'):
  """NanoTrack variables {'backbone': ..., 'head': ...} from any source.

  Args:
    path_or_dir: a ``.pth`` file; a directory written by this module's CLI
      (``nanotrack.npz`` + ``meta.json``); or a directory holding the original
      ONNX graphs ``nanotrack{version}_*backbone*.onnx`` / ``*head*.onnx``.
    version: 'v1' or 'v2' (checked against ``meta.json`` when present).
  """
  p = pathlib.Path(path_or_dir)
  if p.is_file() and p.suffix == '.pth':
    return from_pth(p, version)
  if p.is_dir() and (p / NPZ_NAME).is_file():
    meta = json.loads((p / META_NAME).read_text()) if (p / META_NAME).is_file() else {}
    if meta.get('version', version) != version:
      raise ValueError(f'{p}: holds NanoTrack {meta["version"]}, asked for {version}')
    with np.load(p / NPZ_NAME) as z:
      return _unflatten({k: z[k] for k in z.files})
  if p.is_dir():
    f = find_onnx(p, version)
    return from_onnx(f['backbone'], f['head'], version)
  raise FileNotFoundError(f'{p}: not a .pth file or a directory of NanoTrack weights')


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--input', required=True,
                  help='.pth file or directory with the ONNX graphs')
  ap.add_argument('--output', required=True, help='output directory')
  ap.add_argument('--version', default='v2', choices=nt.VERSIONS)
  args = ap.parse_args(argv)
  variables = load_nanotrack(args.input, args.version)
  save(variables, args.output, args.version, args.input)
  n = sum(v.size for v in _flatten(variables).values())
  print(f'wrote {pathlib.Path(args.output) / NPZ_NAME}: NanoTrack {args.version}, '
        f'{n} parameters')


if __name__ == '__main__':
  main()

"""The import graph is layered (docs/architecture.md): no module imports a layer above its own,
and training and evaluation never import each other. Imports are read with `ast`, including
those inside functions."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Layer of each part of the repository (its first one or two dotted names); a module may import
# its own layer or lower ones, except the arrows in FORBIDDEN.
LAYERS = {
    "duml_jax": 0,                 # anchors, boxes, labels, config_lib, config_args
    "duml_jax.models": 1, "duml_jax.data": 1, "duml_jax.convert": 1,
    "duml_jax.tracking": 2, "duml_jax.checkpoint": 2,
    "duml_jax.training": 3, "duml_jax.evaluation": 3,
    "duml_jax.experiments": 4, "duml_jax.integrations": 4, "duml_jax.export": 4, "configs": 4,
    "train": 5, "evaluate": 5, "benchmarks": 5,
}
# Arrows between parts of one layer that must never exist.
FORBIDDEN = {
    ("duml_jax.training", "duml_jax.evaluation"),
    ("duml_jax.evaluation", "duml_jax.training"),
    ("duml_jax.models", "duml_jax.data"),
    ("duml_jax.models", "duml_jax.convert"),
    ("configs", "duml_jax.experiments"),
}
SOURCES = ("duml_jax", "configs", "benchmarks", "train.py", "evaluate.py")


def part(module):
  """The LAYERS key of a dotted module name, or None outside the repository's code."""
  names = module.split(".")
  two = ".".join(names[:2])
  if two in LAYERS:
    return two
  return names[0] if names[0] in LAYERS else None


def imported(source):
  """Every absolute name `source` imports (`from a import b` gives a.b)."""
  out = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      out += [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      out += [f"{node.module}.{a.name}" for a in node.names]
  return out


def violations(module, source):
  """'importer -> imported' for each arrow of `source` (module `module`) the layers forbid."""
  src = part(module)
  bad = []
  for name in imported(source):
    dst = part(name)
    if src is None or dst is None or dst == src:
      continue
    if LAYERS[dst] > LAYERS[src] or (src, dst) in FORBIDDEN:
      bad.append(f"{module} -> {name} ({src}, layer {LAYERS[src]} -> {dst}, layer {LAYERS[dst]})")
  return bad


def _modules():
  for s in SOURCES:
    path = ROOT / s
    for f in ([path] if path.is_file() else sorted(path.rglob("*.py"))):
      rel = f.relative_to(ROOT).with_suffix("")
      yield ".".join(rel.parts), f


def test_no_forbidden_import():
  modules = list(_modules())
  assert len(modules) > 50, f"only {len(modules)} modules found under {ROOT}"
  bad = [v for m, f in modules for v in violations(m, f.read_text())]
  assert not bad, "forbidden imports (docs/architecture.md):\n" + "\n".join(bad)


def test_every_package_has_a_layer():
  packages = {".".join(p.relative_to(ROOT).parts) for p in (ROOT / "duml_jax").iterdir()
              if p.is_dir() and (p / "__init__.py").exists()}
  missing = {p for p in packages if p not in LAYERS}
  assert not missing, f"packages without a layer in LAYERS (and docs/architecture.md): {missing}"


@pytest.mark.parametrize("module,source,expected", [
    ("duml_jax.evaluation.x", "from duml_jax.training import trainer", 1),
    ("duml_jax.training.x", "def f():\n  from duml_jax.evaluation import evaluate_lib", 1),
    ("duml_jax.tracking.x", "import duml_jax.experiments.tune", 1),
    ("duml_jax.evaluation.x", "from configs import duml", 1),
    ("duml_jax.models.x", "from duml_jax.data import pipeline", 1),
    ("duml_jax.experiments.x", "from duml_jax.training import trainer\n"
     "from duml_jax.evaluation import evaluate_lib\nfrom configs import duml", 0),
    ("duml_jax.evaluation.x", "from duml_jax import checkpoint\nimport numpy", 0),
])
def test_checker_catches_arrows(module, source, expected):
  assert len(violations(module, source)) == expected

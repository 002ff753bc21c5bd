"""Prints a model's parameter count per top-level module.

  python -m duml_jax.models.summary --config=configs/duml.py:paper
"""
from absl import app
from absl import flags
import jax
import numpy as np
from ml_collections import config_flags

from duml_jax.models import duml


def _define_flags():
  """Flags, defined only when run as a script (the module is imported next to others)."""
  config_flags.DEFINE_config_file("config", "configs/duml.py:paper", "Model config.")


def count_params(params):
  return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))


def summarize(model_config):
  """{module: parameter count} (shapes only: nothing is allocated)."""
  model = duml.build_model(model_config)
  v = jax.eval_shape(lambda: duml.init_variables(model, jax.random.PRNGKey(0)))
  out = {k: count_params(p) for k, p in v["params"].items()}
  out["total"] = count_params(v["params"])
  return out


def main(argv):
  del argv
  cfg = flags.FLAGS.config
  counts = summarize(cfg.model)
  print(f"DuML {cfg.model.backbone} offline={cfg.model.offline} online={cfg.model.online}")
  for k, n in counts.items():
    print(f"  {k:<20s} {n:>12,d}")


if __name__ == "__main__":
  _define_flags()
  app.run(main)

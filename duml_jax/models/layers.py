"""Small shared layers: BatchNorm with the project's defaults, or GroupNorm (`model.norm`)."""
import functools

import flax.linen as nn

from duml_jax import config_lib

# torch BatchNorm2d defaults (momentum 0.1 == flax 0.9), so converted
# statistics behave the same.
BatchNorm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)


GROUPS = 8                      # GroupNorm groups (Wu & He 2018 use 32 at ResNet widths)


def check_norm(norm):
  if norm not in config_lib.NORMS:
    raise ValueError(f"config model.norm={norm!r} is not a known normalisation; allowed "
                     f"values: {', '.join(config_lib.NORMS)}")


def group_norm(name=None, dtype=None):
  """GroupNorm with `GROUPS` groups (no running statistics: training = inference)."""
  return nn.GroupNorm(num_groups=GROUPS, epsilon=1e-5, name=name, dtype=dtype)


def norm_layer(norm, train, axis_name=None, name=None, dtype=None):
  """`batch_norm` or `group_norm` by the config key `model.norm`."""
  check_norm(norm)
  if norm == "group":
    return group_norm(name=name, dtype=dtype)
  return batch_norm(train, axis_name, name=name, dtype=dtype)


def batch_norm(train, axis_name=None, name=None, dtype=None):
  """BatchNorm in training (batch statistics, synced over `axis_name`) or inference mode.

  `dtype` is the output dtype (None: inferred from the input); the batch
  statistics are reduced, and the running statistics kept, in float32
  (flax's `force_float32_reductions`, `param_dtype`).
  """
  return BatchNorm(use_running_average=not train,
                   axis_name=axis_name if train else None, name=name, dtype=dtype)

"""Small shared layers: BatchNorm with the project's defaults."""
import functools

import flax.linen as nn

# torch BatchNorm2d defaults (momentum 0.1 == flax 0.9), so converted
# statistics behave the same.
BatchNorm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)


def batch_norm(train, axis_name=None, name=None, dtype=None):
  """BatchNorm in training (batch statistics, synced over `axis_name`) or inference mode.

  `dtype` is the output dtype (None: inferred from the input); the batch
  statistics are reduced, and the running statistics kept, in float32
  (flax's `force_float32_reductions`, `param_dtype`).
  """
  return BatchNorm(use_running_average=not train,
                   axis_name=axis_name if train else None, name=name, dtype=dtype)

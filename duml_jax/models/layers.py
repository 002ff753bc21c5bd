"""Small shared layers: BatchNorm with the project's defaults."""
import functools

import flax.linen as nn

# torch BatchNorm2d defaults (momentum 0.1 == flax 0.9), so converted
# statistics behave the same.
BatchNorm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)


def batch_norm(train, axis_name=None, name=None):
  """BatchNorm in training (batch statistics, synced over `axis_name`) or inference mode."""
  return BatchNorm(use_running_average=not train,
                   axis_name=axis_name if train else None, name=name)

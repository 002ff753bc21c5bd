"""SGD optimiser and learning-rate schedule of the SiamRPN++ recipe (anchors.md section 2.7).

pysot trains with torch SGD (momentum 0.9, weight decay 1e-4 as L2: `grad += wd * param`),
clips the global gradient norm to 10 before the step, warms up for 5 epochs from 1e-3 to 5e-3
multiplying by 5^(1/5) every epoch, then decays in log space from 5e-3 to 5e-4 over the
remaining 15 epochs. The backbone is frozen (and its BatchNorm in eval mode) for the first 10
epochs; afterwards `layer2..layer4` train at 0.1x the base LR, neck and heads at the base LR.
At the unfreeze epoch pysot builds a new optimiser, which resets every momentum buffer.

Everything here is expressed in optimiser steps (`steps_per_epoch` converts), the freeze is a
per-group multiplier read from the optax step count (jit-friendly, no Python branching on traced
values), and every knob is a key of `default_optim_config()`.

Parameter groups (labels of `param_group`):
  'backbone_trainable'  backbone params under a stage listed in `backbone_train_layers`
                         (path component `layerK` or `layerK_*`): frozen until the unfreeze
                         step, then `backbone_lr_mult` x LR.
  'backbone_fixed'      every other backbone param (conv1, bn1, layer1, ...): never updated.
  'head'                everything outside `backbone_key` (neck, heads): base LR throughout.
"""
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import optax

PyTree = Any

GROUP_BACKBONE_TRAINABLE = "backbone_trainable"
GROUP_BACKBONE_FIXED = "backbone_fixed"
GROUP_HEAD = "head"

_SCHEDULES = ("pysot", "cosine", "constant")
_OPTIMIZERS = ("sgd", "adamw")
_WARMUP_TYPES = ("step", "linear")
_GRANULARITIES = ("epoch", "step")


def default_optim_config() -> ml_collections.ConfigDict:
  """The SiamRPN++ (pysot siamrpn_r50_l234_dwxcorr_8gpu) optimiser recipe."""
  c = ml_collections.ConfigDict()
  c.num_epochs = 20            # total epochs; the decay spans num_epochs - warmup_epochs epochs
  c.base_lr = 5e-3             # LR at the end of warm-up / start of the decay
  c.end_lr = 5e-4              # LR of the last epoch ('pysot' and 'cosine')
  c.schedule = "pysot"         # 'pysot' (log-space decay) | 'cosine' | 'constant'
  c.warmup_epochs = 5
  c.warmup_start_lr = 1e-3
  c.warmup_type = "step"       # 'step': start * (base/start)^(epoch/warmup_epochs); 'linear'
  c.lr_granularity = "epoch"   # 'epoch': LR constant within an epoch (pysot); 'step': continuous
  c.optimizer = "sgd"          # 'sgd' (pysot: momentum, L2 in the gradient) | 'adamw'
  c.momentum = 0.9             # sgd only
  c.nesterov = False           # sgd only
  c.adam_b1 = 0.9              # adamw only
  c.adam_b2 = 0.999            # adamw only
  c.weight_decay = 1e-4        # sgd: L2 added to the gradient after clipping (torch SGD
                               # weight_decay); adamw: decoupled, times the LR
  c.grad_clip = 10.0           # global-norm clip; <= 0 disables
  c.backbone_key = "backbone"  # top-level params key of the backbone
  c.backbone_freeze_epochs = 10
  c.backbone_lr_mult = 0.1
  c.backbone_train_layers = ("layer2", "layer3", "layer4")
  c.reset_momentum_at_unfreeze = True  # pysot rebuilds its optimiser at the unfreeze epoch
  return c


def _check_choice(cfg: ml_collections.ConfigDict, key: str, choices: Sequence[str]) -> str:
  value = cfg[key]
  if value not in choices:
    raise ValueError(f"optim config key '{key}' = {value!r}; expected one of {choices}")
  return value


def make_schedule(optim_config: ml_collections.ConfigDict,
                  steps_per_epoch: int) -> optax.Schedule:
  """Base learning rate as a function of the optimiser step count.

  With e the epoch (integer with lr_granularity='epoch', fractional with 'step'),
  W = warmup_epochs, N = num_epochs - W and t = clip((e - W) / (N - 1), 0, 1) per epoch
  (pysot: the N decay epochs take N values, the last one end_lr), t = clip((e - W) / N, 0, 1)
  per step (the decay spans the whole run, t = 1 at step num_epochs x steps_per_epoch, instead
  of holding the last epoch at end_lr):
    warm-up (e < W):  'step'   lr = start * (base / start)^(floor(e) / W)
                      'linear' lr = start + (base - start) * e / W
    then 'pysot':    lr = base * (end / base)^t           (= np.logspace(log10 base, log10 end, N))
         'cosine':   lr = end + (base - end) * (1 + cos(pi t)) / 2
         'constant': lr = base
  """
  cfg = optim_config
  if steps_per_epoch <= 0:
    raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
  kind = _check_choice(cfg, "schedule", _SCHEDULES)
  warmup_type = _check_choice(cfg, "warmup_type", _WARMUP_TYPES)
  granularity = _check_choice(cfg, "lr_granularity", _GRANULARITIES)
  base, end, start = float(cfg.base_lr), float(cfg.end_lr), float(cfg.warmup_start_lr)
  warm = int(cfg.warmup_epochs)
  decay_epochs = int(cfg.num_epochs) - warm
  # Epochs over which t runs 0 -> 1 (the docstring above).
  span = max(decay_epochs - 1, 1) if granularity == "epoch" else max(decay_epochs, 1)
  if warm > 0 and warmup_type == "step" and start <= 0:
    raise ValueError(f"optim config key 'warmup_start_lr' must be > 0 for step warm-up, "
                     f"got {start}")
  if kind == "pysot" and (base <= 0 or end <= 0):
    raise ValueError(f"optim config keys 'base_lr'/'end_lr' must be > 0 for the log decay, "
                     f"got {base}/{end}")

  def schedule(count):
    count = jnp.asarray(count)
    if granularity == "epoch":
      epoch = (count // steps_per_epoch).astype(jnp.float32)
    else:
      epoch = count.astype(jnp.float32) / steps_per_epoch
    t = jnp.clip((epoch - warm) / span, 0.0, 1.0)
    if kind == "pysot":
      lr = base * (end / base) ** t
    elif kind == "cosine":
      lr = end + 0.5 * (base - end) * (1.0 + jnp.cos(jnp.pi * t))
    else:
      lr = jnp.full_like(t, base)
    if warm > 0:
      if warmup_type == "step":
        warm_lr = start * (base / start) ** (jnp.floor(epoch) / warm)
      else:
        warm_lr = start + (base - start) * epoch / warm
      lr = jnp.where(epoch < warm, warm_lr, lr)
    return lr

  return schedule


def unfreeze_step(optim_config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  """First step at which the backbone's train layers are updated (and their BN trains)."""
  return int(optim_config.backbone_freeze_epochs) * int(steps_per_epoch)


def backbone_trainable(step, optim_config: ml_collections.ConfigDict, steps_per_epoch: int):
  """Whether the backbone trains at `step` (Python bool for an int step, jnp bool if traced).

  The trainer passes this (a Python bool from the host-side step counter) as a static train flag
  so the model's backbone BatchNorm runs with running averages while frozen.
  """
  return step >= unfreeze_step(optim_config, steps_per_epoch)


def trainable_backbone_layers(step: int, optim_config: ml_collections.ConfigDict,
                              steps_per_epoch: int) -> tuple[str, ...]:
  """The backbone stages in train mode at `step`: () while frozen, else backbone_train_layers.

  pysot puts only these stages' BatchNorm in train mode after the unfreeze (conv1/bn1/layer1 stay
  in eval mode); a hashable tuple, usable as a static train flag.
  """
  if backbone_trainable(int(step), optim_config, steps_per_epoch):
    return tuple(optim_config.backbone_train_layers)
  return ()


def _key_name(entry) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def _is_stage(name: str, layer: str) -> bool:
  return name == layer or name.startswith(layer + "_")


def param_group(path: Sequence[Any], optim_config: ml_collections.ConfigDict) -> str:
  """Label of one parameter from its path (strings or jax key entries), see module docstring."""
  names = [_key_name(p) for p in path]
  if not names or names[0] != optim_config.backbone_key:
    return GROUP_HEAD
  for layer in optim_config.backbone_train_layers:
    if any(_is_stage(n, layer) for n in names[1:]):
      return GROUP_BACKBONE_TRAINABLE
  return GROUP_BACKBONE_FIXED


def param_labels(params: PyTree, optim_config: ml_collections.ConfigDict) -> PyTree:
  """The tree of `param_group` labels for `params` (arrays or ShapeDtypeStructs).

  Raises ValueError when params have a backbone but a stage named in `backbone_train_layers`
  matches no parameter (a typo would otherwise silently freeze it forever).
  """
  labels = jax.tree_util.tree_map_with_path(lambda p, _: param_group(p, optim_config), params)
  if isinstance(params, Mapping) and optim_config.backbone_key in params:
    paths = [[_key_name(e) for e in p] for p, _ in
             jax.tree_util.tree_leaves_with_path(params[optim_config.backbone_key])]
    for layer in optim_config.backbone_train_layers:
      if not any(_is_stage(n, layer) for path in paths for n in path):
        raise ValueError(f"optim config key 'backbone_train_layers' names {layer!r}, which matches "
                         f"no parameter under params['{optim_config.backbone_key}']")
  return labels


def _scale_by_group(labels: PyTree,
                    factors: dict[str, Callable[[jax.Array], jax.Array]]
                    ) -> optax.GradientTransformation:
  """Multiplies every leaf by `factors[label](count)`, count = number of updates so far."""

  def init_fn(params):
    del params
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    del params
    scale = {g: f(state.count) for g, f in factors.items()}
    updates = jax.tree.map(lambda u, g: u * scale[g].astype(u.dtype), updates, labels)
    return updates, optax.ScaleByScheduleState(count=optax.safe_int32_increment(state.count))

  return optax.GradientTransformation(init_fn, update_fn)


def _reset_at_step(inner: optax.GradientTransformation, step: int) -> optax.GradientTransformation:
  """Re-initialises `inner`'s state right before the update numbered `step` (momentum reset)."""

  def init_fn(params):
    return (jnp.zeros([], jnp.int32), inner.init(params))

  def update_fn(updates, state, params=None):
    count, inner_state = state
    fresh = inner.init(updates)
    inner_state = jax.tree.map(lambda f, s: jnp.where(count == step, f, s), fresh, inner_state)
    updates, inner_state = inner.update(updates, inner_state, params)
    return updates, (optax.safe_int32_increment(count), inner_state)

  return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(optim_config: ml_collections.ConfigDict, params: PyTree,
                   steps_per_epoch: int) -> optax.GradientTransformation:
  """SGD (or AdamW) with weight decay, global-norm clipping, warm-up/decay LR and the backbone freeze.

  With optimizer='sgd', per update, matching torch's `clip_grad_norm_` then `SGD.step`:
    1. gradients of frozen groups are zeroed (so the clip norm only sees trained params);
    2. g <- g * min(1, grad_clip / ||g||_2)         (global norm over all trained params)
    3. g <- g + weight_decay * param                 (per group; zero while frozen)
    4. buf <- momentum * buf + g                     (reset at the unfreeze step if configured)
    5. param <- param - lr(step) * lr_mult(group) * buf
  With optimizer='adamw' (used by the from-scratch CPU-sized model): steps 1-2, then
    param <- param - lr(step) * lr_mult(group) * (adam(g) + weight_decay * param).
  `params` may be concrete or abstract (`jax.eval_shape`); only its tree paths are used.
  """
  cfg = optim_config
  lr = make_schedule(cfg, steps_per_epoch)
  labels = param_labels(params, cfg)
  start = unfreeze_step(cfg, steps_per_epoch)

  def gate(count):
    return (count >= start).astype(jnp.float32)

  def momentum():
    trace = optax.trace(decay=float(cfg.momentum), nesterov=bool(cfg.nesterov))
    if cfg.reset_momentum_at_unfreeze and start > 0:
      return _reset_at_step(trace, start)
    return trace

  mult = float(cfg.backbone_lr_mult)
  # Configs saved before the key existed (checkpoints of older runs) meant SGD.
  kind = cfg.get("optimizer", "sgd")
  if kind not in _OPTIMIZERS:
    raise ValueError(f"optim config key 'optimizer' = {kind!r}; expected one of {_OPTIMIZERS}")

  def direction(gated: bool):
    """The per-group update direction before the (negative) LR scaling."""
    gate_step = [optax.scale_by_schedule(gate)] if gated else []
    if kind == "sgd":
      return [optax.add_decayed_weights(float(cfg.weight_decay))] + gate_step + [momentum()]
    adam = optax.scale_by_adam(b1=float(cfg.adam_b1), b2=float(cfg.adam_b2))
    if gated and cfg.reset_momentum_at_unfreeze and start > 0:
      adam = _reset_at_step(adam, start)
    # AdamW: the decay is added after the moment normalisation (decoupled); the
    # gradients of a frozen group are already zero (first step of the chain), so
    # only the decay needs the gate.
    return [adam, optax.add_decayed_weights(float(cfg.weight_decay))] + gate_step

  groups = {
      GROUP_HEAD: optax.chain(*direction(False), optax.scale_by_schedule(lambda c: -lr(c))),
      GROUP_BACKBONE_TRAINABLE: optax.chain(
          *direction(True), optax.scale_by_schedule(lambda c: -mult * lr(c))),
      GROUP_BACKBONE_FIXED: optax.set_to_zero(),
  }
  steps = [_scale_by_group(labels, {GROUP_HEAD: lambda c: jnp.ones([], jnp.float32),
                                    GROUP_BACKBONE_TRAINABLE: gate,
                                    GROUP_BACKBONE_FIXED: lambda c: jnp.zeros([], jnp.float32)})]
  if cfg.grad_clip and cfg.grad_clip > 0:
    steps.append(optax.clip_by_global_norm(float(cfg.grad_clip)))
  steps.append(optax.multi_transform(groups, labels))
  return optax.chain(*steps)

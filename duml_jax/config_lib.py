"""Config checks and values derived from the localization form.

Derived values (number of anchors, which heads exist) are computed here from
the config at use time, never stored in it, so command-line overrides such as
``--config.model.offline=OFR`` cannot leave them stale. Entry points call
`validate` after flags are parsed.
"""
from duml_jax import errors

OFFLINE_FORMS = ("none", "OFR", "OFC-1s", "OFC-5s")
ONLINE_FORMS = ("none", "ONR", "ONC-1s", "ONC-5s")
# Compute dtypes of `model.dtype` (parameters and BatchNorm statistics stay float32).
DTYPES = ("float32", "bfloat16")
NORMS = ("batch", "group")     # model.norm (duml_jax.models.layers.norm_layer)
ONLINE_LOSSES = ("hinge", "l2")             # loss.online_loss (training.losses)
ONLINE_REDUCTIONS = ("mean", "sum_cells")   # loss.online_reduction
JOINT_TEMPLATES = ("mean", "first")         # loss.joint_template (DuML.forward_sequence)
# model.backbone (duml_jax.models.backbone): interpolated ResNets, and pysot's dilated ResNet-50.
BACKBONES = ("resnet50", "resnet18", "tiny", "resnet50_dilated")
# Crop pixel (index) of feature cell 0's centre: 8 j + offset (`backbone.FEATURE_OFFSET`;
# kept here so that configs need not import the models).
_FEATURE_OFFSET = {"resnet50_dilated": 7}


def num_anchors(form, num_ratios=5):
  """A of a form: 5 for the '-5s' forms, 1 otherwise (0 for 'none')."""
  if form == "none":
    return 0
  return num_ratios if form.endswith("-5s") else 1


def box_anchors(model_config):
  """A of the box head: the larger A of the two branches (paper Section 4)."""
  n = len(model_config.anchor_ratios)
  return max(num_anchors(model_config.offline, n), num_anchors(model_config.online, n))


def anchor_ratios(model_config):
  """Anchor ratios for the box head's A (ratio 1 alone when A = 1)."""
  return tuple(model_config.anchor_ratios) if box_anchors(model_config) > 1 else (1.0,)


def box_assigner(loss_config):
  """Assigner of the box / IoU losses' positives: `loss.box_assigner`, or when it is empty
  (the paper, and configs saved before the key existed) the OFC assigner."""
  return loss_config.get("box_assigner", "") or loss_config.ofc_assigner


def compute_dtype_name(model_config):
  """`model.dtype`; "float32" for configs saved before the key existed (old checkpoints)."""
  return model_config.get("dtype", "float32")


def norm_name(model_config):
  """`model.norm`; "batch" for configs saved before the key existed (old checkpoints)."""
  return model_config.get("norm", "batch")


def validate(c, training: bool = False):
  """Rejects contradictory or unknown settings with the offending key named.

  `training` (train.py, `trainer.train`) adds the checks that only matter when the
  config is trained, such as a randomly initialised backbone held frozen.

  Raises:
    errors.ConfigError (a ValueError): the message names the key.
  """
  try:
    return _validate(c, training)
  except errors.ConfigError:
    raise
  except ValueError as e:   # a user's setting, not a bug: entry points print it in a line
    raise errors.ConfigError(str(e)) from None


def _validate(c, training):
  m = c.model
  if m.offline not in OFFLINE_FORMS:
    raise ValueError(f"model.offline={m.offline!r}; allowed: {OFFLINE_FORMS}")
  if m.online not in ONLINE_FORMS:
    raise ValueError(f"model.online={m.online!r}; allowed: {ONLINE_FORMS}")
  if m.offline == "none" and m.online == "none":
    raise ValueError("model.offline and model.online are both 'none': "
                     "a tracker needs at least one localization branch")
  if m.backbone not in BACKBONES:
    raise ValueError(f"model.backbone={m.backbone!r}; allowed: {', '.join(BACKBONES)}")
  norm = norm_name(m)
  if norm not in NORMS:
    raise ValueError(f"model.norm={norm!r}; allowed: {NORMS}")
  if norm == "group" and (m.get("pretrained") or m.get("frozen_bn")):
    raise ValueError("model.norm='group' cannot use model.pretrained / model.frozen_bn: the "
                     "converted ImageNet weights are BatchNorm weights (same parameter names, "
                     "no running statistics in a GroupNorm model)")
  if compute_dtype_name(m) not in DTYPES:
    raise ValueError(f"model.dtype={compute_dtype_name(m)!r}; allowed: {DTYPES}")
  if not 0.0 <= c.tracking.mu <= 1.0:
    raise ValueError(f"tracking.mu={c.tracking.mu} must lie in [0, 1]")
  if c.loss.ofc_assigner not in ("atss_max_iou", "atss_min_l2", "iou"):
    raise ValueError(f"loss.ofc_assigner={c.loss.ofc_assigner!r}; allowed: "
                     "atss_max_iou, atss_min_l2, iou")
  if box_assigner(c.loss) not in ("atss_max_iou", "atss_min_l2", "iou", "centre_radius"):
    raise ValueError(f"loss.box_assigner={c.loss.box_assigner!r}; allowed: '' (= "
                     "loss.ofc_assigner), atss_max_iou, atss_min_l2, iou, centre_radius")
  if c.loss.ofr_loss not in ("FC_PR", "FC_RG"):
    raise ValueError(f"loss.ofr_loss={c.loss.ofr_loss!r}; allowed: FC_PR, FC_RG")
  _validate_loss_recipe(c.loss)
  if m.online_cfg.filter_size % 2 != 1:
    raise ValueError(f"model.online_cfg.filter_size={m.online_cfg.filter_size} must be odd")
  if "data" in c and "context" in c.data and c.data.context != c.tracking.context_amount:
    raise ValueError(f"data.context={c.data.context} and tracking.context_amount="
                     f"{c.tracking.context_amount} differ: the tracker must crop the way the "
                     "model was trained")
  t, grid = template_cells(m), online_grid(m, m.exemplar_size)
  if t < 4 or (grid - t) % 2 or t > grid:
    parity = "odd" if grid % 2 else "even"
    hint = (" (the dilated backbone: 7, pysot's crop; give template_cells=7 or the "
            "config arg backbone=resnet50_dilated, which sets it)" if grid % 2 else "")
    raise ValueError(f"model.template_cells={t} must be {parity} like the template grid "
                     f"({grid} cells), >= 4 and at most the grid{hint}")
  if (m.search_size - m.exemplar_size) % m.stride:
    raise ValueError("model.search_size - model.exemplar_size must be a multiple of model.stride")
  if training:
    _check_training(c)
  return c


def _validate_loss_recipe(loss):
  """The Eq. 6 balance and joint-training keys (configs saved before them have defaults)."""
  choices = {"online_loss": ONLINE_LOSSES, "online_reduction": ONLINE_REDUCTIONS,
             "joint_template": JOINT_TEMPLATES}
  for key, allowed in choices.items():
    if loss.get(key, allowed[0]) not in allowed:
      raise ValueError(f"loss.{key}={loss.get(key)!r}; allowed: {', '.join(allowed)}")
  w = tuple(loss.get("iterate_weights", (1., 4., 1.)))
  if len(w) != 3 or min(w) < 0 or sum(w) <= 0:
    raise ValueError(f"loss.iterate_weights={w}: three weights >= 0 (initial, intermediate "
                     "iterates together, final) with a positive sum")
  if int(loss.get("atss_min_l2_topk", 9)) < 2:
    raise ValueError(f"loss.atss_min_l2_topk={loss.get('atss_min_l2_topk')} must be >= 2 "
                     "(the ATSS threshold needs a standard deviation)")


def _check_training(c):
  """Settings that train without error but not as anyone means them."""
  freeze = int(c.optim.get("backbone_freeze_epochs", 0)) if "optim" in c else 0
  if freeze > 0 and not c.model.get("pretrained"):
    # The paper's recipe freezes an ImageNet backbone; without weights the heads would train
    # for `freeze` epochs on random, fixed features.
    raise ValueError(
        f"optim.backbone_freeze_epochs={freeze} holds the backbone fixed for the first "
        f"{freeze} epochs, but model.pretrained is empty: that freezes a randomly initialised "
        "backbone. Give ImageNet weights (--config.model.pretrained=DIR, written by "
        "python -m duml_jax.convert.torch_resnet) or switch the freeze off explicitly "
        "(--config.optim.backbone_freeze_epochs=0)")


def feature_offset(model_config):
  """Crop pixel (index) of feature cell 0's centre: 0 for the interpolated backbones (cell j
  at 8 j), 7 for `resnet50_dilated` (conv1 and layer2's stride-2 convs unpadded)."""
  return _FEATURE_OFFSET.get(model_config.backbone, 0)


def online_grid(model_config, search_size=None):
  """Cells of the stride-8 feature grid of a crop: 32 for a 255 search, 40 for 319 (16 for
  the 127 template); 31, 39 (15) with the dilated backbone."""
  s = model_config.search_size if search_size is None else search_size
  off = feature_offset(model_config)
  if off:
    return (s - off) // model_config.stride
  return s // model_config.stride + 1


def template_cells(model_config):
  """Template cells fed to the offline heads: `model.template_cells`, 8 (the paper's
  geometry) for configs saved before the key existed."""
  return int(model_config.get("template_cells", 8))


def score_size(model_config, search_size=None):
  """Side of the score maps: 25 for a 255 search, 33 for 319 (see `models/neck.py`).

  The heads' 3x3 valid convolutions take the search grid G to G - 2 and the
  template crop T to T - 2, so the cross-correlation gives G - T + 1 cells.
  """
  return online_grid(model_config, search_size) - template_cells(model_config) + 1

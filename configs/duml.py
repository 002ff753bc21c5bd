"""DuML configs: the paper's recipe, every localization form, and CPU-sized variants.

Use from the command line as ``--config=configs/duml.py:ARG`` where ARG is a
comma-separated list: an optional preset first, then ``key=value`` overrides
of the *form* (the same keys can also be set with ``--config.model.KEY=...``):

  paper                       ResNet-50, DuML = OFC-5s + ONR, mu 0.8, voting
  tiny                        tiny CNN, synthetic data, trains on a laptop CPU
  resnet18                    paper recipe on ResNet-18
  paper,offline=OFR,online=none      the OFR uni-modal form (Table 2)
  tiny,offline=OFC-5s,online=ONC-1s  any pairing (Table 3)
  paper,voting=0                     score voting off (Table 4)
  paper,mu=0.7                       fusion weight (Figure 4)
  paper,norm=group                   GroupNorm instead of BatchNorm (model.norm)
  tiny,loss=section4                 Eq. 6's weights read by Section 4's subscripts
                                     (hinge 1, focal 10; default loss=eq6: hinge 10, focal 1)
  paper,data=VYCD                    Appendix D training mix (VYCLG default, VYCD, VYC,
                                     VC; letters of DATASETS, any combination)
  paper,backbone=resnet50_dilated    SiamRPN++'s dilated ResNet-50 (Appendix B), 7x7 template

Preset names for the paper's forms are also accepted directly, e.g.
``ofc5s``, ``onr``, ``ofr+onc5s``, ``duml`` (= ``paper``), optionally with a
``tiny-`` prefix (``tiny-onr``). Values derived from the form (number of
anchors, which heads exist) are computed when the model is built, never here,
so command-line overrides cannot leave them stale.
"""
import ml_collections

from duml_jax import config_args
from duml_jax import config_lib
from duml_jax.data import pipeline as data_pipeline
from duml_jax.training import optim

PRESETS = ("paper", "duml", "tiny", "resnet18")

# Short names of the paper's forms (Tables 2-3): "<offline>+<online>".
_SHORT = {"ofr": "OFR", "ofc1s": "OFC-1s", "ofc5s": "OFC-5s",
          "onr": "ONR", "onc1s": "ONC-1s", "onc5s": "ONC-5s"}


# Appendix D's training sets, one letter each: (builder, root under data.data_root, sampling
# weight, frame_range). The paper gives neither weights nor frame ranges. frame_range: pysot's
# siamrpn_r50_l234 values for V, Y, C, D (anchors.md 2.7); pysot has no LaSOT / GOT-10k
# entry, 100 is what the pysot-derived configs that add them use. Weights: pysot draws
# NUM_USE videos of each set per epoch (VID 100,000 repeated, the others all of theirs),
# i.e. in proportion to their sizes; equal weights are this project's choice. V and D
# share the ILSVRC2015 tree (ILSVRC/Data/VID, ILSVRC/Data/DET).
DATASETS = {
    "V": ("imagenet_vid", "ILSVRC2015", 1.0, 100),
    "Y": ("youtube_bb", "youtube_bb", 1.0, 3),
    "C": ("coco", "coco", 1.0, 1),
    "D": ("imagenet_det", "ILSVRC2015", 1.0, 1),
    "L": ("lasot", "LaSOT", 1.0, 100),
    "G": ("got10k", "GOT-10k", 1.0, 100),
}
DATA_MIXES = ("VYCLG", "VYCD", "VYC", "VC")     # Table 11, the first the paper's default


def data_mix(letters, arg=None):
  """`config.data.datasets` of a mix such as "VYCD" (letters of `DATASETS`)."""
  bad = sorted(set(letters) - set(DATASETS))
  if not letters or bad or len(set(letters)) != len(letters):
    raise ValueError(f"config arg {arg or letters!r}: data={letters!r} must be distinct "
                     f"letters of {sorted(DATASETS)} (the paper's mixes: {DATA_MIXES})")
  out = []
  for ch in letters:
    name, root, weight, frame_range = DATASETS[ch]
    out.append(ml_collections.ConfigDict(dict(name=name, root=root, weight=weight,
                                              split="train", frame_range=frame_range,
                                              tag="")))
  return out


def _model_config():
  m = ml_collections.ConfigDict()
  m.backbone = "resnet50"          # resnet50 | resnet18 | tiny | resnet50_dilated (pysot's
                                   # modified ResNet-50, Appendix B's baseline: template_cells 7)
  m.pretrained = ""                # dir written by duml_jax.convert.torch_resnet
  m.frozen_bn = False              # backbone BN always in inference mode
  m.norm = "batch"                 # batch (paper, pysot) | group (GroupNorm: no running
                                   # statistics, training behaves as inference)
  m.dtype = "float32"              # compute dtype: float32 | bfloat16 (params stay float32)
  m.neck_channels = 256
  m.offline = "OFC-5s"             # none | OFR | OFC-1s | OFC-5s
  m.online = "ONR"                 # none | ONR | ONC-1s | ONC-5s
  m.exemplar_size = 127
  m.search_size = 255
  m.stride = 8
  m.template_cells = 8             # template cells fed to the offline heads (8 of 16: the
                                   # target's extent at context 0.5); score map = grid - this + 1
  m.anchor_ratios = (0.33, 0.5, 1.0, 2.0, 3.0)   # for the "-5s" forms
  m.anchor_scales = (8.0,)
  on = ml_collections.ConfigDict()
  on.feature_dim = 256             # online feature channels after fusion
  on.filter_size = 5               # phi is filter_size^2 x feature_dim x A
  on.train_iters = 5               # inner SD-GN steps in training (DiMP: 5)
  on.num_dist_bins = 100           # triangular basis functions
  on.bin_displacement = 0.2        # in feature cells (stride 8)
  on.label_sigma = 2.0             # Gaussian label sigma, feature cells
  on.mask_init_factor = 3.0
  on.mask_init_radius = 4.0        # cells where the init mask crosses 0.5
  on.init_step_length = 1.0
  on.init_filter_reg = 0.1
  on.min_filter_reg = 1e-3
  on.checkpoint_steps = False      # jax.checkpoint each inner step
  on.alpha_eps = 0.01              # Eq. 8 damping epsilon (Appendix A: 0.01; DiMP's alpha_eps)
  m.online_cfg = on
  return m


def _tracking_config():
  t = ml_collections.ConfigDict()
  t.mu = 0.8                       # Eq. 1 fusion weight
  t.score_voting = True            # Eq. 4-5
  t.voting_sigma = 0.0025
  t.voting_eps = 0.01
  t.online_norm = "minmax"         # calibration of the online map before Eq. 1 (DROL's
                                   # min-max; tracker.ONLINE_NORMS: clip, peak, none, affine)
  t.online_scale = 1.0             # online_norm=affine: clip(scale * raw + offset, 0, 1)
  t.online_offset = 0.0
  t.offline_temperature = 1.0      # offline probability sigmoid(logit / T) before Eq. 1
  t.mu_scale_uncertain = 1.0       # mu x this where the online map has a distractor
  t.mu_scale_lost = 1.0            # mu x this where the online peak says "not found"
  t.update_min_score = 0.0         # memory sample only if the fused score is >= this
  t.mu_scale_disagree = 1.0        # mu x this where the offline score at the online peak
  t.disagree_threshold = 0.5       # is below this (the offline branch's veto)
  t.update_min_offline = 0.0       # memory sample only if the offline score there is >= this
  t.mu_scale_offline_unsure = 1.0  # mu x this (at most 1) where the offline map's peak is
  t.offline_unsure_threshold = 0.8 # below this (the offline branch losing the target)
  t.centre_from = "box"            # box (paper: regressed / voted) | score_peak (sub-cell peak
                                   # of the penalised score map; size still from the box head)
  t.context_amount = 0.5
  t.search_size = 255              # 319 for NFS / UAV123 / LaSOT (Appendix A)
  t.penalty_k = 0.05
  t.window_influence = 0.42
  t.lr = 0.38
  t.min_size = 10.0
  # Online branch (Appendix A, DiMP semantics for the memory weights).
  t.memory_size = 50
  t.num_init_samples = 10          # fixed memory part: augmented first frame
  t.init_dropout_samples = 0       # + copies of the plain first frame's online features with
                                   # channel dropout (DiMP: 2; 0 = off, as measured so far)
  t.init_dropout_prob = 0.2        # their dropout rate (DiMP's 0.2)
  t.init_iters = 10
  t.update_every = 20
  t.update_iters = 2
  t.update_lr = 0.1                # weight of a new sample in the memory
  t.distractor_iters = 1
  t.distractor_lr = 0.2
  t.init_samples_min_weight = 0.25
  t.not_found_threshold = 0.25     # target judged lost below this peak
  t.distractor_threshold = 0.5     # 2nd peak / 1st peak ratio
  t.distractor_window = 2.2        # x target size, suppressed around peak 1
  # Per-benchmark overrides applied by evaluate.py (pysot / paper values).
  t.benchmarks = ml_collections.ConfigDict({
      "otb": {"penalty_k": 0.24, "window_influence": 0.5, "lr": 0.25},
      "otb2015": {"penalty_k": 0.24, "window_influence": 0.5, "lr": 0.25},
      "vot2018": {"penalty_k": 0.05, "window_influence": 0.42, "lr": 0.38},
      "vot2019": {"penalty_k": 0.05, "window_influence": 0.42, "lr": 0.38},
      "nfs30": {"search_size": 319},
      "uav123": {"search_size": 319},
      "lasot": {"search_size": 319},
      "trackingnet": {},
      "got10k": {},
  })
  return t


# The two readings of the sentence after Eq. 6 (weights 1, 10 for "L_r, L_a ... focal loss,
# hinge loss"): section4 keeps the subscripts (robust = online hinge 1, accurate = offline
# focal 10; the loss names are the typo), eq6 keeps the loss names (focal 1, hinge 10; the
# subscripts are the typo). docs/paper_vs_code.md has the measured balance of each.
LOSS_READINGS = {
    "section4": {"w_online": 1.0, "w_offline": 10.0},
    "eq6": {"w_online": 10.0, "w_offline": 1.0},
}


def _loss_config():
  l = ml_collections.ConfigDict()
  # loss=eq6 by default: on the tiny recipe it ties section4, ahead on validation and held-out
  # AUC (docs/paper_vs_code.md), and it balances the two terms' gradients.
  l.w_online = 10.0                # Eq. 6 weight of the online (hinge) term
  l.w_offline = 1.0                # weight of the offline (focal / FC_PR) term; see LOSS_READINGS
  l.w_box = 1.2                    # lambda_b (L1)
  l.w_iou = 1.2                    # lambda_o (BCE)
  l.online_loss = "hinge"          # hinge (Section 4, DiMP's LBHinge) | l2 (plain squared error)
  l.online_reduction = "mean"      # mean over every score cell (DiMP's MSELoss) | sum_cells
  l.iterate_weights = (1.0, 4.0, 1.0)  # online loss of phi^(0) / all middle iterates / phi^(T)
                                   # (DiMP 100 / 400 / 100)
  l.normalise_iterate_weights = True   # divide them by their sum (False: DiMP's 6x scale)
  l.joint_template = "mean"        # joint training's template: mean (footnote 1: averaged
                                   # support features) | first (the first support frame)
  l.ofc_assigner = "atss_max_iou"  # atss_max_iou | atss_min_l2 | iou
  l.offline_on_support = False      # sequence training: offline/box losses also on the
                                   # support crops (default: query crops only)
  l.box_assigner = ""               # positives of the box / IoU losses: "" = ofc_assigner,
                                   # or centre_radius (all anchors within box_radius cells)
  l.box_radius = 1.5
  l.atss_topk_5s = 15              # ATSS_Max.IoU candidates (Appendix A)
  l.atss_topk_1s = 11
  l.atss_min_l2_topk = 9           # ATSS_Min.L2 candidates per anchor shape (ATSS's default;
                                   # the paper does not give its k)
  l.focal_alpha = 0.25
  l.focal_gamma = 2.0
  l.ofr_loss = "FC_PR"             # FC_PR | FC_RG
  l.ofr_alpha = 2.0
  l.ofr_beta = 4.0
  l.ofr_sigma = 1.0                # Gaussian label sigma, score cells
  l.hinge_threshold = 0.05
  l.onc_pos_iou = 0.8
  l.onc_neg_iou = 0.3
  return l


def get_config(arg=None):
  """Returns the config for `arg` (see module docstring)."""
  arg = arg or "paper"
  preset, overrides = config_args.parse(arg, "paper")

  form = None
  if preset.startswith("tiny-"):
    preset, form = "tiny", preset[len("tiny-"):]
  elif preset not in PRESETS:
    preset, form = "paper", preset

  c = ml_collections.ConfigDict()
  c.name = preset
  c.tracker = "duml"               # the tracker family (evaluation.families)
  c.seed = 0
  c.model = _model_config()
  c.tracking = _tracking_config()
  c.loss = _loss_config()
  c.optim = optim.default_optim_config()
  c.data = data_pipeline.default_data_config()
  c.data.datasets = data_mix(DATA_MIXES[0])
  c.batch_size = 224               # global: 28 per GPU x 8 (pysot 8-GPU)
  c.steps_per_epoch = 600_000 // 224          # pysot: 600k videos per epoch
  # num_epochs lives in c.optim (the schedule spans it).
  c.num_train_steps = c.get_ref("steps_per_epoch") * c.optim.get_ref("num_epochs")
  c.log_every_steps = 50
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  c.eval = ml_collections.ConfigDict()
  c.eval.synthetic_sequences = 0   # held-out synthetic sequences at the end
  c.eval.synthetic_frames = 100
  c.eval.otb_sample_dir = ""       # evaluate on this OTB-layout folder too
  c.eval.batch_sequences = 1

  if preset == "resnet18":
    c.model.backbone = "resnet18"
  if preset == "tiny":
    _tiny(c)
  if form is not None:
    _apply_form(c, form, arg)
  for key, value in overrides:
    _apply_override(c, key, value, arg)
  config_lib.validate(c)
  c.lock()
  return c


def _tiny(c):
  """CPU-sized model and recipe on the synthetic tracking dataset.

  Half-size crops (63 template / 127 search) at stride 8 with context 0.25
  (the target ~42 px in the crop instead of ~32 at 0.5): 8x8 template and
  16x16 search feature grids; the offline heads see the 6 central template
  cells (~ the target's extent, as the paper's 8 of 16 at context 0.5), giving
  11x11 score maps (-40 ... +40 px); anchors of base size 40 (scale 5);
  online label/mask widths halved. docs/experiments.md has the measurements
  behind each choice (validation sequences only).
  """
  c.model.backbone = "tiny"
  c.model.neck_channels = 32
  c.model.exemplar_size = 63
  c.model.search_size = 127
  c.model.anchor_scales = (5.0,)
  c.model.template_cells = 6
  # Context 0.25: more pixels on the target for the same crop cost, and a template kernel
  # that holds the target rather than its surroundings (at 0.5 the 8x8 kernel was ~55%
  # background and the tracker stuck to the background the target left).
  c.data.context = 0.25
  c.tracking.context_amount = 0.25
  c.model.online_cfg.feature_dim = 32
  c.model.online_cfg.train_iters = 3
  c.model.online_cfg.label_sigma = 1.0
  c.model.online_cfg.mask_init_radius = 2.0
  c.model.online_cfg.bin_displacement = 0.1
  c.tracking.search_size = 127
  for name in ("nfs30", "uav123", "lasot"):
    c.tracking.benchmarks[name] = {}
  c.data.template_aug.shift = 2.0
  c.data.search_aug.shift = 32.0
  # The box head learns the target's size only when sizes vary enough in training: with
  # pysot's per-axis 0.18 its predicted size did not follow the target's at all (slope
  # 0.0 on held-out training-distribution pairs) and the tracked size drifted; a common
  # log-uniform zoom of +-0.5 teaches it (slope ~0.45).
  c.data.search_aug.scale = 0.2
  c.data.search_aug.zoom = 0.5
  c.batch_size = 16
  # 1800 steps fit the main job's ~20-minute budget on 2 CPU cores (1.80 steps/s median on
  # 2026-12-03; the step's speed varies ~2.5x between VMs of this type). Validation AUC
  # (64 x 150): 0.614 at 1300 steps, 0.625 at 1800; batch 8 x 3400 steps ties (0.623).
  c.steps_per_epoch = 180
  c.optim.num_epochs = 10
  c.log_every_steps = 60          # 30 console lines over the run: a screen or two
  c.checkpoint_every_steps = 200
  # 32 held-out sequences: per-sequence AUCs spread 0.0-0.8 (sd ~0.2), so 8 gave a
  # standard error of ~0.07 (0.617 on the first 8 vs 0.501 on 32 for the same model).
  c.eval.synthetic_sequences = 32
  c.eval.synthetic_frames = 150            # >= 100 so that VOT2018's EAO range starts
  c.eval.batch_sequences = 4
  c.optim.backbone_freeze_epochs = 0       # no ImageNet init: train it all
  c.optim.backbone_lr_mult = 1.0
  c.optim.optimizer = "adamw"              # from scratch, Adam learns far faster than SGD
  # Peak LR 6e-3: from scratch, higher rates learnt faster on the validation split
  # (2e-3 -> 4e-3 -> 6e-3; 8e-3 no better). BatchNorm, not GroupNorm: GroupNorm was not
  # better on the held-out seeds when trained beside it (docs/experiments.md).
  c.optim.base_lr = 0.006
  c.optim.warmup_start_lr = 0.0006
  c.optim.warmup_epochs = 1
  # Linear warm-up over the first epoch, then a cosine to 2e-5 at the last step, both per
  # step (pysot's per-epoch log decay held 10% of this short run at the start LR and 40%
  # below 3e-4).
  c.optim.warmup_type = "linear"
  c.optim.schedule = "cosine"
  c.optim.lr_granularity = "step"
  c.optim.end_lr = 0.00002
  c.data.data_root = "~/.cache/duml_jax/data"
  c.data.tfds_dir = "~/.cache/duml_jax/tfds"
  c.data.datasets = [data_pipeline.synthetic_dataset("synthetic", 1.0, frame_range=100)]
  # Every draw renders a new video (seeds 0 .. 899,999; 900,000+ are the
  # validation seeds for tuning): 200 written videos overfit (held-out
  # displacement slope 0.3-0.5 vs 0.9 on training videos).
  c.data.synthetic.procedural = True
  # Sensor noise cropped from one pre-drawn field per worker instead of drawn per frame:
  # ~11% faster steps (the renderer runs beside the step on the same 2 cores) at the same
  # validation AUC as per-frame noise. Held-out and validation videos are rendered with
  # per-frame ("exact") noise whatever this says.
  c.data.synthetic.noise = "bank"
  c.data.synthetic.num_videos = 900_000
  c.data.num_workers = 0
  # Tracking hyper-parameters tuned on the synthetic validation split
  # (python -m duml_jax.experiments.tune, docs/experiments.md), never on the
  # held-out seeds; the per-benchmark (ResNet-50) overrides do not apply.
  # The box head learns offsets only when its positives span more than the best cell: with
  # the ATSS positives (~2.5 per crop, residuals under half a cell) its L1 stayed at that of
  # predicting zero; all anchors within 1.5 cells (~40 per crop) and the support crops too.
  c.loss.box_assigner = "centre_radius"
  c.loss.offline_on_support = True
  # Window influence 0.1 was best of 0.05-0.3 on the validation split (tracking lr 0.25;
  # lr 0.15 / 0.4 and penalty_k 0.02 / 0.1 were not better).
  c.tracking.window_influence = 0.1
  c.tracking.penalty_k = 0.05
  c.tracking.lr = 0.25
  for name in ("otb", "otb2015"):
    c.tracking.benchmarks[name] = {}


def _apply_form(c, form, arg):
  """Form names like 'ofc5s', 'onr', 'ofr+onc5s', 'duml'."""
  if form == "duml":
    return
  off, on = "none", "none"
  for piece in form.lower().split("+"):
    if piece not in _SHORT:
      raise ValueError(
          f"config arg {arg!r}: unknown preset or form {piece!r}; presets are "
          f"{PRESETS}, forms {sorted(_SHORT)} joined with '+'")
    name = _SHORT[piece]
    if name.startswith("OF"):
      off = name
    else:
      on = name
  c.model.offline, c.model.online = off, on


_OVERRIDES = {
    "offline": ("model", "offline", str),
    "online": ("model", "online", str),
    "backbone": ("model", "backbone", str),
    "dtype": ("model", "dtype", str),
    "norm": ("model", "norm", str),
    "template_cells": ("model", "template_cells", int),
    "mu": ("tracking", "mu", float),
    "voting": ("tracking", "score_voting", lambda v: v.lower() in ("1", "true", "yes", "on")),
    "assigner": ("loss", "ofc_assigner", str),
    "ofr_loss": ("loss", "ofr_loss", str),
}


def _apply_override(c, key, value, arg):
  if key == "loss":
    if value not in LOSS_READINGS:
      raise ValueError(f"config arg {arg!r}: loss={value!r}; the readings of Eq. 6 are "
                       f"{sorted(LOSS_READINGS)}")
    c.loss.update(LOSS_READINGS[value])
    return
  if key == "data":
    c.data.datasets = data_mix(value, arg)
    return
  if key not in _OVERRIDES:
    raise ValueError(f"config arg {arg!r}: unknown key {key!r}; known keys: "
                     f"{sorted(list(_OVERRIDES) + ['data', 'loss'])} "
                     "(other keys: --config.KEY=VALUE)")
  section, field, cast = _OVERRIDES[key]
  c[section][field] = cast(value)
  if key == "backbone" and value == "resnet50_dilated":
    # pysot's 7x7 template crop of the 15x15 grid (25x25 score maps, as 8 of 16 gives).
    c.model.template_cells = 7

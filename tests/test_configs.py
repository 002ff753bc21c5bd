"""Configs: every form of the paper as data; clear errors for bad settings."""
import itertools
import os
import subprocess
import sys
import time

import pytest

from configs import duml as duml_config
from duml_jax import config_lib

PAIRS = [(a, b) for a, b in itertools.product(config_lib.OFFLINE_FORMS, config_lib.ONLINE_FORMS)
         if not a == b == "none"]


@pytest.mark.parametrize("off,on", PAIRS)
def test_every_form_is_a_config(off, on):
  c = duml_config.get_config(f"tiny,offline={off},online={on}")
  assert (c.model.offline, c.model.online) == (off, on)
  assert c.model.backbone == "tiny"


@pytest.mark.parametrize("name,off,on", [
    ("ofr", "OFR", "none"), ("ofc1s", "OFC-1s", "none"), ("ofc5s", "OFC-5s", "none"),
    ("onr", "none", "ONR"), ("onc1s", "none", "ONC-1s"), ("onc5s", "none", "ONC-5s"),
    ("ofc5s+onr", "OFC-5s", "ONR"), ("ofr+onc5s", "OFR", "ONC-5s"), ("duml", "OFC-5s", "ONR"),
    ("tiny-ofc1s+onc1s", "OFC-1s", "ONC-1s")])
def test_named_forms(name, off, on):
  c = duml_config.get_config(name)
  assert (c.model.offline, c.model.online) == (off, on)
  assert c.model.backbone == ("tiny" if name.startswith("tiny") else "resnet50")


def test_paper_defaults_and_switches():
  c = duml_config.get_config("paper")
  assert (c.model.offline, c.model.online, c.tracking.mu) == ("OFC-5s", "ONR", 0.8)
  assert c.tracking.score_voting and c.tracking.voting_sigma == 0.0025
  assert (c.loss.w_online, c.loss.w_offline, c.loss.w_box, c.loss.w_iou) == (10., 1., 1.2, 1.2)
  assert (c.loss.atss_topk_5s, c.loss.atss_topk_1s) == (15, 11)
  assert c.tracking.memory_size == 50 and c.tracking.update_every == 20
  assert c.num_train_steps == c.steps_per_epoch * c.optim.num_epochs
  v = duml_config.get_config("paper,voting=0,mu=0.7,assigner=atss_min_l2,ofr_loss=FC_RG")
  assert not v.tracking.score_voting and v.tracking.mu == 0.7
  assert v.loss.ofc_assigner == "atss_min_l2" and v.loss.ofr_loss == "FC_RG"
  assert duml_config.get_config("resnet18").model.backbone == "resnet18"


def test_eq8_damping_is_the_papers_in_paper_and_tiny():
  from duml_jax.models import duml as duml_lib  # pylint: disable=import-outside-toplevel
  from duml_jax.models import duml_nano  # pylint: disable=import-outside-toplevel
  paper, tiny = duml_config.get_config("paper"), duml_config.get_config("tiny")
  assert paper.model.online_cfg.alpha_eps == 0.01 and tiny.model.online_cfg.alpha_eps == 0.01
  assert duml_lib.build_model(paper.model).online_spec.alpha_eps == 0.01
  assert duml_nano.NANO_ONLINE_SPEC.alpha_eps == 0.0      # DuML-nano unchanged
  # A config saved before the key existed builds the undamped step.
  old = paper.model.to_dict()
  del old["online_cfg"]["alpha_eps"]
  import ml_collections  # pylint: disable=import-outside-toplevel
  assert duml_lib.build_model(ml_collections.ConfigDict(old)).online_spec.alpha_eps == 0.0


def test_derived_values_follow_overrides():
  c = duml_config.get_config("paper")
  assert config_lib.box_anchors(c.model) == 5 and config_lib.score_size(c.model) == 25
  c.model.offline, c.model.online = "OFR", "ONC-1s"     # like --config.model.offline=OFR
  assert config_lib.box_anchors(c.model) == 1
  assert config_lib.anchor_ratios(c.model) == (1.0,)
  c.model.search_size = 319
  assert config_lib.score_size(c.model) == 33
  t = duml_config.get_config("tiny")
  assert config_lib.score_size(t.model) == 11 and config_lib.online_grid(t.model) == 16
  t.model.template_cells = 8
  assert config_lib.score_size(t.model) == 9


@pytest.mark.parametrize("arg,match", [
    ("paper,offline=none,online=none", "both 'none'"),
    ("paper,offline=OFC-3s", "model.offline"),
    ("paper,online=ONX", "model.online"),
    ("tiny,template_cells=5", "model.template_cells"),
    ("tiny,template_cells=10", "model.template_cells"),
    ("paper,backbone=vgg", "model.backbone"),
    ("paper,mu=1.5", "tracking.mu"),
    ("tiny,norm=layer", "model.norm='layer'"),
    ("paper,assigner=topk", "loss.ofc_assigner"),
    ("paper,nosuchkey=1", "unknown key 'nosuchkey'"),
    ("paper,ofc7s", "must be key=value"),
    ("tiny,loss=dimp", "loss='dimp'"),
    ("paper,data=VYX", "data='VYX'"),
    ("paper,data=VV", "data='VV'"),
    ("bogus", "unknown preset or form 'bogus'"),
])
def test_bad_settings_fail_with_the_key_named(arg, match):
  with pytest.raises(ValueError, match=match):
    duml_config.get_config(arg)


def test_group_norm_refuses_batchnorm_weights():
  assert duml_config.get_config("tiny,norm=group").model.norm == "group"
  c = duml_config.get_config("paper,norm=group")
  c.unlock()
  c.model.pretrained = "/some/converted_resnet50"   # like --config.model.pretrained=...
  with pytest.raises(ValueError, match="model.norm='group' cannot use model.pretrained"):
    config_lib.validate(c)


def test_tracking_context_must_match_training_context():
  c = duml_config.get_config("tiny")
  assert c.data.context == c.tracking.context_amount == 0.25
  c.unlock()
  c.tracking.context_amount = 0.5        # like --config.tracking.context_amount=0.5
  with pytest.raises(ValueError, match="data.context=0.25 and tracking.context_amount=0.5"):
    config_lib.validate(c)


def test_unknown_field_overrides_fail():
  c = duml_config.get_config("tiny")
  with pytest.raises(AttributeError):
    c.model.no_such_field = 1        # locked: like --config.model.no_such_field=1
  with pytest.raises(ValueError, match="model.online"):
    c.unlock()
    c.model.online = "onr"
    config_lib.validate(c)


def test_eq6_readings_and_recipe_keys():
  s4, eq6 = (duml_config.get_config(f"tiny,loss={r}") for r in ("section4", "eq6"))
  assert (s4.loss.w_online, s4.loss.w_offline) == (1., 10.)
  assert (eq6.loss.w_online, eq6.loss.w_offline) == (10., 1.)
  default = duml_config.get_config("tiny")
  assert (default.loss.w_online, default.loss.w_offline) == (10., 1.)      # eq6
  from duml_jax.training import losses  # pylint: disable=import-outside-toplevel
  assert dict(losses.DEFAULT_WEIGHTS) == {"online": default.loss.w_online,   # library = config
                                          "offline": default.loss.w_offline,
                                          "box": default.loss.w_box, "iou": default.loss.w_iou}
  assert default.loss.online_loss == "hinge" and default.loss.online_reduction == "mean"
  assert tuple(default.loss.iterate_weights) == (1., 4., 1.)
  assert default.loss.normalise_iterate_weights and default.loss.joint_template == "mean"
  for key, value, match in (("online_loss", "focal", "loss.online_loss"),
                            ("online_reduction", "sum", "loss.online_reduction"),
                            ("joint_template", "last", "loss.joint_template"),
                            ("iterate_weights", (1., -1., 1.), "loss.iterate_weights"),
                            ("iterate_weights", (1., 1.), "loss.iterate_weights"),
                            ("atss_min_l2_topk", 1, "loss.atss_min_l2_topk")):
    c = duml_config.get_config("tiny").unlock()
    c.loss[key] = value
    with pytest.raises(ValueError, match=match):
      config_lib.validate(c)


def test_appendix_d_data_mixes():
  table = {"V": ("imagenet_vid", 100), "Y": ("youtube_bb", 3), "C": ("coco", 1),
           "D": ("imagenet_det", 1), "L": ("lasot", 100), "G": ("got10k", 100)}
  for mix in ("VYCLG", "VYCD", "VYC", "VC"):
    c = duml_config.get_config(f"paper,data={mix}")
    assert [(d.name, d.frame_range) for d in c.data.datasets] == [table[ch] for ch in mix]
    assert all(d.weight == 1.0 and d.split == "train" for d in c.data.datasets)
  paper = duml_config.get_config("paper")
  assert [d.name for d in paper.data.datasets] == [table[ch][0] for ch in "VYCLG"]
  from duml_jax.data import builders
  assert all(name in builders.BUILDERS for name, _ in table.values())
  # tiny keeps its synthetic data unless a mix is asked for.
  assert [d.name for d in duml_config.get_config("tiny").data.datasets] == ["synthetic"]


def test_training_refuses_a_frozen_random_backbone():
  # The paper preset freezes the backbone for 10 epochs: meant for ImageNet weights.
  c = duml_config.get_config("paper")
  assert c.optim.backbone_freeze_epochs == 10 and not c.model.pretrained
  config_lib.validate(c)                      # evaluation / inspection: fine
  with pytest.raises(ValueError, match=r"optim.backbone_freeze_epochs=10.*model.pretrained"):
    config_lib.validate(c, training=True)
  c.unlock()
  c.model.pretrained = "/some/converted_resnet50"
  config_lib.validate(c, training=True)
  c.model.pretrained = ""
  c.optim.backbone_freeze_epochs = 0          # switched off explicitly: trains it all
  config_lib.validate(c, training=True)
  config_lib.validate(duml_config.get_config("tiny"), training=True)


def test_train_py_refuses_paper_without_weights_at_once(tmp_path):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  t0 = time.perf_counter()
  r = subprocess.run([sys.executable, "train.py", "--config=configs/duml.py:paper",
                      f"--workdir={tmp_path / 'w'}"], cwd=root, capture_output=True, text=True,
                     timeout=120, env=dict(os.environ, JAX_PLATFORMS="cpu"), check=False)
  assert r.returncode != 0
  assert "model.pretrained" in r.stderr and "optim.backbone_freeze_epochs" in r.stderr
  assert not (tmp_path / "w").exists()         # refused before anything was built or written
  assert time.perf_counter() - t0 < 60

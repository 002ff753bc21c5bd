"""One tracker protocol for every family (`evaluation.families`): the config names it."""
import inspect

import ml_collections
import pytest

from configs import duml as duml_config
from configs import duml_nano as nano_config
from duml_jax.evaluation import duml_family
from duml_jax.evaluation import evaluate_lib
from duml_jax.evaluation import families
from duml_jax.evaluation import nano


def test_every_family_module_has_the_protocol():
  wanted = {n: inspect.signature(f) for n, f in vars(families.Family).items()
            if callable(f) and not n.startswith("_")}
  assert set(wanted) == {"tracker_name", "config_and_variables", "make_tracker",
                         "make_single_tracker", "baseline_kwargs"}
  for name, module in families.FAMILIES.items():
    for fn, sig in wanted.items():
      got = inspect.signature(getattr(module, fn))
      # The protocol's parameters less `self`, in order (a module may add trailing defaults).
      params = list(sig.parameters)[1:]
      assert list(got.parameters)[:len(params)] == params, (name, fn, got)


def test_the_config_names_its_family():
  assert families.name_of(duml_config.get_config("tiny")) == "duml"
  assert families.family(duml_config.get_config("tiny")) is duml_family
  assert families.name_of(nano_config.get_config("nanotrack")) == "nanotrack"
  assert families.family(nano_config.get_config("duml_nano")) is nano
  # A train.py checkpoint's config saved before `tracker` existed, and no config at all.
  old = ml_collections.ConfigDict(duml_config.get_config("tiny").to_dict())
  del old["tracker"]
  assert families.name_of(old) == families.name_of(None) == "duml"
  bad = ml_collections.ConfigDict(old.to_dict())
  bad.tracker = "siamrpn"
  with pytest.raises(ValueError, match="config.tracker='siamrpn'"):
    evaluate_lib.tracker_name(bad)


def test_dispatch_reaches_each_family():
  assert evaluate_lib.tracker_name(duml_config.get_config("tiny")).startswith("DuML-")
  assert evaluate_lib.tracker_name(nano_config.get_config("nanotrack")) == "NanoTrack-JAX-v2"
  assert evaluate_lib.make_baselines(duml_config.get_config("tiny"), ["keep_first"])[0].name
  with pytest.raises(ValueError, match="step=3"):
    evaluate_lib.config_and_variables(nano_config.get_config("onr"), None, 3)

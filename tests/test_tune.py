"""Tracking hyper-parameter search on the synthetic validation split."""
import json
import os

import ml_collections
import pytest

from configs import duml as duml_configs
from duml_jax.data import synthetic
from duml_jax.experiments import tune


def test_parse_grid_and_combinations():
  g = tune.parse_grid("window_influence=0.2,0.4; penalty_k=0.1")
  assert g == {"window_influence": [0.2, 0.4], "penalty_k": [0.1]}
  assert tune.combinations(g) == [{"penalty_k": 0.1, "window_influence": 0.2},
                                  {"penalty_k": 0.1, "window_influence": 0.4}]
  for bad in ("", "window_influence", "lr="):
    with pytest.raises(ValueError):
      tune.parse_grid(bad)
  assert tune.parse_grid("centre_from=box,score_peak") == {"centre_from": ["box", "score_peak"]}


def test_with_tracking_sets_the_benchmark_entry_too():
  c = duml_configs.get_config("paper")
  assert c.tracking.benchmarks.otb.window_influence == 0.5
  t = tune.with_tracking(c, {"window_influence": 0.3, "update_every": 10.0})
  assert t.tracking.window_influence == 0.3 and t.tracking.benchmarks.otb.window_influence == 0.3
  assert t.tracking.update_every == 10 and isinstance(t.tracking.update_every, int)
  assert c.tracking.window_influence == 0.42            # the original is untouched
  with pytest.raises(KeyError, match="window_influense"):
    tune.with_tracking(c, {"window_influense": 0.3})
  # Every value is typed by its key; a value of the wrong kind names the key.
  t = tune.with_tracking(c, {"score_voting": 0.0, "centre_from": "score_peak"})
  assert t.tracking.score_voting is False and t.tracking.centre_from == "score_peak"
  old = ml_collections.ConfigDict(c.to_dict())
  del old.tracking["centre_from"]                 # a config saved before the key existed
  assert tune.with_tracking(old, {"centre_from": "score_peak"}).tracking.centre_from == "score_peak"
  for key, bad in (("lr", "a"), ("update_every", 2.5), ("centre_from", 1.0),
                   ("score_voting", 0.5)):
    with pytest.raises(ValueError, match=f"config.tracking.{key}"):
      tune.with_tracking(c, {key: bad})


def test_validation_seeds_are_training_seeds_the_tiny_recipe_never_draws():
  v = synthetic.VALIDATION_SEEDS
  assert v.start >= synthetic.TRAIN_SEEDS.start and v.stop <= synthetic.TRAIN_SEEDS.stop
  c = duml_configs.get_config("tiny")
  tune.check_untouched(c)
  c = duml_configs.get_config("tiny").unlock()
  c.data.synthetic.num_videos = v.start + 1
  with pytest.raises(ValueError, match="overlap the validation seeds"):
    tune.check_untouched(c)


def test_validation_set_refuses_other_seeds(tmp_path):
  with pytest.raises(ValueError, match="validation seeds"):
    synthetic.make_sequence_set([5], tmp_path, num_frames=2, height=32, width=32,
                                allowed=synthetic.VALIDATION_SEEDS)
  names = synthetic.make_sequence_set([synthetic.VALIDATION_SEEDS.start], tmp_path,
                                      num_frames=2, height=32, width=32,
                                      allowed=synthetic.VALIDATION_SEEDS)
  assert names == [synthetic.sequence_name(synthetic.VALIDATION_SEEDS.start)]


def test_importable_next_to_the_ablation_module():
  # Both are imported by one test process: flags must not collide.
  from duml_jax.experiments import ablation  # pylint: disable=g-import-not-at-top,unused-import
  import importlib
  importlib.reload(tune)


def test_tune_is_a_sweep_and_tabulates_grids_of_different_keys(tmp_path, monkeypatch):
  # The sweep itself is faked (its resume and results are tested in test_sweep): AUC is a
  # function of the values, and every call is recorded.
  calls = []

  def fake_sweep(c, variables, benchmark, folder, out_dir, settings, **kw):
    calls.append((benchmark, out_dir, list(settings)))
    entries = []
    for values in settings:
      t = tune.with_tracking(c, values).tracking
      auc = 0.5 - t.window_influence + (0.1 if t.centre_from == "score_peak" else 0.)
      entries.append({"values": values, "success_auc": auc})
    return {"settings": entries}

  monkeypatch.setattr(tune.sweep_lib, "run_sweep", fake_sweep)
  monkeypatch.setattr(tune, "validation_dir", lambda *a, **k: str(tmp_path / "val"))
  c = duml_configs.get_config("tiny")
  out = str(tmp_path / "tune")
  tune.tune(c, None, tune.parse_grid("window_influence=0.1,0.3"), out)
  done = tune.tune(c, None, tune.parse_grid("window_influence=0.1;centre_from=box,score_peak"),
                   out)
  assert calls == [("otb", out, [{"window_influence": 0.1}, {"window_influence": 0.3}]),
                   ("otb", out, [{"centre_from": "box", "window_influence": 0.1},
                                 {"centre_from": "score_peak", "window_influence": 0.1}])]
  assert [e["success_auc"] for e in done] == pytest.approx([0.5, 0.4, 0.4, 0.2])
  table = open(os.path.join(out, "tune.md")).read().splitlines()
  assert table[0] == "| centre_from | window_influence | validation AUC |"
  assert table[2] == "| score_peak | 0.1 | 0.500 |" and table[-1] == "| - | 0.3 | 0.200 |"
  assert len(json.load(open(os.path.join(out, "tune.json")))) == 4
  # A wrong key fails before anything is tracked.
  with pytest.raises(KeyError, match="--grid key"):
    tune.tune(c, None, tune.parse_grid("window_influense=0.1"), out)
  assert len(calls) == 2

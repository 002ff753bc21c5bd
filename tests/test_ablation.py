"""The ablation driver's config handling and table (the training itself is the trainer's)."""
from duml_jax.experiments import ablation


def test_same_budget_configs_with_overrides():
  cfgs = [ablation._config(arg, 300, {"batch_size": "8", "tracking.mu": "0.7",
                                      "data.synthetic.num_videos": "50"})
          for _, arg in ablation.FORMS]
  assert [(c.model.offline, c.model.online) for c in cfgs] == [
      ("OFC-5s", "none"), ("none", "ONR"), ("OFC-5s", "ONR")]
  for c in cfgs:
    assert c.num_train_steps == 300 and c.batch_size == 8 and c.tracking.mu == 0.7
    assert c.data.synthetic.num_videos == 50 and c.seed == cfgs[0].seed


def test_table_lists_forms_sweep_and_baseline():
  row = {"form": "DuML", "synthetic": {"success_auc": 0.61}, "synthetic_vot": {
      "accuracy": 0.7, "robustness": 1.5, "eao": float("nan")}, "real": {"success_auc": 0.2},
         "synthetic_keep_first": {"success_auc": 0.15}, "synthetic_vot_keep_first": {},
         "real_keep_first": {"success_auc": 0.08}}
  table = ablation.format_table({"rows": [row], "mu_sweep": [dict(row, form="DuML mu=0.5",
                                                                  mu=0.5)]})
  lines = table.strip().splitlines()
  assert lines[2] == "| DuML | 0.610 | 0.700 | 1.500 | - | 0.200 |"
  assert lines[3].startswith("| DuML mu=0.5 |")
  assert lines[4] == "| keep first box (baseline) | 0.150 | - | - | - | 0.080 |"

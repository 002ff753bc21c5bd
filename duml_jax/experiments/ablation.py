"""The paper's central ablation in miniature (Tables 2 and 4, Figure 4) on the CPU model.

  python -m duml_jax.experiments.ablation --workroot=workdir/ablation [--steps=600]

Trains each form with the same budget (same config, steps, data and seed):
OFC-5s alone, ONR alone and DuML (OFC-5s + ONR); then evaluates with the
same tracking hyper-parameters on the held-out synthetic sequences (one-pass
AUC and the VOT re-initialisation protocol: accuracy, robustness, EAO) and
on an OTB-layout folder of real sequences: the three forms, DuML with score
voting off and on, a sweep of the fusion weight mu on the DuML checkpoint
(mu is a tracking-time weight, Eq. 1), and the keep-the-first-box baseline.
Writes `ablation.md` (a table), `ablation.json` and `auc_vs_mu.png` in the
workroot. Every run resumes: trained forms and tracked sequences are kept.
"""
import ast
import json
import os

from absl import app
from absl import flags
from absl import logging

from configs import duml as duml_config
from duml_jax import checkpoint
from duml_jax import cli
from duml_jax import console
from duml_jax import errors
from duml_jax.evaluation import evaluate_lib
from duml_jax.training import trainer

FORMS = (("OFC-5s", "tiny-ofc5s"), ("ONR", "tiny-onr"), ("DuML", "tiny"))


def _config(arg, steps, overrides):
  c = duml_config.get_config(arg)
  c.unlock()
  c.num_train_steps = int(steps)
  c.steps_per_epoch = max(1, int(steps) // c.optim.num_epochs)
  for key, value in overrides.items():
    node = c
    *path, last = key.split(".")
    for i, p in enumerate(path + [last]):
      if p not in node:
        raise errors.ConfigError(f"--set {key}={value}: no key '{p}' in config."
                                 f"{'.'.join(path[:i]) or '(top level)'} of {arg}")
      if i < len(path):
        node = node[p]
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      pass                                 # a plain string
    node[last] = value
  return c


def _with_tracking(config, **tracking):
  return evaluate_lib.with_tracking(config, tracking)


def _metrics(report, tracker):
  if report is None:
    return {}
  return {k: v for k, v in report["trackers"][tracker].items() if k != "sequences"}


def run(workroot, steps, mus, otb_dir, overrides=None, batch_sequences=4, forms=None):
  """Trains the forms, evaluates every row; returns the rows (also written to disk).

  `forms`: labels of `FORMS` to run (default all; DuML is always needed).
  """
  overrides = dict(overrides or {})
  forms = [l for l, _ in FORMS] if not forms else list(forms)
  unknown = set(forms) - {l for l, _ in FORMS}
  if unknown or "DuML" not in forms:
    raise errors.ConfigError(
        f"--forms {','.join(forms)}: choose among {','.join(l for l, _ in FORMS)}, DuML included")
  workroot = os.path.abspath(workroot)
  data_dir = os.path.join(workroot, "eval_data")
  rows = []
  ckpts = {}
  for label, arg in FORMS:
    if label not in forms:
      continue
    cfg = _config(arg, steps, overrides)
    wd = os.path.join(workroot, label)
    trainer.train(cfg, wd)
    ckpts[label] = checkpoint.restore_variables(wd)[0], cfg
  base = ckpts["DuML"][1]
  synth = evaluate_lib.synthetic_eval_dir(base, data_dir)

  def evaluate(label, variables, cfg, name):
    row = {"form": label}
    out = os.path.join(workroot, "eval")
    for key, bench, folder, proto in (("synthetic", "otb", synth, None),
                                      ("synthetic_vot", "otb", synth, "vot"),
                                      ("real", "otb", otb_dir, None)):
      if not folder or not os.path.isdir(folder):
        continue
      rep = evaluate_lib.evaluate_model(
          cfg, variables, bench, folder, os.path.join(out, key), name=name,
          batch_sequences=batch_sequences, baseline_names=("keep_first",), protocol=proto,
          plot=False)
      row[key] = _metrics(rep, name)
      row[key + "_keep_first"] = _metrics(rep, "KeepFirstBox")
    return row

  for label in ("OFC-5s", "ONR"):
    if label not in ckpts:
      continue
    v, cfg = ckpts[label]
    rows.append(evaluate(label, v, _with_tracking(cfg, score_voting=False), f"{label}"))
  v, cfg = ckpts["DuML"]
  rows.append(evaluate("DuML (mu 0.8)", v, _with_tracking(cfg, score_voting=False),
                       "DuML-mu0.8"))
  rows.append(evaluate("DuML (mu 0.8) + score voting", v,
                       _with_tracking(cfg, score_voting=True), "DuML-mu0.8-vote"))
  sweep = []
  for mu in mus:
    r = evaluate(f"DuML mu={mu:g}", v, _with_tracking(cfg, score_voting=False, mu=float(mu)),
                 f"DuML-mu{mu:g}")
    sweep.append((float(mu), r))
  result = {"steps": int(steps), "rows": rows, "mu_sweep": [
      {"mu": mu, **r} for mu, r in sweep]}
  with open(os.path.join(workroot, "ablation.json"), "w") as f:
    json.dump(result, f, indent=2, default=float)
  with open(os.path.join(workroot, "ablation.md"), "w") as f:
    f.write(format_table(result))
  _plot(sweep, os.path.join(workroot, "auc_vs_mu.png"))
  return result


def _fmt(v, scale=1.):
  return "-" if v is None or v != v else f"{v * scale:.3f}"


def format_table(result):
  """Markdown table of the ablation rows (fractions in [0, 1]; robustness as the paper prints it)."""
  lines = ["| form | synthetic AUC | synthetic VOT A | R | EAO | real AUC |",
           "|---|---|---|---|---|---|"]
  rows = list(result["rows"]) + [r for r in result["mu_sweep"]]
  keep = next((r for r in result["rows"] if r.get("synthetic_keep_first")), None)
  if keep is not None:
    rows = rows + [{"form": "keep first box (baseline)",
                    "synthetic": keep.get("synthetic_keep_first", {}),
                    "synthetic_vot": keep.get("synthetic_vot_keep_first", {}),
                    "real": keep.get("real_keep_first", {})}]
  for r in rows:
    s, v, real = r.get("synthetic", {}), r.get("synthetic_vot", {}), r.get("real", {})
    lines.append(f"| {r['form']} | {_fmt(s.get('success_auc'))} | {_fmt(v.get('accuracy'))} | "
                 f"{_fmt(v.get('robustness'))} | {_fmt(v.get('eao'))} | "
                 f"{_fmt(real.get('success_auc'))} |")
  return "\n".join(lines) + "\n"


def _plot(sweep, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  mus = [m for m, _ in sweep]
  fig, ax = plt.subplots(figsize=(4.5, 3.2))
  for key, name in (("synthetic", "synthetic (held out)"), ("real", "otb_sample (real)")):
    ys = [r.get(key, {}).get("success_auc") for _, r in sweep]
    if any(y is not None for y in ys):
      ax.plot(mus, ys, marker="o", label=name)
  ax.set_xlabel("fusion weight mu (Eq. 1)")
  ax.set_ylabel("success AUC")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _define_flags():
  """Flags, defined only when run as a script (the module is imported next to others)."""
  flags.DEFINE_string("workroot", "workdir/ablation", "Where runs and tables go.")
  flags.DEFINE_integer("steps", 600, "Training steps of every form (same budget).")
  flags.DEFINE_list("mus", ["0", "0.2", "0.5", "0.7", "0.8", "0.9", "1"], "mu sweep.")
  flags.DEFINE_string("otb_dir", "../shared/data/otb_sample", "Real OTB-layout sequences.")
  flags.DEFINE_multi_string("set", [], "Config overrides KEY=VALUE for every form.")
  flags.DEFINE_integer("batch_sequences", 4, "Sequences tracked at once.")
  flags.DEFINE_list("forms", [], "Forms to train and report (default all of FORMS).")


def main(argv):
  del argv
  console.quiet_other_libraries()
  f = flags.FLAGS
  bad = [kv for kv in f.set if "=" not in kv]
  if bad:
    raise app.UsageError(f"--set {bad[0]!r}: expected KEY=VALUE (e.g. --set loss.w_online=1)")
  overrides = dict(kv.split("=", 1) for kv in f.set)
  try:
    mus = [float(m) for m in f.mus]
  except ValueError as e:
    raise app.UsageError(f"--mus={','.join(f.mus)}: {e}") from e
  cli.check_output_dir(f.workroot, "workroot")
  result = run(f.workroot, f.steps, mus, f.otb_dir, overrides,
               f.batch_sequences, f.forms)
  print(format_table(result))
  logging.info("written %s", os.path.join(os.path.abspath(flags.FLAGS.workroot), "ablation.md"))


if __name__ == "__main__":
  _define_flags()
  cli.run(main)

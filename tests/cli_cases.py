"""Runs several command lines of an entry point in ONE Python process (jax imported once).

  python tests/cli_cases.py CASES.json RESULTS.json

CASES.json: [{"argv": ["evaluate.py", "--flag", ...], "env": {...}}, ...]; every case
runs `duml_jax.cli.run(<script>.main)` with its flags parsed afresh; RESULTS.json gets
[{"rc": exit status, "stdout": ..., "stderr": ...}, ...]. Tests use it because the entry
points define absl flags at import, which clash between scripts (and with other test
modules' flags) inside the pytest process, and a subprocess per command line would import
jax each time.
"""
import importlib
import json
import os
import sys
import tempfile
import traceback


def _run(module, case):
  from absl import flags  # pylint: disable=g-import-not-at-top
  from duml_jax import cli  # pylint: disable=g-import-not-at-top
  old_env = dict(os.environ)
  os.environ.update(case.get("env", {}))
  sys.argv = list(case["argv"])
  flags.FLAGS.unparse_flags()
  for name in list(flags.FLAGS):     # ml_collections registers --config.a.b per parse
    if name.startswith("config."):
      delattr(flags.FLAGS, name)
  with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
    saved = os.dup(1), os.dup(2)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    try:
      cli.run(module.main)
      rc = 0
    except SystemExit as e:
      rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:   # a traceback: what a bug (or --verbosity=1) shows
      traceback.print_exc()
      rc = 1
    finally:
      sys.stdout.flush()
      sys.stderr.flush()
      os.dup2(saved[0], 1)
      os.dup2(saved[1], 2)
      os.close(saved[0])
      os.close(saved[1])
      os.environ.clear()
      os.environ.update(old_env)
    out.seek(0)
    err.seek(0)
    return {"rc": rc, "stdout": out.read(), "stderr": err.read()}


def main():
  cases_path, results_path = sys.argv[1:3]
  with open(cases_path) as f:
    cases = json.load(f)
  modules = {}
  results = []
  for case in cases:
    script = os.path.splitext(os.path.basename(case["argv"][0]))[0]
    if script not in modules:
      modules[script] = importlib.import_module(script)
    results.append(_run(modules[script], case))
  with open(results_path, "w") as f:
    json.dump(results, f)


if __name__ == "__main__":
  main()

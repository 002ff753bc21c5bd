"""Console output: this repository's INFO lines and every warning pass, other libraries' INFO not."""
import logging
import os

from duml_jax import console


def _record(path, level=logging.INFO, msg="hello"):
  return logging.LogRecord("absl", level, path, 1, msg, None, None)


def test_own_info_only():
  f = console.OwnInfoOnly()
  own = os.path.join(console.ROOT, "duml_jax", "evaluation", "runner.py")
  assert f.filter(_record(own))
  assert f.filter(_record(os.path.join(console.ROOT, "train.py"), logging.DEBUG))
  orbax = "/venv/lib/python3.11/site-packages/orbax/checkpoint/checkpoint_manager.py"
  assert not f.filter(_record(orbax))
  assert f.filter(_record(orbax, logging.WARNING))
  # A folder whose name merely starts like the repository's is not inside it.
  assert not f.filter(_record(console.ROOT + "_other/x.py"))
  # README's install: a virtualenv inside the repository holds other libraries.
  in_venv = os.path.join(console.ROOT, ".venv", "lib", "python3.12", "site-packages", "orbax",
                         "checkpoint", "checkpoint_manager.py")
  assert not f.filter(_record(in_venv))


def test_short_format():
  fmt = console.ShortFormatter()
  line = fmt.format(_record("x.py", msg="evaluating"))
  assert len(line.split(" ")[0]) == 8 and line.endswith(" evaluating")   # HH:MM:SS
  assert " WARNING: disk full" in fmt.format(_record("x.py", logging.WARNING, "disk full"))


def test_installed_once_on_absl_handler():
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  handler = absl_logging.get_absl_handler()
  before = list(handler.filters)
  try:
    console.quiet_other_libraries()
    console.quiet_other_libraries()
    assert sum(isinstance(f, console.OwnInfoOnly) for f in handler.filters) == 1
  finally:
    for f in list(handler.filters):
      if f not in before:
        handler.removeFilter(f)
    handler.setFormatter(absl_logging.PythonFormatter())

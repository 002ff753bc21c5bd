"""What the entry points (evaluate.py, train.py) share: user errors as short messages.

`run(main)` replaces ``app.run(main)``: flags are parsed by `parse_flags`
(an unknown ``--config.a.b`` key is named with the keys near it instead of an
ml_collections traceback) and a `duml_jax.errors.UserError`, a usage error or
a missing / unwritable file raised by ``main`` is printed as one or two lines,
exiting with status 2. Other exceptions are bugs and keep their traceback;
``--verbosity=1`` or ``DUML_TRACEBACK=1`` in the environment shows tracebacks
for user errors too.
"""
import difflib
import functools
import math
import os
import re
import sys
import tempfile

from absl import app
from absl import flags
import ml_collections

from duml_jax import errors

TRACEBACK_ENV = "DUML_TRACEBACK"
EXIT_USER_ERROR = 2
# Builtin errors that name a path the user gave: expected, not bugs.
_USER_ERRORS = (errors.UserError, FileNotFoundError, PermissionError, NotADirectoryError,
                IsADirectoryError)


def _tracebacks():
  """Whether user errors should show their traceback (--verbosity >= 1 or DUML_TRACEBACK)."""
  if os.environ.get(TRACEBACK_ENV, "").lower() in ("1", "true", "yes", "on"):
    return True
  try:
    return int(flags.FLAGS["verbosity"].value or 0) >= 1
  except (KeyError, TypeError, ValueError):
    return False


def _prog():
  return os.path.basename(sys.argv[0] or "duml_jax")


def _fail(message, usage=False):
  lines = [f"{_prog()}: error: {message}"]
  if usage:
    lines.append(f"(python {_prog()} --helpshort lists the flags)")
  sys.stderr.write("\n".join(lines) + "\n")
  sys.exit(EXIT_USER_ERROR)


def _flag_error_text(error):
  """One line of an absl flags error; a config file's error keeps only its last line."""
  text = str(error)
  if "Error whilst parsing config file" in text:
    head = text.split("Error whilst parsing config file")[0].rstrip(": \n")
    last = [line.strip() for line in text.splitlines() if line.strip()][-1]
    text = f"{head}: {re.sub(r'^[A-Za-z_.]*Error: ', '', last)}"
  return " ".join(text.split())


def _config_paths(config, prefix=""):
  """Dotted paths of every key (sections and leaves) of a ConfigDict."""
  out = []
  for key in config.keys():
    path = f"{prefix}{key}"
    out.append(path)
    value = config[key]
    if isinstance(value, ml_collections.ConfigDict):
      out += _config_paths(value, path + ".")
  return out


def unknown_config_key(argv, flag_name="config", flag_values=flags.FLAGS):
  """A one-line message for the first ``--config.a.b=v`` of `argv` whose key the config lacks.

  Names the override, the config (``FILE:ARG``) and the existing keys nearest to it
  (`difflib`); None when every override's key exists (the error was something else).
  """
  config_arg = None
  for arg in argv:
    m = re.match(rf"^-{{1,2}}{flag_name}=(.*)$", arg)
    if m:
      config_arg = m.group(1)
  if config_arg is None or flag_name not in flag_values:
    return None
  config = flag_values[flag_name].parser.parse(config_arg)
  if not isinstance(config, ml_collections.ConfigDict):
    return None
  paths = _config_paths(config)
  for arg in argv:
    m = re.match(rf"^-{{1,2}}(?:no)?{flag_name}\.([^=]+)", arg)
    if not m:
      continue
    key = m.group(1)
    node, parts = config, key.split(".")
    for i, part in enumerate(parts):
      if isinstance(node, ml_collections.ConfigDict) and part in node:
        node = node[part]
        continue
      section = ".".join(parts[:i])
      where = f"{flag_name}.{section}" if section else flag_name
      if not isinstance(node, ml_collections.ConfigDict):
        return (f"--{flag_name}.{key}: {where} is a value ({node!r}), not a section, "
                f"in {config_arg}")
      near = difflib.get_close_matches(key, paths, n=4, cutoff=0.6)
      near += [p for p in paths if p.rsplit(".", 1)[-1] == part and p not in near]
      siblings = sorted(node.keys())
      hint = (f"nearby keys: {', '.join(near)}" if near else
              f"keys of {where}: {', '.join(siblings[:15])}"
              f"{' ...' if len(siblings) > 15 else ''}")
      return f"--{flag_name}.{key}: no key '{part}' in {where} of {config_arg}; {hint}"
  return None


def parse_flags(argv):
  """absl flag parsing whose errors are one line (see the module docstring)."""
  try:
    args = flags.FLAGS(argv)
    if flags.FLAGS["verbosity"].using_default_value:
      flags.FLAGS.verbosity = 0      # INFO, as app.run sets it (on its first parse only)
    return args
  except flags.Error as e:
    if _tracebacks():
      raise
    _fail(_flag_error_text(e), usage=True)
  except (AttributeError, KeyError):
    # ml_collections raises these for an override of a key the config lacks.
    message = unknown_config_key(argv)
    if message is None or _tracebacks():
      raise
    _fail(message)


def _guarded(main, argv):
  try:
    return main(argv)
  except app.UsageError as e:
    if _tracebacks():
      raise
    _fail(str(e), usage=True)
  except _USER_ERRORS as e:
    if _tracebacks():
      raise
    _fail(" ".join(str(e).split()) or type(e).__name__)


def run(main, argv=None):
  """``app.run(main)`` with the user-error handling of this module."""
  app.run(functools.partial(_guarded, main), argv=argv, flags_parser=parse_flags)


def parse_numbers(values, count, flag, expected, finite=False):
  """A list flag's strings `values` as `count` floats (finite ones if `finite`); otherwise an
  `app.UsageError` naming ``--flag``, the value given and `expected`."""
  given = ",".join(values or [])
  try:
    numbers = tuple(float(v) for v in values or [])
  except ValueError:
    numbers = ()
  if len(numbers) != count or (finite and not all(map(math.isfinite, numbers))):
    raise app.UsageError(f"--{flag}={given}: expected {expected}")
  return numbers


def check_output_dir(path, flag):
  """Raises `errors.OutputError` naming ``--flag`` unless `path` is, or can be made as, a
  writable folder. Creates nothing (a failed run must not leave an empty folder)."""
  if not path:
    raise errors.OutputError(f"--{flag} is empty: give a folder")
  full = os.path.abspath(os.path.expanduser(path))
  if os.path.exists(full) and not os.path.isdir(full):
    raise errors.OutputError(f"--{flag}={path} is a file, not a folder: give a folder")
  probe = full
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  if not os.path.isdir(probe):
    raise errors.OutputError(f"--{flag}={path}: {probe} is a file, so no folder can be made "
                             "under it")
  try:    # os.access is wrong for root and read-only mounts: try a real file
    fd, tmp = tempfile.mkstemp(dir=probe, prefix=".duml_write_test_")
    os.close(fd)
    os.remove(tmp)
  except OSError as e:
    raise errors.OutputError(f"--{flag}={path}: cannot write in {probe} ({e.strerror}); "
                             "give a writable folder") from None
  return full

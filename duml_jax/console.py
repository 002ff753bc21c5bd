"""What the entry points print: this project's progress and results, not other libraries' INFO.

orbax alone writes ~40 INFO lines per checkpoint through absl logging. `quiet_other_libraries`
keeps INFO lines logged from this repository's files and warnings from anywhere, each as
'HH:MM:SS message'; absl's `--verbosity` (given explicitly, e.g. `--verbosity=0`) brings every
library's lines back in absl's own format.
"""
import logging
import os

from absl import flags
from absl import logging as absl_logging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # the repository


class OwnInfoOnly(logging.Filter):
  """Passes warnings and errors, and lower levels only from files under `root`."""

  def __init__(self, root: str = ROOT):
    super().__init__()
    self.root = os.path.join(os.path.abspath(root), "")

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno >= logging.WARNING:
      return True
    path = os.path.abspath(record.pathname)
    # README's install puts .venv inside the repository: its packages are not ours.
    return (path.startswith(self.root)
            and not {"site-packages", "dist-packages"} & set(path.split(os.sep)))


class ShortFormatter(logging.Formatter):
  """'12:45:18 message', with the level named from WARNING up."""

  def __init__(self):
    super().__init__("%(asctime)s %(message)s", datefmt="%H:%M:%S")

  def format(self, record: logging.LogRecord) -> str:
    text = super().format(record)
    if record.levelno >= logging.WARNING:
      time_, _, rest = text.partition(" ")
      text = f"{time_} {record.levelname}: {rest}"
    return text


def quiet_other_libraries() -> None:
  """Installs `OwnInfoOnly` and `ShortFormatter` on absl's handler unless --verbosity was
  given on the command line."""
  if flags.FLAGS.is_parsed() and flags.FLAGS["verbosity"].present:
    return
  handler = absl_logging.get_absl_handler()
  if not any(isinstance(f, OwnInfoOnly) for f in handler.filters):
    handler.addFilter(OwnInfoOnly())
  handler.setFormatter(ShortFormatter())

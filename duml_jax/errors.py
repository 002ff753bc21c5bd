"""Errors a user can act on (bad input, bad flags, missing files), as opposed to bugs.

Raise a `UserError` (or a subclass) with a message that names the file, frame
or key at fault and says what to do. The entry points (`duml_jax.cli.run`)
print such errors as one or two lines and exit with status 2; any other
exception is a bug and keeps its traceback. Subclasses also derive from the
builtin error they refine (ValueError, IOError) so library callers can catch
them as before.
"""


class UserError(Exception):
  """An expected error caused by the user's input; its message is all they need."""


class ConfigError(UserError, ValueError):
  """A config value or key that is wrong (the message names the key)."""


class OutputError(UserError, OSError):
  """An output folder that cannot be used (missing parent, a file, not writable)."""


class SettingsMismatchError(UserError, ValueError):
  """Results already in an output folder were made with other settings."""

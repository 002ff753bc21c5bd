"""The ARG of ``--config=configs/FILE.py:ARG``: an optional preset, then ``key=value`` overrides.

Shared by the config files' ``get_config(arg)`` so that every one parses and
rejects the same way (errors quote the whole argument and name the item).
"""
from typing import List, Optional, Sequence, Tuple


def parse(arg: Optional[str], default: str,
          presets: Optional[Sequence[str]] = None) -> Tuple[str, List[Tuple[str, str]]]:
  """('preset', [(key, value), ...]) of ``"preset,k=v,k2=v2"``.

  The preset is the first item when it has no '='; otherwise `default`.
  `presets`, when given, lists the allowed preset names.
  """
  arg = arg or default
  items = [p.strip() for p in arg.split(",") if p.strip()]
  preset = items.pop(0) if items and "=" not in items[0] else default
  for item in items:
    if "=" not in item:
      raise ValueError(f"config arg {arg!r}: {item!r} must be key=value "
                       "(only the first item may be a preset name)")
  if presets is not None and preset not in presets:
    raise ValueError(f"config arg {arg!r}: unknown preset {preset!r}; presets: {tuple(presets)}")
  return preset, [tuple(s.strip() for s in item.split("=", 1)) for item in items]


def as_bool(value: str) -> bool:
  """A command-line truth value: 1/true/yes/on (any case) is True, anything else False."""
  return value.lower() in ("1", "true", "yes", "on")

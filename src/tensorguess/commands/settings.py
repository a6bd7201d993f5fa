"""Train's settings as flags: each TrainConfig field's help, choices and default, shown once."""

from __future__ import annotations

from dataclasses import MISSING, Field, fields

from tensorguess.config import TrainConfig
from tensorguess.features.augment import Recipe

# what a flag's value is read as, by the field's type (a path is read as text, then taken inside DIR)
READ_AS = {"int": int, "float": float, "str": str, "Path": str}


def setting_help(item: Field) -> str:
    """A setting's help as --help shows it: its text and its default (as `shown` says, or itself)."""
    meta = item.metadata
    if isinstance(item.default, bool):
        default = None  # a switch: off unless given
    elif meta["shown"] is not None:
        default = meta["shown"]
    elif item.name.startswith("augment_") and item.default is None:
        default = f"{getattr(Recipe(), item.name.removeprefix('augment_')):g}"  # the recipe's strength
    elif item.default is None or item.default is MISSING:
        default = None
    else:
        default = f"DIR/{item.default}" if meta["in_dir"] else item.default
    text = meta["help"].replace("%", "%%")  # argparse expands %(...)s in help
    return text if default is None else f"{text} (default: {default})"


def setting(name: str) -> Field:
    """TrainConfig's field called `name`."""
    return next(item for item in fields(TrainConfig) if item.name == name)

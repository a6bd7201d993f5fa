"""JSON that every parser reads: NaN and infinities become null, never bare `NaN`.

Python's json module writes `NaN` and `Infinity` by default, which strict parsers
(JavaScript's JSON.parse, jq, Go, Rust's serde) reject. A number we could not
compute (the accuracy of an empty test split) is written as null instead.
"""

from __future__ import annotations

import json
import math


def finite_or_none(value):
    """`value` with every non-finite float inside it (dicts, lists, tuples) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(item) for item in value]
    return value


def dumps(value, indent: int | None = None) -> str:
    return json.dumps(finite_or_none(value), indent=indent, allow_nan=False)

"""The names the folder sort writes into DEST: its copies', its manifest's and its note's.

Both the sort (sort/folder.py) and the rerun's check of a copy in flight
(sort/copy_in_flight.py) must agree on them, so they live here, below both.
"""

from __future__ import annotations

import numpy as np

MANIFEST = "guesses.jsonl"
IN_FLIGHT = ".guessDir-copy-in-flight.json"


def score_digits(score: float) -> str:
    """The top score truncated to five decimals: 0.883319 -> '88331', 1.0 -> '99999'."""
    if score >= 1.0:
        return "99999"
    # The shortest text that round-trips the float32 score, so 0.29 stays 0.29.
    text = np.format_float_positional(np.float32(max(score, 0.0)), unique=True, trim="0")
    fraction = text.split(".")[1] if "." in text else ""
    return (fraction + "00000")[:5]


def safe_label(label: str) -> str:
    """A label usable in a file name (labels from old tools may hold anything)."""
    return "".join("_" if ch in '/\\\0' else ch for ch in label).strip() or "unlabelled"


def is_copy_name(copy: object) -> bool:
    """Whether a record's `copy` can name a copy the sort made: a plain file name in DEST (not a
    path, not '..', not the manifest or the note)."""
    return (isinstance(copy, str) and copy not in ("", ".", "..", MANIFEST, IN_FLIGHT)
            and not any(ch in copy for ch in "/\\\0"))

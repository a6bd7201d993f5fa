"""guessDir: copy each photo of a folder to DEST/<label>--<score>.<ext>, losing nothing.

Sources are only ever read. A copy never replaces an existing file: the name
gets " (2)", " (3)"... instead. Every source gets one line in DEST/guesses.jsonl.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .images import Skipped, list_files
from .predict import Classifier

MANIFEST = "guesses.jsonl"


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


def claim_name(dest: Path, stem: str, suffix: str) -> Path:
    """Create and return a new empty file `stem[ (n)]suffix` in dest that did not exist."""
    attempt = 1
    while True:
        name = f"{stem}{suffix}" if attempt == 1 else f"{stem} ({attempt}){suffix}"
        path = dest / name
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            return path
        except FileExistsError:
            attempt += 1


def copy_into(source: Path, target: Path) -> None:
    """Fill the claimed `target` with `source`'s bytes and timestamps; remove it on failure."""
    try:
        with open(source, "rb") as reader, open(target, "wb") as writer:
            shutil.copyfileobj(reader, writer, 1 << 20)
        shutil.copystat(source, target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


@dataclass
class SortSummary:
    copied: int = 0
    unreadable: int = 0
    per_label: dict[str, int] | None = None


def sort_folder(
    classifier: Classifier,
    source: Path,
    dest: Path,
    batch_size: int = 32,
    warn: Callable[[str], None] = print,
) -> SortSummary:
    source, dest = Path(source).resolve(), Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    files = [p for p in list_files(source) if not p.is_relative_to(dest)]
    summary = SortSummary(per_label={})
    # Appended, not rewritten: the manifest of an earlier run into DEST is kept.
    with open(dest / MANIFEST, "a", encoding="utf-8") as manifest:
        for result in classifier.score_files(files, batch_size, show_progress=True):
            name = result.path.relative_to(source).as_posix()
            if isinstance(result, Skipped):
                warn(result.warning())
                entry = {"source": name, "error": result.reason}
                summary.unreadable += 1
            else:
                ranked = classifier.ranked(result.scores)
                label, score = ranked[0]
                stem = f"{safe_label(label)}--{score_digits(score)}"
                copy = claim_name(dest, stem, result.path.suffix)
                copy_into(result.path, copy)
                entry = {
                    "source": name,
                    "copy": copy.name,
                    "label": label,
                    "score": score,
                    "scores": dict(ranked),
                }
                summary.copied += 1
                summary.per_label[label] = summary.per_label.get(label, 0) + 1
            manifest.write(json.dumps(entry) + "\n")
            manifest.flush()
    return summary

"""guessDir's one copy in flight, written down before its name is claimed.

A copy is made in three steps: its name is claimed (an empty file created with
O_EXCL), the bytes are copied in, its record is appended to guesses.jsonl. A kill
between the first and the last used to leave a copy that no record named: the rerun
copied the photo again under another name, and the first copy (empty, partial or
whole) stayed. So before a name is claimed, the record it will get is written to
DEST/.guessDir-copy-in-flight.json; a rerun reads it and finishes that copy instead:

- its name is not there: the kill came before the claim; nothing to finish;
- the file there holds the start of the photo's bytes (or all of them): it is ours,
  cut short; the rest is copied in and its record appended, so the photo has one
  copy and one record;
- it holds anything else: it is not ours (DEST is shared with whoever else writes
  there); it is left as it is and the photo is copied anew under another name.

Nothing is ever removed or overwritten. The file is written in place, not renamed:
a kill in the middle of writing it leaves something that is not JSON, which is read
as "nothing claimed", and that is true, since the claim comes after the write.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

IN_FLIGHT = ".guessDir-copy-in-flight.json"
BLOCK = 1 << 20


def note(dest: Path, record: dict) -> None:
    """Write down `record` (with its "copy" name) as the copy about to be claimed."""
    data = (json.dumps(record) + "\n").encode("utf-8")
    fd = os.open(dest / IN_FLIGHT, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
    finally:
        os.close(fd)


def clear(dest: Path) -> None:
    """The run ended (or stopped cleanly): no copy is in flight."""
    try:
        (dest / IN_FLIGHT).unlink()
    except OSError:
        pass  # gone already; or left, which is harmless: a rerun checks the file it names


def interrupted(dest: Path, source: Path, model: str) -> tuple[dict, Path, Path] | None:
    """The record, source and copy of a copy a stopped run left unfinished, sorting `source` with
    `model`; None when there is none (or the note is of another source, model or unreadable)."""
    try:
        record = json.loads((dest / IN_FLIGHT).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("root") != str(source) or record.get("model") != model:
        return None
    name, copy = record.get("source"), record.get("copy")
    if not (isinstance(name, str) and isinstance(copy, str)):
        return None
    if copy in ("", ".", "..") or Path(copy).name != copy:
        return None  # not a plain name in DEST
    # Lexically, not resolved: a photo in a symlinked folder of SRC is SRC's (list_files follows them).
    photo = Path(os.path.normpath(source / name))
    if source not in photo.parents:
        return None  # a note written by hand, pointing out of SRC
    return record, photo, dest / copy


def finish(photo: Path, copy: Path) -> bool:
    """Complete `copy` if it holds the start of `photo`'s bytes; whether it now holds all of them.

    False (and `copy` untouched) when `copy` is not a plain file, holds anything else, or
    either cannot be read. An error writing `copy` (a full disk) is raised.
    """
    try:
        if copy.is_symlink() or not copy.is_file():
            return False
        reader, writer = open(photo, "rb"), open(copy, "r+b")  # noqa: SIM115 - closed below
    except OSError:
        return False
    with reader, writer:
        try:
            while block := writer.read(BLOCK):
                if reader.read(len(block)) != block:
                    return False
        except OSError:
            return False
        writer.seek(reader.tell())
        while block := reader.read(BLOCK):
            writer.write(block)
    shutil.copystat(photo, copy)
    return True


def resume(dest: Path, source: Path, model: str, recorded: set[str], append: Callable[[dict], None],
           warn: Callable[[str], None]) -> dict | None:
    """Finish the copy a stopped run left unfinished, if any; the record it appended for it.

    `recorded`: the source names guesses.jsonl already records as copied (a kill after the
    record: nothing to do). `append` records the finished copy. A copy that cannot be
    finished for want of space is removed, as a copy that cannot be made is, and the error
    raised.
    """
    found = interrupted(dest, source, model)
    if found is None:
        return None
    record, photo, copy = found
    if record["source"] in recorded:
        return None
    try:
        if not finish(photo, copy):
            return None
    except OSError:
        copy.unlink(missing_ok=True)  # ours: it held the photo's first bytes
        raise
    append(record)
    warn(f"tensor-guess: finished copying {record['source']} to {copy.name}, which a stopped run had "
         "left incomplete")
    return record

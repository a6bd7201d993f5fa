"""The sort's one copy in flight, written down before its name is claimed.

A copy is made in three steps: its name is claimed (an empty file created with
O_EXCL), the bytes are copied in, its record is appended to guesses.jsonl. A kill
between the first and the last would leave a copy that no record names: a rerun
would copy the photo again under another name, and the first copy (empty, partial or
whole) would stay. So before a name is claimed, the record it will get is written to
DEST/.guessDir-copy-in-flight.json; a rerun reads it and finishes that copy instead:

- its name is not there: the kill came before the claim; nothing to finish;
- the file there holds the start of the photo's bytes (or all of them): it is ours,
  cut short; the rest is copied in and its record appended, so the photo has one
  copy and one record;
- it holds anything else: it is not ours (DEST is shared with whoever else writes
  there); it is left as it is and the photo is copied anew under another name.

Nothing is ever removed or overwritten. The file is written in place, not renamed nor
truncated, in one write over the note before (padded with spaces to its length): a kill
cannot stop a write to a file in the middle, and a write torn some other way leaves
something that is not one JSON record (or a record whose copy does not hold its photo's
bytes, which `finish` checks), read as "nothing claimed", and that is true, since the claim
comes after the write.

DEST may be shared, so the note may be forged: it is opened as safe_open says (a
planted symlink, hard link or FIFO stops the run, untouched), read only up to
MAX_NOTE bytes, and trusted only if it is a record the sort could have written: every
key of the right type, a label of this classifier, and a copy name `<label>--<digits>`
as claim_name makes them. The file it names is finished only if it is a regular file
of this user with one link that holds the start of the photo; it is written through
the descriptor that was checked.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable, Collection
from pathlib import Path, PurePosixPath

from tensorguess.data.images import open_regular, printable
from tensorguess.sort.names import IN_FLIGHT, is_copy_name, safe_label, score_digits
from tensorguess.sort.safe_open import NotOurs, open_ours

BLOCK = 1 << 20
# A note holds one record: every label's score. 1 MiB is some 20,000 labels.
MAX_NOTE = 1 << 20
# Keys a note must hold, and their types (a score is a number from 0 to 1, and not a bool).
# Why a record read from the note is not one the sort wrote; None when it could be one.
Forged = Callable[[object], "str | None"]
NOTE_KEYS = {"source": str, "copy": str, "label": str, "score": (int, float), "scores": dict,
             "root": str, "model": str}


def note(dest: Path, record: dict) -> None:
    """Write down `record` (with its "copy" name) as the copy about to be claimed.

    Raises NotOurs if something other than the sort's own note is under its name.
    """
    text = json.dumps(record).encode("utf-8")
    fd = open_ours(dest / IN_FLIGHT, os.O_WRONLY, create=True)
    try:
        # Over the note before, padded with spaces (JSON's whitespace) to its length, never cut
        # short: truncating a file to nothing makes ext4 write it to disk when it is closed
        # (auto_da_alloc), 15 ms a photo here, where this write costs microseconds.
        data = text + b" " * max(0, os.fstat(fd).st_size - len(text) - 1) + b"\n"
        written = 0
        while written < len(data):
            written += os.pwrite(fd, data[written:], written)
    finally:
        os.close(fd)


def check(dest: Path) -> None:
    """Raise NotOurs if the note's name holds something the sort must not read or write."""
    try:
        os.close(open_ours(dest / IN_FLIGHT, os.O_RDONLY, max_size=MAX_NOTE))
    except FileNotFoundError:
        pass


def clear(dest: Path) -> None:
    """The run ended (or stopped cleanly): no copy is in flight. Only a regular file is removed:
    a link planted under the note's name stays for its owner to see."""
    path = dest / IN_FLIGHT
    try:
        if stat.S_ISREG(os.lstat(path).st_mode):
            path.unlink()
    except OSError:
        pass  # gone already; or left, which is harmless: a rerun checks the file it names


def copy_name_pattern(label: str, source: str) -> re.Pattern:
    """The names claim_name gives a copy of `source` labelled `label`: `<label>--NNNNN[ (n)]<ext>`."""
    suffix = PurePosixPath(source).suffix
    return re.compile(re.escape(safe_label(label)) + r"--(\d{5})(?: \((?:[2-9]|[1-9]\d+)\))?"
                      + re.escape(suffix))


def _forged(record: object, labels: Collection[str]) -> str | None:
    """Why `record` is not a note the sort wrote (None: it could be one)."""
    if not isinstance(record, dict):
        return "not a JSON object"
    missing = sorted(key for key in NOTE_KEYS if key not in record)
    if missing:
        return f"no {', '.join(missing)}"
    score = record["score"]
    wrong = sorted(key for key, kind in NOTE_KEYS.items() if not isinstance(record[key], kind))
    if "score" not in wrong and (isinstance(score, bool) or not 0 <= score <= 1):
        wrong.append("score")
    if wrong:
        return f"{', '.join(wrong)} of the wrong type"
    if record["label"] not in labels:
        return f"label {record['label']!r} is not one of this classifier's"
    copy = record["copy"]
    if not is_copy_name(copy):
        return f"copy {copy!r} is not the name of a copy in DEST"
    digits = copy_name_pattern(record["label"], record["source"]).fullmatch(copy)
    if digits is None or digits.group(1) != score_digits(score):
        return f"copy {copy!r} is not a name guessDir gives a photo labelled {record['label']!r}"
    return None


def interrupted(dest: Path, source: Path, model: str, labels: Collection[str],
                warn: Callable[[str], None], forged: Forged | None = None) -> tuple[dict, Path, Path] | None:
    """The record, source and copy of a copy a stopped run left unfinished, sorting `source` with
    `model`; None when there is none (or the note is of another source, model or unreadable).

    A note that cannot be one the sort wrote is ignored with a warning; raises NotOurs if
    the note's name holds a link, a FIFO or an oversized file (check). `forged` says why a
    record is not a note (None: it could be one); the classes' check by default (a points
    sort writes other records: sort/points_folder.py).
    """
    path = dest / IN_FLIGHT
    try:
        fd = open_ours(path, os.O_RDONLY, max_size=MAX_NOTE)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as reader:
        data = reader.read(MAX_NOTE + 1)
    try:
        record = json.loads(data)
    except ValueError:
        return None  # torn by a kill while it was written: the claim had not been made
    if isinstance(record, dict) and (record.get("root") != str(source) or record.get("model") != model):
        return None  # another sort's note
    why = forged(record) if forged is not None else _forged(record, labels)
    if why is None:
        # Lexically, not resolved: a photo in a symlinked folder of SRC is SRC's (list_files follows them).
        photo = Path(os.path.normpath(source / record["source"]))
        if source not in photo.parents:
            why = f"source {record['source']!r} is not in SRC"
    if why is not None:
        warn(f"tensor-guess: ignoring {printable(path)}: it is not a note guessDir wrote ({why}); "
             "nothing it names is touched, and this run writes its own")
        return None
    return record, photo, dest / record["copy"]


def finish(photo: Path, copy: Path) -> bool:
    """Complete `copy` if it holds the start of `photo`'s bytes; whether it now holds all of them.

    False (and `copy` untouched) when `copy` is not a regular file of this user with one
    link, holds anything else, or either cannot be read. An error writing `copy` (a full
    disk) is raised. `copy` is written only through the descriptor that was checked.
    """
    try:
        reader = open_regular(photo)
    except OSError:
        return False
    with reader:
        try:
            writer = os.fdopen(open_ours(copy, os.O_RDWR, owner=os.geteuid()), "r+b")
        except (OSError, NotOurs):
            return False
        with writer:
            try:
                while block := writer.read(BLOCK):
                    if reader.read(len(block)) != block:
                        return False
            except OSError:
                return False
            writer.seek(reader.tell())
            while block := reader.read(BLOCK):
                writer.write(block)
            writer.flush()
            copy_times(reader.fileno(), writer.fileno())
    return True


def copy_times(source_fd: int, target_fd: int) -> None:
    """What shutil.copystat copied (permission bits, access and modification times), through the
    descriptors, so that nothing a link planted under the copy's name points to is changed."""
    info = os.fstat(source_fd)
    os.fchmod(target_fd, stat.S_IMODE(info.st_mode))
    os.utime(target_fd, ns=(info.st_atime_ns, info.st_mtime_ns))


def resume(dest: Path, source: Path, model: str, labels: Collection[str], recorded: set[str],
           append: Callable[[dict], None], warn: Callable[[str], None],
           forged: Forged | None = None) -> dict | None:
    """Finish the copy a stopped run left unfinished, if any; the record it appended for it.

    `recorded`: the source names guesses.jsonl already records as copied (a kill after the
    record: nothing to do). `append` records the finished copy. A copy that cannot be
    finished for want of space is removed, as a copy that cannot be made is, and the error
    raised.
    """
    found = interrupted(dest, source, model, labels, warn, forged)
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
    warn(f"tensor-guess: finished copying {printable(record['source'])} to {printable(copy.name)}, "
         "which a stopped run had left incomplete")
    return record

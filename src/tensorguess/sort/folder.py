"""The folder sort (guessDir.sh): copy each photo of a folder to DEST/<label>--<score>.<ext>, losing nothing.

Sources are only ever read. A copy never replaces an existing file: the name
gets " (2)", " (3)"... instead. Every source gets one line in DEST/guesses.jsonl.

DEST may be shared with others who can write there. Nothing the sort writes can be
redirected out of it: the manifest and the note are opened as safe_open says (a link,
a FIFO or a hard link planted under their names stops the run, left untouched), and a
copy is written only through the descriptor that created it (O_EXCL), so a name
swapped for a symlink after the claim leads nowhere. Only regular files of SRC are
opened (never a FIFO, which would block), each other kind is one line.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from tensorguess import strict_json
from tensorguess.data.images import Skipped, kind_of, list_files, open_regular
from tensorguess.errors import TensorGuessError
from tensorguess.features.pipeline import ahead
from tensorguess.score.predict import Classifier
from tensorguess.sort import copy_in_flight
from tensorguess.sort.names import IN_FLIGHT, MANIFEST, is_copy_name, safe_label, score_digits
from tensorguess.sort.safe_open import NotOurs, open_ours, same_file


class Claimed(NamedTuple):
    """A new empty file in DEST: its name, and the descriptor that created it (the only way
    it is ever written: the name may be swapped for a link by anyone writing in DEST)."""

    path: Path
    fd: int


def claim_name(dest: Path, stem: str, suffix: str,
               before: Callable[[Path], None] = lambda path: None) -> Claimed:
    """Create a new empty file `stem[ (n)]suffix` in dest that did not exist; its name and
    descriptor, open for writing (the caller closes it: copy_into does).

    `before(path)` is called before each attempt to create `path`.
    """
    attempt = 1
    while True:
        name = f"{stem}{suffix}" if attempt == 1 else f"{stem} ({attempt}){suffix}"
        path = dest / name
        if os.path.lexists(path):
            attempt += 1
            continue
        before(path)
        try:
            # O_EXCL never follows a link: a name taken in between, link or not, is EEXIST.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            return Claimed(path, fd)
        except FileExistsError:
            attempt += 1


def copy_into(source: Path, target: Claimed) -> None:
    """Fill the claimed `target` with `source`'s bytes and timestamps through its descriptor
    (then closed); remove it on failure, if its name still leads to it.

    A failure to read `source` (or a source that is not a regular file) raises
    SourceError; one to write `target` (a full disk) the OSError itself.
    """
    try:
        with os.fdopen(target.fd, "wb", closefd=False) as writer:
            try:
                reader = open_regular(source)
            except OSError as error:
                raise SourceError(f"cannot read the file ({error.strerror or error})") from error
            with reader:
                while True:
                    try:
                        block = reader.read(1 << 20)
                    except OSError as error:
                        raise SourceError(f"cannot read the file ({error.strerror or error})") from error
                    if not block:
                        break
                    writer.write(block)
                writer.flush()
                copy_in_flight.copy_times(reader.fileno(), target.fd)
    except BaseException:
        if same_file(target.fd, target.path):
            target.path.unlink(missing_ok=True)
        raise
    finally:
        os.close(target.fd)


class SortError(TensorGuessError):
    """The sort cannot go on (DEST is not a folder, the disk is full); the message says what to do."""


class SourceError(Exception):
    """One source file could not be read while copying it; the others go on."""


@dataclass(frozen=True)
class Earlier:
    """What a rerun needs of a record already in the manifest."""

    source: str | None  # None: not a name (a record written by hand, or by something else)
    copy: str | None  # the copy's name in DEST, for a record of a copied photo
    root: object
    model: object

    @staticmethod
    def of(record: dict) -> Earlier:
        source, copy = record.get("source"), record.get("copy")
        return Earlier(source if isinstance(source, str) else None, copy if is_copy_name(copy) else None,
                       record.get("root"), record.get("model"))


def is_regular(path: Path) -> bool:
    """A regular file under that very name (a symlink, even to one, is not)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


class Manifest:
    """DEST/guesses.jsonl: one JSON record per line, appended whole or not at all.

    Each record is one write() on a file opened for appending; if the disk fills in
    the middle of it, the file is cut back to where it was, so it never holds a
    partial line. A partial last line left by an older version or a crash is removed
    (with a warning) before anything is appended.

    Of the records found when it is opened, only what a rerun needs is kept (`earlier`);
    appended ones are not kept at all, so memory does not grow with the photos sorted.
    """

    def __init__(self, path: Path, warn: Callable[[str], None]):
        self.path = path
        self.earlier: list[Earlier] = []
        try:
            self.fd = open_ours(path, os.O_RDWR | os.O_APPEND, create=True)
        except NotOurs as error:
            raise SortError(str(error)) from error
        except OSError as error:
            raise SortError(f"cannot write {path} ({error.strerror}); choose a writable DEST") from error
        blocks = []
        while block := os.read(self.fd, 1 << 20):
            blocks.append(block)
        data = b"".join(blocks)
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            tail = data[keep:]
            try:
                json.loads(tail)
                self._append(b"\n")  # a whole record that only lacks its newline
            except ValueError:
                os.ftruncate(self.fd, keep)
                data = data[:keep]
                warn(f"tensor-guess: {path} ended in a partial record ({len(tail)} bytes, from a run "
                     "that was stopped); removed it")
        broken = outside = 0
        for line in data.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                broken += 1
                continue
            if isinstance(record, dict):
                self.earlier.append(Earlier.of(record))
                outside += "copy" in record and not is_copy_name(record["copy"])
        if broken:
            warn(f"tensor-guess: {broken} line(s) of {path} are not JSON records; left as they are")
        if outside:
            warn(f"tensor-guess: ignoring {outside} record(s) of {path} whose copy is not a file name "
                 "in DEST (an absolute path, '..' or a folder): guessDir never writes those, so the "
                 "photos they name are sorted again")

    def _append(self, data: bytes) -> None:
        before = os.fstat(self.fd).st_size
        try:
            written = 0
            while written < len(data):
                written += os.write(self.fd, data[written:])
        except OSError:
            os.ftruncate(self.fd, before)  # never a partial line; truncating needs no space
            raise

    def append(self, record: dict) -> None:
        self._append((strict_json.dumps(record) + "\n").encode("utf-8"))

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class SortSummary:
    copied: int = 0
    unreadable: int = 0
    already_sorted: int = 0
    per_label: dict[str, int] | None = None
    notes: list[str] = field(default_factory=list)  # lines the command prints after its own


def check_dest(dest: Path) -> None:
    """Refuse a DEST that exists and is not a folder (the CLI asks before loading the graph)."""
    if dest.exists() and not dest.is_dir():
        raise SortError(f"DEST {dest} exists and is not a folder; choose another DEST")


def sort(
    classifier: Classifier,
    source: Path,
    dest: Path,
    batch_size: int = 32,
    warn: Callable[[str], None] = print,
) -> SortSummary:
    """Copy each photo of `source` into `dest` by label and score; see the module docstring.

    Resumable: photos of this `source` that `dest`'s manifest records as copied by this
    same classifier (the copy still there) are skipped, so a run stopped by a kill or a
    full disk is completed by running it again. Files of `source` that the sort itself
    wrote (the manifest, recorded copies) are never sorted, so SRC may lie inside DEST
    or DEST inside SRC.
    """
    source, dest = opened_folders(source, dest)
    try:
        copy_in_flight.check(dest)  # before anything is written: a planted note stops the run here
    except NotOurs as error:
        raise SortError(str(error)) from error
    manifest = Manifest(dest / MANIFEST, warn)
    try:
        summary = _sort_photos(classifier, source, dest, manifest, batch_size, warn)
    except NotOurs as error:  # planted while the run went on
        copy_in_flight.clear(dest)
        raise SortError(str(error)) from error
    except SortError:
        copy_in_flight.clear(dest)  # the copy that could not be made or recorded was taken back
        raise
    finally:
        manifest.close()
    # Only now: after a kill or Ctrl-C the note stays, for the rerun to finish that copy.
    copy_in_flight.clear(dest)
    return summary


def _sort_photos(classifier, source, dest, manifest, batch_size, warn) -> SortSummary:
    ours = ({dest / MANIFEST, dest / IN_FLIGHT}
            | {dest / r.copy for r in manifest.earlier if r.copy is not None})
    done = {r.source for r in manifest.earlier
            if r.root == str(source) and r.model == classifier.digest
            and r.source is not None and r.copy is not None and is_regular(dest / r.copy)}
    summary = SortSummary(per_label={})
    try:
        finished = copy_in_flight.resume(
            dest, source, classifier.digest, classifier.labels, done, warn=warn,
            append=lambda record: _append_or_stop(manifest, record, dest / record["copy"], dest, summary, 0))
    except OSError as error:
        raise _stopped(dest, error, summary, 0) from error
    if finished is not None:
        done.add(finished["source"])
        ours.add(dest / finished["copy"])
        summary.copied += 1
        summary.per_label[finished["label"]] = summary.per_label.get(finished["label"], 0) + 1
    files, others = photos_to_sort(source, warn, ours, done, finished, summary)
    # Where the photos come from and which model sorts them: what a rerun skips by.
    where = {"root": str(source), "model": classifier.digest}
    record_not_photos(others, source, where, manifest, dest, summary, len(files), warn)
    # The network runs on the batches ahead while this thread copies and records the photos scored.
    scored = ahead(classifier.score_files(files, batch_size, show_progress=True), 2 * batch_size)

    def entry_of(name: str, result) -> tuple[str, dict]:
        ranked = classifier.ranked(result.scores)
        label, score = ranked[0]
        return (f"{safe_label(label)}--{score_digits(score)}",
                {"source": name, "label": label, "score": score, "scores": dict(ranked), **where})

    def recorded(entry: dict, total: int) -> None:
        _append_or_stop(manifest, entry, dest / entry["copy"], dest, summary, total)
        summary.per_label[entry["label"]] = summary.per_label.get(entry["label"], 0) + 1

    copy_scored(scored, source, dest, manifest, where, summary, len(files), warn, entry_of, recorded)
    return summary


def copy_scored(scored, source: Path, dest: Path, manifest: Manifest, where: dict, summary: SortSummary,
                total: int, warn, entry_of: Callable, recorded: Callable[[dict, int], None]) -> None:
    """Both kinds' loop over the scored photos: each readable one copied into DEST under the stem
    `entry_of(name, result)` gives with its record, the copy-in-flight note written before the
    copy is claimed, then `recorded(record with its copy's name, total)`; an unreadable photo
    (or one that went while copied) recorded as not sorted. Closes `scored` (pipeline.ahead's
    thread stops now, not when an error's traceback is freed)."""
    try:
        for result in scored:
            name = result.path.relative_to(source).as_posix()
            if isinstance(result, Skipped):
                entry = _record_unreadable(result, name, where, summary, warn)
                _append_or_stop(manifest, entry, None, dest, summary, total)
                continue
            stem, entry = entry_of(name, result)
            try:
                copy = claim_name(dest, stem, result.path.suffix,
                                  before=lambda path, entry=entry: copy_in_flight.note(
                                      dest, {"source": entry["source"], "copy": path.name, **entry}))
                copy_into(result.path, copy)
            except SourceError as error:
                entry = _record_unreadable(Skipped(result.path, str(error)), name, where, summary, warn)
                _append_or_stop(manifest, entry, None, dest, summary, total)
                continue
            except OSError as error:
                raise _stopped(dest, error, summary, total) from error
            recorded({"source": name, "copy": copy.path.name, **entry}, total)
            summary.copied += 1
    finally:
        scored.close()


def opened_folders(source: Path, dest: Path) -> tuple[Path, Path]:
    """(SRC, DEST) resolved, DEST checked and made: where both kinds' sort starts."""
    source, dest = Path(source).resolve(), Path(dest).resolve()
    check_dest(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SortError(f"cannot create DEST {dest} ({error.strerror})") from error
    return source, dest


def record_not_photos(others: list, source: Path, where: dict, manifest, dest: Path, summary,
                      pending: int, warn) -> None:
    """Record each file photos_to_sort found not regular as unreadable; never opened, as a FIFO
    would block the read for ever."""
    for path, what in others:
        entry = _record_unreadable(Skipped(path, f"{what}, not a regular file; only photos in regular "
                                          "files are sorted"), path.relative_to(source).as_posix(),
                                   where, summary, warn)
        _append_or_stop(manifest, entry, None, dest, summary, pending)


def photos_to_sort(source: Path, warn, ours: set, done: set, finished: dict | None, summary,
                   ours_too: Callable[[Path], bool] = lambda real: False) -> tuple[list, list]:
    """(the photos of `source` still to sort, [(a file that is not a regular one, what it is)]):
    neither a copy of ours (`ours`, or `ours_too` of its real path) nor one sorted before (`done`,
    counted in `summary`). The classes' sort and the points' share this listing."""
    files, others = [], []
    for path in list_files(source, warn):
        real = Path(os.path.realpath(path))
        if real in ours or ours_too(real):
            continue
        what = _not_a_photo_file(path)
        if what is not None:
            others.append((path, what))
            continue
        relative = path.relative_to(source).as_posix()
        if relative in done:
            # The one finished just now counts as copied (above), not as sorted before.
            summary.already_sorted += finished is None or finished["source"] != relative
            continue
        files.append(path)
    return files, others


def _not_a_photo_file(path: Path) -> str | None:
    """What `path` is if it is neither a regular file nor a broken link (whose reading says why it
    cannot be read): a FIFO, a socket, a device, which are never opened."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) else kind_of(mode)


def _record_unreadable(skipped: Skipped, name: str, where: dict, summary: SortSummary, warn) -> dict:
    warn(skipped.warning())
    summary.unreadable += 1
    return {"source": name, "error": skipped.reason, **where}


def _append_or_stop(manifest: Manifest, entry: dict, copy: Path | None, dest: Path,
                    summary: SortSummary, total: int) -> None:
    """Record `entry`; if that fails, take back its copy (no copy without a record) and stop."""
    try:
        manifest.append(entry)
    except OSError as error:
        if copy is not None:
            copy.unlink(missing_ok=True)
        raise _stopped(dest, error, summary, total) from error


def _stopped(dest: Path, error: OSError, summary: SortSummary, total: int) -> SortError:
    done = summary.copied + summary.unreadable
    full = error.errno in (errno.ENOSPC, errno.EDQUOT)
    return SortError(
        f"{'DEST is full' if full else 'cannot write into DEST'} ({dest}: {error.strerror or error}); "
        f"stopped after {done} of {total} photos ({summary.copied} copied, each recorded in "
        f"{MANIFEST}); {'free some space' if full else 'fix that'} and run guessDir again: it skips "
        "the photos already sorted"
    )

"""Publishing a model's files into DIR all at once: a kill leaves the whole old model or the whole new one.

A model is several files (the graph, its labels, the SavedModel, the log) that only make sense
together, and no rename swaps several files at once. So, one writer at a time (`writing`):

1. each new file or folder is written under a temp name beside its final one
   (`.NAME.XXXXXXXX.tmp`) and fsynced;
2. `DIR/.publish.json`, listing the renames temp -> final, is written atomically: the commit point;
3. the renames are done (a folder already at a final name is first moved aside to
   `.NAME.XXXXXXXX.old`, as no rename replaces a folder that holds files), then DIR is fsynced;
4. the journal is removed, then what was moved aside.

Readers open a model inside `steady(DIR)`: no publication runs meanwhile (a shared flock on DIR
against the publisher's exclusive one), and a journal a killed publisher left is finished first
(its temps are complete), or, where DIR cannot be written, the temps it names are read instead.
A kill before the journal exists leaves only temps, which the next train or export removes.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tensorguess.errors import TensorGuessError
from tensorguess.model_dir import PUBLISHED

JOURNAL = ".publish.json"
LOCK = ".tensor-guess.lock"  # held by the one train or export writing into DIR; holds its pid
# Every name train and export write into DIR: their leftovers are removed by name only.
OUTPUTS = (*PUBLISHED, JOURNAL)
TOKEN = r"[a-z0-9_]{8}"  # tempfile's random part
JOURNAL_LIMIT = 1 << 16  # bytes: a journal lists a handful of renames


class PublishError(TensorGuessError):
    """DIR cannot be written to now (another writer holds it, or it refuses the lock)."""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(top: Path) -> None:
    """Every file and folder under `top` (links are not followed), then `top` itself."""
    for root, folders, files in os.walk(top):
        for name in files:
            if not os.path.islink(os.path.join(root, name)):
                _fsync_path(Path(root, name))
        for name in folders:
            if not os.path.islink(os.path.join(root, name)):
                _fsync_path(Path(root, name))
    _fsync_path(top)


def _remove_ours(path: Path) -> None:
    """Remove a file or folder tensor-guess put aside; a link is unlinked, never followed."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path, ignore_errors=True)  # fd-based: links inside are removed, not followed
    else:
        path.unlink(missing_ok=True)


def _aside_name(folder: Path, name: str) -> Path:
    """An unused `.NAME.XXXXXXXX.old` beside `name`, for the version a folder swap replaces."""
    while True:
        candidate = folder / f".{name}.{next(tempfile._get_candidate_names())}.old"
        if not os.path.lexists(candidate):
            return candidate


def _finish(folder: Path, renames: list[tuple[str, str]]) -> list[Path]:
    """Do the journal's renames that are not done yet (a temp already gone was renamed);
    return what was moved aside. Idempotent: a kill anywhere in it is finished by running it again."""
    aside: list[Path] = []
    for temp_name, final_name in renames:
        temp, final = folder / temp_name, folder / final_name
        try:
            temp_mode = os.lstat(temp).st_mode
        except FileNotFoundError:
            continue
        try:
            final_mode = os.lstat(final).st_mode
        except FileNotFoundError:
            final_mode = None
        # A file replaces a file or a link atomically (the link itself, never its target);
        # a folder, or anything over a folder, needs the old one moved aside first.
        if final_mode is not None and (stat.S_ISDIR(temp_mode) or stat.S_ISDIR(final_mode)):
            moved = _aside_name(folder, final_name)
            os.rename(final, moved)
            aside.append(moved)
        os.rename(temp, final)
    return aside


def _valid(entry) -> tuple[str, str] | None:
    """(temp, final) if `entry` is a rename this module writes: plain names, the temp being
    `.FINAL.XXXXXXXX.tmp` beside its final; else None (a forged journal renames nothing else)."""
    if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(x, str) for x in entry)):
        return None
    temp, final = entry
    if "/" in final or "\0" in final or final in ("", ".", "..", JOURNAL, LOCK):
        return None
    if not re.fullmatch(rf"\.{re.escape(final)}\.{TOKEN}\.tmp", temp):
        return None
    return temp, final


def _read_journal(folder: Path) -> list[tuple[str, str]]:
    """The renames DIR/.publish.json lists ([] if none): read only if it is a regular file,
    never through a link or from a FIFO."""
    try:
        fd = os.open(folder / JOURNAL, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        data = os.read(fd, JOURNAL_LIMIT + 1)
    finally:
        os.close(fd)
    try:
        entries = json.loads(data.decode("utf-8")).get("renames", []) if len(data) <= JOURNAL_LIMIT else []
    except (ValueError, AttributeError):
        return []
    return [valid for valid in map(_valid, entries if isinstance(entries, list) else []) if valid]


def _flock(fd: int, operation: int) -> None:
    """flock, where the file system has it (some network ones do not: then no lock is taken)."""
    try:
        fcntl.flock(fd, operation)
    except BlockingIOError:
        raise
    except OSError:
        pass


def _open_folder(folder: Path) -> int | None:
    try:
        return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None


def _settle(folder: Path, dirfd: int) -> None:
    """Finish a journal a killed publication left (call with DIR's exclusive flock held)."""
    renames = _read_journal(folder)
    if not renames:
        return
    aside = _finish(folder, renames)
    os.fsync(dirfd)
    (folder / JOURNAL).unlink(missing_ok=True)
    os.fsync(dirfd)
    for path in aside:
        _remove_ours(path)


@contextmanager
def steady(folder: Path) -> Iterator[Callable[[Path], Path]]:
    """Hold DIR's model steady while a reader opens it; yields where(path): the path to read.

    No publication runs meanwhile. A journal found is finished first; if DIR is read-only,
    where() gives the temp the journal names for each final path instead (they are complete).
    """
    folder = Path(folder)
    dirfd = _open_folder(folder)
    if dirfd is None:  # no such folder: the reader's own error says so
        yield Path
        return
    replaced: dict[Path, Path] = {}
    try:
        _flock(dirfd, fcntl.LOCK_SH)
        if _read_journal(folder):
            _flock(dirfd, fcntl.LOCK_EX)
            try:
                _settle(folder, dirfd)
            except OSError as error:
                if error.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                    raise
                replaced = {folder / final: folder / temp for temp, final in _read_journal(folder)
                            if os.path.lexists(folder / temp)}
            _flock(dirfd, fcntl.LOCK_SH)
        yield lambda path: replaced.get(Path(path), Path(path))
    finally:
        os.close(dirfd)


@contextmanager
def writing(folder: Path, say: Callable[[str], None], names: Iterable[str] = ()) -> Iterator[None]:
    """Be the one train or export writing into DIR, until the block ends (a kill ends it too:
    the kernel drops the flock). A journal a killed run left is finished first, and the temps of
    runs killed before their journal (`names`, OUTPUTS, ours alone) are removed, saying so."""
    folder = Path(folder)
    path = folder / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise PublishError(f"cannot lock {path} ({error.strerror}): train and export need a folder "
                           "they can write into, and this name must be a plain file") from error
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PublishError(f"{path} is not a regular file; remove it and run again")
        try:
            _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise PublishError(f"another train.sh or export.sh (pid {holder}) is writing into {folder}; "
                               "wait for it to end, or stop it, then run again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        dirfd = _open_folder(folder)
        if dirfd is not None:
            try:
                _flock(dirfd, fcntl.LOCK_EX)
                _settle(folder, dirfd)
            finally:
                os.close(dirfd)
        removed = remove_leftovers(folder, [*OUTPUTS, *names])
        if removed:
            say(f"Removed {len(removed)} partial outputs that killed runs left in {folder}: "
                + ", ".join(sorted(path.name for path in removed)))
        yield
    finally:
        os.close(fd)


def remove_leftovers(folder: Path, names: Iterable[str]) -> list[Path]:
    """Remove the temps and set-aside versions of `names` in `folder`: only entries named by our
    own patterns (`.NAME.XXXXXXXX`, `.tmp` or `.old` after it), only regular files and folders
    owned by this user; links are left alone. Call as the writer, with no journal pending."""
    patterns = [re.compile(rf"\.{re.escape(name)}\.{TOKEN}(\.tmp|\.old)?") for name in set(names)]
    removed = []
    try:
        entries = os.listdir(folder)
    except OSError:
        return []
    for entry in entries:
        if not any(pattern.fullmatch(entry) for pattern in patterns):
            continue
        path = folder / entry
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if info.st_uid != os.geteuid() or not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
            continue
        _remove_ours(path)
        removed.append(path)
    return removed


class Publication:
    """New versions of files and folders in DIR, staged beside their final names and published
    together by `commit` (or all dropped by `discard`). As a context manager: committed when the
    block ends normally, discarded when it raises."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.staged: list[tuple[Path, Path]] = []  # (temp, final)
        self.scratch_folders: list[Path] = []

    def __enter__(self) -> Publication:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()

    def _reserve(self, final: Path, folder: bool) -> Path:
        final = Path(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        maker = tempfile.mkdtemp if folder else tempfile.mkstemp
        made = maker(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
        temp = Path(made if folder else made[1])
        if not folder:
            os.close(made[0])
        self.staged.append((temp, final))
        return temp

    def write(self, final: Path, data: bytes) -> None:
        """Stage `data` as the new `final` (a file with the mode a plain open() would give it)."""
        temp = self._reserve(final, folder=False)
        with open(temp, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, 0o666 & ~_umask())

    def new_folder(self, final: Path) -> Path:
        """An empty folder to fill with the new `final` (a folder)."""
        temp = self._reserve(final, folder=True)
        os.chmod(temp, 0o777 & ~_umask())
        return temp

    def scratch(self, final: Path) -> Path:
        """A folder beside `final` to build in; removed when the publication ends."""
        made = Path(tempfile.mkdtemp(dir=Path(final).parent, prefix=f".{Path(final).name}."))
        self.scratch_folders.append(made)
        return made

    def adopt(self, final: Path, built: Path) -> None:
        """Stage the folder `built` (on DIR's file system) as the new `final`."""
        temp = self._reserve(final, folder=True)
        os.rename(built, temp)  # onto the empty folder just reserved

    def commit(self) -> None:
        """Publish every staged version. Until the journal is in place nothing of the old model
        has changed; once it is, a reader or the next run finishes what a kill interrupts."""
        if not self.staged:
            return
        for temp, _ in self.staged:
            if temp.is_dir():  # files were fsynced as they were written
                _fsync_tree(temp)
        inside = [(temp, final) for temp, final in self.staged if final.parent == self.folder]
        outside = [(temp, final) for temp, final in self.staged if final.parent != self.folder]
        dirfd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        aside: list[Path] = []
        try:
            _flock(dirfd, fcntl.LOCK_EX)
            journal = tempfile.NamedTemporaryFile(dir=self.folder, prefix=f".{JOURNAL}.", suffix=".tmp",
                                                  delete=False)
            with journal:
                journal.write(json.dumps({"renames": [[temp.name, final.name] for temp, final in inside]})
                              .encode())
                journal.flush()
                os.fsync(journal.fileno())
            os.replace(journal.name, self.folder / JOURNAL)  # the commit point
            os.fsync(dirfd)
            aside = _finish(self.folder, [(temp.name, final.name) for temp, final in inside])
            os.fsync(dirfd)
            (self.folder / JOURNAL).unlink()
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
        # Outputs outside DIR (flags that put them elsewhere) are published one by one after it.
        for temp, final in outside:
            aside += _finish(final.parent, [(temp.name, final.name)])
        self.staged = []
        for path in aside + self.scratch_folders:
            _remove_ours(path)

    def discard(self) -> None:
        for temp, _ in self.staged:
            _remove_ours(temp)
        for path in self.scratch_folders:
            _remove_ours(path)
        self.staged = []

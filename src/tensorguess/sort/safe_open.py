"""Opening files in a folder others may write into (a shared DEST) without being led astray.

Whoever can write into DEST can plant a symbolic link, a hard link or a FIFO under a
name the sort writes. So every file the sort reads or writes there is opened:

- without following a final symbolic link (O_NOFOLLOW), so no byte goes outside DEST;
- without blocking (O_NONBLOCK), so a FIFO or a device cannot hang the run;
- and kept only if fstat, on the very descriptor opened, says it is a regular file
  with one name (a hard link to a file elsewhere is that file).

What is refused raises NotOurs, whose message names the file, says what it is and
what to do; the file itself is left exactly as it was (never removed or truncated).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

from tensorguess.data.images import kind_of, printable


class NotOurs(Exception):
    """A name the sort writes holds something it must not write into or read."""


def _what_is_there(path: Path) -> str:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "not a regular file"
    if stat.S_ISLNK(mode):
        try:
            return f"a symbolic link (to {printable(os.readlink(path))})"
        except OSError:
            return "a symbolic link"
    return kind_of(mode)


def refusal(path: Path, what: str) -> NotOurs:
    return NotOurs(
        f"{printable(path)} is {what}, not a file guessDir wrote; guessDir writes only regular files "
        "of its own there, so it stopped and left it as it is: remove or rename it (whatever it "
        "points to is not touched) and run guessDir again")


def open_ours(path: Path, flags: int, *, create: bool = False, max_size: int | None = None,
              owner: int | None = None) -> int:
    """A descriptor of `path` opened with `flags` (os.O_RDONLY, O_RDWR...), only if it is a regular
    file with a single link (and at most `max_size` bytes, owned by uid `owner`, where given).

    `create`: make it (0666 less the umask) if it is missing. Raises NotOurs for anything
    else (a symlink, even a dangling one; a FIFO; a hard link...), OSError for the rest.
    """
    extra = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags | extra, 0o666)
    except OSError as error:
        # ELOOP: a final symlink. ENXIO: a FIFO or socket with no reader, opened for writing.
        if error.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
            raise refusal(path, _what_is_there(path)) from error
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise refusal(path, kind_of(info.st_mode))
        if info.st_nlink > 1:
            raise refusal(path, f"a file with {info.st_nlink} hard links (one may be outside the folder)")
        if max_size is not None and info.st_size > max_size:
            raise refusal(path, f"{info.st_size} bytes, more than guessDir ever writes there ({max_size})")
        if owner is not None and info.st_uid != owner:
            raise refusal(path, f"a file of another user (uid {info.st_uid})")
        _blocking(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def same_file(fd: int, path: Path) -> bool:
    """Whether `path` (not followed) still names the file open as `fd`."""
    try:
        there, ours = os.lstat(path), os.fstat(fd)
    except OSError:
        return False
    return (there.st_dev, there.st_ino) == (ours.st_dev, ours.st_ino)


def _blocking(fd: int) -> None:
    """O_NONBLOCK was only for the open; reads and writes of a regular file never block anyway."""
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)

"""guess --draw's folder: each photo drawn with the model's answer into a PNG named after it, never
over a file that guess --draw did not write.

A photo `hand.jpg` is drawn into FOLDER/hand.png. That name is passed over, for hand-2.png,
hand-3.png..., when this run has drawn another photo there already (two photos named `hand`), or
when it holds anything but a drawing of guess --draw (a file without MARK near its start, a link,
a folder): that is left exactly as it is, and one line says where the drawing went. A drawing an
earlier run made is replaced, so a rerun on the same photos draws into the same files.

A new file is created with O_EXCL (a file that appears meanwhile is never written over: the next
name is taken) and O_NOFOLLOW; a drawing of ours is replaced whole (atomic_write). A new file a
killed run left half-written starts with MARK (PNG's text chunks come before its pixels), so the
rerun replaces it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tensorguess.atomic_write import write_atomically
from tensorguess.data.images import printable, read_image
from tensorguess.errors import TensorGuessError, UsageError
from tensorguess.report.point_drawing import answer_drawn, png_bytes

DESCRIPTION = "tensor-guess guess --draw"  # the PNG's Description text: the drawings' own mark
MARK = b"Description\x00" + DESCRIPTION.encode()
HEAD = 4096  # MARK lies in a PNG's first chunks, within this many bytes
TRIES = 1000  # names tried a photo: hand.png, hand-2.png ... hand-1000.png
NAMED = 3  # names passed over that the note names
DRAWN_NOW = "holds another photo's drawing of this run"
KEPT = "is not a drawing of guess --draw, kept as it is"


class DrawingError(TensorGuessError):
    """A drawing could not be written; the message names the file."""


def is_drawing(path: Path) -> bool:
    """Whether `path` is a regular file (not a link) that guess --draw wrote."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False  # a link, or nothing readable: not ours
    with os.fdopen(descriptor, "rb") as handle:
        return stat.S_ISREG(os.fstat(descriptor).st_mode) and MARK in handle.read(HEAD)


class DrawingsFolder:
    """The folder guess --draw writes into, created if missing; `draw` writes one photo's drawing."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise UsageError(f"--draw {printable(self.folder)} exists and is not a folder; choose a folder "
                             "for the drawings")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(f"cannot create the --draw folder {printable(self.folder)} "
                             f"({error.strerror or error})") from error
        self.drawn: set[str] = set()  # the names this run has written

    def draw(self, photo: Path, points, box, bones, stem: str | None = None,
             pixels=None) -> tuple[Path, str | None]:
        """The photo (read again, upright by EXIF, at its own size, unless its `pixels` are given)
        with `box`, `bones` and `points` drawn, written under the first free name from `stem` (the
        photo's own stem by default): (where, a line saying why the first name was passed over, or
        None). UnreadableImage if the photo can no longer be read."""
        pixels = read_image(photo) if pixels is None else pixels
        png = png_bytes(answer_drawn(pixels, points, box, bones), DESCRIPTION)
        stem = Path(photo).stem if stem is None else stem
        passed: list[str] = []
        for number in range(1, TRIES + 1):
            name = f"{stem}.png" if number == 1 else f"{stem}-{number}.png"
            path = self.folder / name
            if name not in self.drawn and self._placed(path, png):
                self.drawn.add(name)
                return path, self._note(photo, path, passed)
            passed.append(name)
        raise DrawingError(f"{printable(self.folder)} already holds {stem}.png to {stem}-{TRIES}.png, "
                           f"none a drawing of guess --draw: {printable(photo)} is not drawn; choose "
                           "another folder")

    def _placed(self, path: Path, png: bytes) -> bool:
        """Write `png` at `path` if nothing is there or a drawing of ours is; False if it holds
        something else."""
        try:
            if os.path.lexists(path):
                if not is_drawing(path):
                    return False
                write_atomically(path, png)
                return True
            try:
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
            except FileExistsError:
                return False  # it appeared meanwhile: left to whoever made it
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(png)
            return True
        except OSError as error:
            raise DrawingError(f"cannot write the drawing {printable(path)} ({error.strerror or error})"
                               ) from error

    def _note(self, photo: Path, path: Path, passed: list[str]) -> str | None:
        """One line: where the drawing went, and why each name before it was passed over."""
        if not passed:
            return None
        whys = [f"{printable(name)} {DRAWN_NOW if name in self.drawn else KEPT}" for name in passed[:NAMED]]
        more = f" and {len(passed) - NAMED} more" if len(passed) > NAMED else ""
        return f"tensor-guess: {printable(photo)} drawn into {printable(path)} ({'; '.join(whys)}{more})"

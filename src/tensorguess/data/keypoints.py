"""Labelled points read from a labelling tool's export into one type, `Keypoints`, checked against the photos.

Formats, told apart by content: JSON is COCO keypoints (keypoint_coco: CVAT, Label Studio,
Roboflow, mmpose); a CSV whose first cell is `scorer` is DeepLabCut's CollectedData, 3 or 4
header rows, 1 or 3 index columns (keypoint_tables); any other CSV is `image,NAME_x,NAME_y,...`.

Conventions, the same whatever the format:
- Pixel frame: continuous coordinates, (0, 0) the top-left corner of the top-left pixel, whose
  centre is (0.5, 0.5); x rightwards, y downwards. A point lies in pixel floor(x), a photo
  resized by s moves it to x * s with no offset, and it is inside a W x H photo when 0 <= x <= W
  and 0 <= y <= H. COCO and plain CSV files are read as written (CVAT, Label Studio, Roboflow
  and MediaPipe's landmarks times the size are continuous; the shared hands' v = 0 points are
  exactly those past 100 on a 100 px photo); DeepLabCut's are pixel indices (the centre of the
  pixel clicked), so they move by +0.5. `origin=PIXEL_CENTRE` reads any file as pixel indices:
  a COCO file converted from DeepLabCut without the +0.5 (the shared mouse's keypoints.json,
  0.5 px up and left of its CollectedData.csv otherwise), or written under detectron2's
  reading of COCO. A bbox moves with its points.
- EXIF: points refer to the photo upright, its EXIF orientation applied, as read_image decodes
  it and as browsers and labelling tools show it; widths and heights are the upright ones. A
  COCO image whose width and height are the photo's stored sides, which its EXIF turn swaps,
  was labelled unturned: it is skipped with a line rather than guessed.
- One object a photo: a photo that several annotations, rows or individuals label is skipped
  with a line. The points model learns one object a photo (one peak a point); two objects'
  points would teach it their average, and leaving one of them unlabelled would teach it that
  the other is background.
- A point not labelled (COCO v = 0, an empty cell, a labelled point outside its photo) has NaN
  coordinates and `labelled` False, so it is never learned, least of all as (0, 0).

A bad row or photo costs one line through `warn` (the first 5 of a kind, then a count) and the
run goes on without it; a file that cannot be read as a whole raises KeypointsError before
anything is trained or written.
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tensorguess.data.capped_lines import CappedLines
from tensorguess.data.images import UnreadableImage, open_regular, printable, upright_size
from tensorguess.data.keypoint_coco import read_coco
from tensorguess.data.keypoint_rows import ORIGINS, PIXEL_CENTRE, KeypointsError, LabelledRow, ParsedFile
from tensorguess.data.keypoint_tables import read_deeplabcut, read_plain_csv, records
from tensorguess.data.point_names import indexed_pairs, pairs_from_names
from tensorguess.errors import UsageError

# COCO's own person keypoints for train2017 are 240 MB of JSON; no labelling export comes near this.
MAX_ANNOTATION_BYTES = 1 << 30
# How a photo's written path was found under the image root, in the order tried.
AS_WRITTEN, LAST_TWO, LAST_ONE = "as written", "by their last two parts", "by their last part"

Warn = Callable[[str], None]


@dataclass(frozen=True)
class Instance:
    """One labelled object: its photo and its points in the package's pixel frame."""

    relative: str  # the photo's path under the image root, with `/`
    path: Path  # the photo, absolute
    width: int  # the upright photo's size (EXIF orientation applied)
    height: int
    points: np.ndarray  # float32 [K, 2], (x, y) from the top-left corner; NaN where not labelled
    labelled: np.ndarray  # bool [K]: True where the point is labelled (COCO v > 0, hidden ones too)
    bbox: tuple[float, float, float, float] | None  # the file's (x, y, width, height), same frame
    where: str  # the annotation or line of the source file it comes from


@dataclass(frozen=True)
class Keypoints:
    """A keypoint file's points, bones, flip pairs (0-based indices into `names`) and labelled photos."""

    names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...]
    flip_pairs: tuple[tuple[int, int], ...]  # (left, right): a horizontal flip swaps the two
    pairs_from: str  # "the caller", "the file", "the names"
    instances: list[Instance]
    source: Path
    format: str  # "coco", "deeplabcut" or "csv"
    image_root: Path
    found_by: str  # one line: how the photos' written paths were found under image_root


def read_keypoints(path: Path | str, image_root: Path | str | None = None, *,
                   pairs: Sequence[tuple[str, str]] | None = None,
                   skeleton: Sequence[tuple[str, str]] | None = None, origin: str | None = None,
                   warn: Warn | None = None, say: Warn | None = None) -> Keypoints:
    """The labelled photos of a keypoint file whose photo paths are relative to `image_root`.

    `image_root` defaults to the file's folder. `pairs` and `skeleton` (names, from flags such
    as parse_pairs' and parse_skeleton's) replace the file's; with no `pairs` the file's are
    taken, else those the names give. `origin` (CORNER or PIXEL_CENTRE) overrides the format's
    frame. One line for each bad row through `warn`, one summary line through `say`.
    """
    warn, say = warn or _stderr, say or print
    path = Path(path)
    if origin is not None and origin not in ORIGINS:
        raise UsageError(f"origin {origin!r} is none of {', '.join(ORIGINS)}")
    root = Path(image_root) if image_root is not None else path.parent
    if not root.is_dir():
        raise UsageError(f"the photos' folder {printable(root)} is not a folder; give the folder the "
                         f"paths of {printable(path)} are relative to")
    lines = CappedLines(warn, f"tensor-guess: {printable(path)}")
    parsed = _parse(path, lines)
    names = parsed.names
    bones = indexed_pairs(skeleton, names, "skeleton", "the caller") if skeleton is not None \
        else parsed.skeleton or []
    if pairs is not None:
        flips, pairs_from = indexed_pairs(pairs, names, "pairs", "the caller"), "the caller"
    elif parsed.flip_pairs is not None:
        flips, pairs_from = parsed.flip_pairs, "the file"
    else:
        flips, pairs_from = pairs_from_names(names), "the names"
    shift = 0.5 if (origin or parsed.origin) == PIXEL_CENTRE else 0.0
    instances, found = _instances(parsed, root, shift, lines)
    lines.close()
    if not instances:
        raise KeypointsError(f"{printable(path)}: no photo with labelled points under {printable(root)} "
                             f"(of {len(parsed.rows):,} labelled objects); see the lines above")
    result = Keypoints(tuple(names), tuple(bones), tuple(flips), pairs_from, instances, path, parsed.format,
                       root, _found_by(found, root))
    say(summary(result))
    return result


def summary(points: Keypoints) -> str:
    """One line: the file, its photos and points, the flip pairs and how the photos were found."""
    pairs = ", ".join(f"{points.names[a]}<->{points.names[b]}" for a, b in points.flip_pairs)
    return (f"Points from {printable(points.source)} ({points.format}): {len(points.instances):,} photos, "
            f"{len(points.names)} points ({', '.join(points.names)}); "
            + (f"flip pairs {pairs} from {points.pairs_from}" if pairs else
               f"no flip pairs from {points.pairs_from}: a flip keeps every name")
            + f"; {points.found_by}")


def detect_format(text: str) -> str:
    """"coco" for JSON, "deeplabcut" for a CSV whose first cell is `scorer`, else "csv"."""
    if text.lstrip()[:1] in ("{", "["):
        return "coco"
    first = text.lstrip().split("\n", 1)[0].split(",", 1)[0].strip().strip('"').lower()
    return "deeplabcut" if first == "scorer" else "csv"


def _parse(path: Path, lines: CappedLines) -> ParsedFile:
    try:
        with open_regular(path, MAX_ANNOTATION_BYTES) as handle:
            text = handle.read().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise KeypointsError(f"{printable(path)} is not UTF-8 text (a DeepLabCut .h5? read the "
                             "CollectedData_*.csv beside it)") from error
    except OSError as error:
        raise KeypointsError(f"cannot read {printable(path)} ({error.strerror or error})") from error
    if not text.strip():
        raise KeypointsError(f"{printable(path)} is empty; export the labels again")
    kind = detect_format(text)
    if kind == "coco":
        return read_coco(path, text, lines)
    try:
        table = records(text)
    except Exception as error:  # csv.Error, a NUL byte: the file is not a CSV at all
        raise KeypointsError(f"{printable(path)} is neither JSON nor a readable CSV ({error})") from error
    return (read_deeplabcut if kind == "deeplabcut" else read_plain_csv)(path, table, lines)


def _instances(parsed: ParsedFile, root: Path, shift: float,
               lines: CappedLines) -> tuple[list[Instance], Counter[str]]:
    """Each row whose photo is found, alone on it and readable, with its points moved and checked."""
    finder = PhotoFinder(root)
    by_photo: dict[Path, list[tuple[LabelledRow, str]]] = {}
    for row in parsed.rows:
        if not row.labelled.any():
            lines.add("no points", f"{row.where}: no labelled point; skipped",
                      "photos with no labelled point")
            continue
        hit = finder.find(row.written_path)
        if hit is None:
            lines.add("not found", f"{row.where}: photo {printable(row.written_path)} not found under "
                      f"{printable(root)}, as written nor by its last parts; skipped", "photos not found")
            continue
        by_photo.setdefault(hit[0], []).append((row, hit[1]))
    instances = []
    for photo, rows in by_photo.items():
        relative = photo.relative_to(root).as_posix()
        if len(rows) > 1:
            lines.add("several", f"{printable(relative)}: {len(rows)} objects labelled ("
                      + "; ".join(row.where for row, _ in rows[:3]) + (", ..." if len(rows) > 3 else "")
                      + "); one object a photo is learned: photo skipped", "photos with several objects")
            continue
        row = rows[0][0]
        instance = _instance(row, photo, relative, parsed.names, shift, lines)
        if instance is not None:
            instances.append(instance)
    return instances, Counter(finder.how[photo] for photo in by_photo)


def _instance(row: LabelledRow, photo: Path, relative: str, names: list[str], shift: float,
              lines: CappedLines) -> Instance | None:
    try:
        size = upright_size(photo)
    except UnreadableImage as error:
        lines.add("unreadable", f"{row.where}: photo {printable(relative)} cannot be read ({error}); skipped",
                  "unreadable photos")
        return None
    width, height = size.width, size.height
    if row.size is not None and row.size != (width, height):
        if size.sides_swapped and row.size == (height, width):
            lines.add("turned", f"{row.where}: the file's {row.size[0]}x{row.size[1]} is the photo as "
                      f"stored, but its EXIF orientation turns it to {width}x{height}, the frame points "
                      "are read in; label it turned (or strip its EXIF orientation); skipped",
                      "photos labelled unturned")
        else:
            lines.add("size", f"{row.where}: the file says {row.size[0]}x{row.size[1]}, the photo is "
                      f"{width}x{height}: the points belong to another copy of it; skipped",
                      "photos of another size")
        return None
    points = row.points + shift
    labelled = row.labelled.copy()
    x, y = points[:, 0], points[:, 1]
    outside = labelled & ((x < 0) | (x > width) | (y < 0) | (y > height))  # NaN compares False
    for at in np.flatnonzero(outside):
        lines.add("outside", f"{row.where}: point {names[at]} at ({points[at, 0]:.1f}, {points[at, 1]:.1f}) "
                  f"is outside the {width}x{height} photo; not learned", "points outside their photo")
    labelled &= ~outside
    points[~labelled] = np.nan
    if not labelled.any():
        lines.add("no points", f"{row.where}: no labelled point inside the photo; skipped",
                  "photos with no labelled point")
        return None
    bbox = None if row.bbox is None else (row.bbox[0] + shift, row.bbox[1] + shift, row.bbox[2], row.bbox[3])
    return Instance(relative, Path(os.path.abspath(photo)), width, height, points.astype(np.float32),
                    labelled, bbox, row.where)


class PhotoFinder:
    """Finds a written photo path under the image root: as written, else by its last two parts, else its last.

    DeepLabCut writes `labeled-data/VIDEO/FRAME.png` relative to its project, other tools an
    absolute path of the machine that labelled: the last parts find the photo in a copy laid
    out otherwise. Nothing outside the root is read: a written path that is absolute or
    climbs with `..` is tried only by its last parts.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.how: dict[Path, str] = {}  # each photo found -> how
        self._found: dict[str, tuple[Path, str] | None] = {}

    def find(self, written: str) -> tuple[Path, str] | None:
        if written not in self._found:
            self._found[written] = self._look(written)
            if self._found[written]:
                photo, how = self._found[written]
                self.how.setdefault(photo, how)
        return self._found[written]

    def _look(self, written: str) -> tuple[Path, str] | None:
        parts = [part for part in re.split(r"[\\/]+", written) if part not in ("", ".")]
        tries = [] if re.match(r"^([\\/]|[A-Za-z]:)", written) else [(parts, AS_WRITTEN)]
        tries += [(parts[-2:], LAST_TWO), (parts[-1:], LAST_ONE)]
        tried: list[list[str]] = []
        for candidate, how in tries:
            if candidate and ".." not in candidate and candidate not in tried:
                tried.append(candidate)
                photo = self.root.joinpath(*candidate)
                if photo.is_file():
                    return photo, how
        return None


def _found_by(found: Counter[str], root: Path) -> str:
    """One line for all the photos: how their written paths were found under the root."""
    ways = [f"{found[how]:,} {how}" for how in (AS_WRITTEN, LAST_TWO, LAST_ONE) if found[how]]
    return f"photos found under {printable(root)}: {', '.join(ways) or 'none'}"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)

"""DeepLabCut's CollectedData_*.csv and the plain `image,NAME_x,NAME_y,...` CSV read into labelled rows.

DeepLabCut: header rows `scorer`, `individuals` (DeepLabCut >= 2.2's multi-animal projects),
`bodyparts` and `coords`, each naming itself in the first cell; then one index column
(`labeled-data/VIDEO/FRAME.png`) or three (`labeled-data`, `VIDEO`, `FRAME.png`, DeepLabCut >= 2.2),
joined with `/` into the photo's path. Its coordinates are pixel indices (PIXEL_CENTRE). Each
individual of a row is a labelled object of its own; every individual must have the same body
parts (a multi-animal file's unique body parts, individual `single`, are refused).
Plain CSV: a path column (`image`), then NAME_x and NAME_y for each point, in the package's
CORNER frame. In both, an empty (or NaN) cell is a point not labelled.
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

import numpy as np

from tensorguess.data.capped_lines import CappedLines
from tensorguess.data.keypoint_rows import CORNER, PIXEL_CENTRE, KeypointsError, LabelledRow, ParsedFile
from tensorguess.data.labels_csv import PATH_COLUMNS
from tensorguess.data.point_names import duplicated

Record = tuple[int, list[str]]  # (the line it starts on, its cells)
Columns = list[tuple[int, int]]  # each point's (x column, y column)
EMPTY = ("", "nan")  # pandas writes a missing value as an empty cell; a hand-made file may write NaN
AXIS_SUFFIX = re.compile(r"^(?P<name>.+?)[_.](?P<axis>[xy])$", re.IGNORECASE)


def records(text: str) -> list[Record]:
    """The CSV's rows with the line each starts on; rows with no cell filled are left out."""
    reader = csv.reader(io.StringIO(text))
    found = []
    start = 1
    for cells in reader:
        if any(cell.strip() for cell in cells):
            found.append((start, cells))
        start = reader.line_num + 1
    return found


def read_deeplabcut(path: Path, table: list[Record], lines: CappedLines) -> ParsedFile:
    """The rows of a DeepLabCut CollectedData CSV; KeypointsError for a header it cannot be read by."""
    levels = ["scorer", "individuals", "bodyparts", "coords"]
    if len(table) < 2 or _first(table[1]) != "individuals":
        levels.remove("individuals")
    if len(table) < len(levels):
        raise KeypointsError(f"{path}: {len(table)} row(s), fewer than DeepLabCut's {len(levels)} header "
                             "rows; export CollectedData again")
    header = {}
    for (line, cells), level in zip(table, levels, strict=False):
        if _first((line, cells)) != level:
            raise KeypointsError(f"{path} line {line}: starts with {cells[0][:40]!r}, not {level!r}: not "
                                 f"DeepLabCut's header ({', '.join(levels)}); export CollectedData again")
        header[level] = cells
    width = len(header["bodyparts"])
    if any(len(cells) != width for cells in header.values()):
        raise KeypointsError(f"{path}: DeepLabCut's header rows are not all {width} cells long; fix the file")
    parts = [cell.strip() for cell in header["bodyparts"]]
    first = next((at for at in range(1, width) if parts[at]), None)  # 1 or 3 index columns before it
    if first is None:
        raise KeypointsError(f"{path}: the bodyparts row names no body part; export CollectedData again")
    coords = [cell.strip().lower() for cell in header["coords"][first:]]
    if "likelihood" in coords:
        raise KeypointsError(f"{path}: has likelihood columns: DeepLabCut's predictions, not its labels; "
                             "read labeled-data/VIDEO/CollectedData_*.csv")
    if coords != ["x", "y"] * (len(coords) // 2) or len(coords) % 2:
        raise KeypointsError(f"{path}: the coords row is not x, y for each body part; fix the file")
    owners = header.get("individuals", [""] * width)
    points: dict[str, list[tuple[str, int]]] = {}  # individual -> [(body part, its x column)]
    for column in range(first, width, 2):
        if (parts[column], owners[column]) != (parts[column + 1], owners[column + 1]) or not parts[column]:
            raise KeypointsError(f"{path}: columns {column + 1} and {column + 2} (x, y) name different body "
                                 "parts; fix the header")
        points.setdefault(owners[column].strip(), []).append((parts[column], column))
    individuals = list(points)
    names = [part for part, _ in points[individuals[0]]]
    twice = duplicated(names)
    if twice:
        raise KeypointsError(f"{path}: body part(s) {', '.join(map(repr, twice))} listed twice in the "
                             "header; each point needs a name of its own: rename one")
    for individual in individuals[1:]:
        if [part for part, _ in points[individual]] != names:
            raise KeypointsError(f"{path}: individual {individual!r} has other body parts than "
                                 f"{individuals[0]!r} (unique body parts are not read); export one "
                                 "individual's parts")
    rows = []
    for line, cells in table[len(levels):]:
        if len(cells) != width:
            lines.add("bad row", f"line {line}: {len(cells)} cells, the header {width}; row skipped",
                      "rows of the wrong length")
            continue
        written = "/".join(cell.strip() for cell in cells[:first] if cell.strip())
        objects = []
        for individual in individuals:
            where = f"line {line}" + (f", individual {individual}" if len(individuals) > 1 else "")
            read = _points(cells, [(column, column + 1) for _, column in points[individual]], names, where,
                           lines)
            if read is None:
                break
            objects.append(LabelledRow(where, written, *read))
        else:
            # An animal out of the frame leaves its cells empty: only the row as a whole can lack points.
            labelled = [row for row in objects if row.labelled.any()] or objects[:1]
            if _has_path(written, f"line {line}", lines):
                rows.extend(labelled)
    return ParsedFile("deeplabcut", names, rows, PIXEL_CENTRE)


def read_plain_csv(path: Path, table: list[Record], lines: CappedLines) -> ParsedFile:
    """The rows of an `image,NAME_x,NAME_y,...` CSV; KeypointsError for a header it cannot be read by."""
    if not table:
        raise KeypointsError(f"{path} is empty; its first row names the columns: image,NAME_x,NAME_y,...")
    line, header = table[0]
    if header[0].strip().lower() not in PATH_COLUMNS:
        raise KeypointsError(f"{path} line {line}: the first column is {header[0][:40]!r}, not the photo's "
                             "path: a keypoint CSV's header is image,NAME_x,NAME_y,...")
    axes: dict[str, dict[str, int]] = {}  # name -> {"x": column, "y": column}
    for column, title in enumerate(header[1:], start=1):
        match = AXIS_SUFFIX.match(title.strip())
        if not match:
            raise KeypointsError(f"{path} line {line}: column {title[:40]!r} is not NAME_x or NAME_y; the "
                                 "header is image,NAME_x,NAME_y,...")
        name, axis = match["name"], match["axis"].lower()
        if axis in axes.setdefault(name, {}):
            raise KeypointsError(f"{path} line {line}: point name {name!r} listed twice ({name}_{axis}); "
                                 "each point needs a name of its own: rename one")
        axes[name][axis] = column
    halves = [name for name, found in axes.items() if len(found) != 2]
    if halves or not axes:
        raise KeypointsError(f"{path} line {line}: " + (f"point {halves[0]!r} has only one of _x and _y"
                                                         if halves else "no NAME_x, NAME_y columns")
                             + "; the header is image,NAME_x,NAME_y,...")
    names = list(axes)
    columns = [(axes[name]["x"], axes[name]["y"]) for name in names]
    rows = []
    for line, cells in table[1:]:
        where = f"line {line}"
        if len(cells) != len(header):
            lines.add("bad row", f"{where}: {len(cells)} cells, the header {len(header)}; row skipped",
                      "rows of the wrong length")
            continue
        read = _points(cells, columns, names, where, lines)
        if read is not None and _has_path(cells[0].strip(), where, lines):
            rows.append(LabelledRow(where, cells[0].strip(), *read))
    return ParsedFile("csv", names, rows, CORNER)


def _points(cells: list[str], columns: Columns, names: list[str], where: str,
            lines: CappedLines) -> tuple[np.ndarray, np.ndarray] | None:
    """(points [K, 2], labelled [K]) of a row's cells, or None (said) when a cell is not a number."""
    points = np.full((len(columns), 2), np.nan)
    for at, (x_column, y_column) in enumerate(columns):
        for axis, column in enumerate((x_column, y_column)):
            cell = cells[column].strip()
            if cell.lower() in EMPTY:
                continue
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                lines.add("bad cell", f"{where}: {cell[:40]!r} ({names[at]} {'xy'[axis]}) is not a number; "
                          "row skipped", "rows with a cell that is not a number")
                return None
            points[at, axis] = value
    half = np.isnan(points).any(axis=1) & ~np.isnan(points).all(axis=1)
    for at in np.flatnonzero(half):
        lines.add("half point", f"{where}: {names[at]} has only one of x and y; that point is not labelled",
                  "points with only one of x and y")
    points[half] = np.nan
    return points, ~np.isnan(points).any(axis=1)


def _has_path(written: str, where: str, lines: CappedLines) -> bool:
    if written:
        return True
    lines.add("no path", f"{where}: no photo path; row skipped", "rows without a photo path")
    return False


def _first(record: Record) -> str:
    cells = record[1]
    return cells[0].strip().lower() if cells else ""

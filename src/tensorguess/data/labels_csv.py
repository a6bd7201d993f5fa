"""Labels (and a split) from a CSV file, as the MPII annotations and most Kaggle sets ship them.

The header names a path column and a label column (`path`/`file`/`image`...,
`label`/`class`/`category`...), optionally a split column (`split`/`subset`, with
`train`, `val`/`validation`, `test`). Paths are relative to the CSV's folder, which
is the image set's root: a CSV beside the class folders, listing `elsa/x.jpg`,
gives exactly the split and the model of those folders. A row naming a file outside
that folder (an absolute path, or one that climbs out with `..`) is refused, so that a
CSV from elsewhere cannot make tensor-guess read, and show in a report, any photo of
the machine.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path

from tensorguess.data.dataset import SPLIT_FOLDERS, DatasetError, ImageSet, label_for, unique_labels
from tensorguess.data.images import open_regular, printable

PATH_COLUMNS = ("path", "file", "filename", "file_name", "filepath", "file_path", "image",
                "image_path", "img")
LABEL_COLUMNS = ("label", "class", "category", "class_name", "target")
SPLIT_COLUMNS = ("split", "subset", "set", "partition")
SPLIT_VALUES = {**SPLIT_FOLDERS, "dev": "validation"}


def read_labels_csv(csv_path: Path, warn: Callable[[str], None] = print,
                    only_split: str | None = None) -> ImageSet:
    """The image set a CSV describes; `only_split` keeps the rows of one split (evaluate's test rows).

    Files that do not exist are kept, so that the bottleneck pass reports each one as
    unreadable with the others; a row repeated with the same label counts once.
    """
    csv_path = Path(csv_path)
    try:
        with open_regular(csv_path) as handle:  # never a FIFO, which would wait for a writer
            text = handle.read().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        why = getattr(error, "strerror", None) or error
        raise DatasetError(f"cannot read the labels CSV {csv_path} ({why})") from error
    lines = text.splitlines()
    if not lines:
        raise DatasetError(f"the labels CSV {csv_path} is empty; its first row must name the columns")
    try:
        dialect = csv.Sniffer().sniff(lines[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(lines, dialect=dialect)
    header = {name.strip().lower(): name for name in reader.fieldnames or []}
    path_column = _column(header, PATH_COLUMNS, "path", csv_path)
    label_column = _column(header, LABEL_COLUMNS, "label", csv_path)
    split_column = next((header[c] for c in SPLIT_COLUMNS if c in header), None)

    root = csv_path.parent
    rows: dict[tuple[str, Path], str | None] = {}
    outside: list[str] = []  # "line N: PATH" of each row naming a file outside root
    for number, row in enumerate(reader, start=2):
        raw_path, raw_label = (row.get(path_column) or "").strip(), (row.get(label_column) or "").strip()
        if not raw_path or not raw_label:
            warn(f"tensor-guess: {csv_path} line {number}: no {'path' if not raw_path else 'label'}; "
                 "row skipped")
            continue
        split = None
        if split_column:
            value = (row.get(split_column) or "").strip().lower()
            if value and value not in SPLIT_VALUES:
                raise DatasetError(f"{csv_path} line {number}: split {value!r} is none of train, val "
                                   "(validation) or test; fix it or leave it empty")
            split = SPLIT_VALUES.get(value)
        if only_split and split_column and split != only_split:
            continue
        inside = _inside(raw_path)
        if inside is None:
            outside.append(f"line {number}: {printable(raw_path)}")
            continue
        rows.setdefault((raw_label, root / inside), split)
    if outside:
        shown = ", ".join(outside[:3]) + (", ..." if len(outside) > 3 else "")
        warn(f"tensor-guess: {csv_path}: skipping {len(outside)} row(s) naming a file outside "
             f"{root} ({shown}); paths are relative to the CSV's folder")
    names = sorted({label for label, _ in rows})
    labels = unique_labels(names, f"labels in {csv_path}")
    files: dict[str, list[Path]] = {label: [] for label in labels}
    for raw_label, path in rows:
        files[label_for(raw_label)].append(path)
    for found in files.values():
        found.sort(key=Path.as_posix)
    given = None
    if split_column and not only_split:
        given = {path: split for (_, path), split in rows.items() if split}
    origin = f"Labels from {csv_path} ({len(rows)} rows)" + (
        f", split from its {split_column!r} column" if given else "")
    return ImageSet(root, labels, names, files, given, origin)


def _inside(raw_path: str) -> str | None:
    """The row's path, normalised, when it stays inside the CSV's folder; else None.

    Judged on the text, as the folder walk judges names: an absolute path and one whose
    `..` climb above the folder are outside; a link inside the folder is followed, as
    list_files follows linked folders.
    """
    if os.path.isabs(raw_path):
        return None
    normal = os.path.normpath(raw_path)
    if normal == os.pardir or normal.startswith(os.pardir + os.sep):
        return None
    return normal


def _column(header: dict[str, str], accepted: tuple[str, ...], what: str, csv_path: Path) -> str:
    found = [header[name] for name in accepted if name in header]
    if not found:
        raise DatasetError(f"{csv_path} has no {what} column (its columns: "
                           f"{', '.join(header.values()) or 'none'}); name one of them "
                           f"{' or '.join(accepted[:4])}")
    return found[0]

"""A folder-per-class image set: its labels and a stable train/validation/test split."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# The key and its constant are re-exported: the classes' split is read here (tests, callers).
from tensorguess.data.grouped_split import MAX_NUM_IMAGES_PER_CLASS as MAX_NUM_IMAGES_PER_CLASS
from tensorguess.data.grouped_split import SPLITS, Entry, ensure_each_split, place_by_keys
from tensorguess.data.grouped_split import band as key_band
from tensorguess.data.grouped_split import split_key as split_key
from tensorguess.data.grouped_split import units as grouped_units
from tensorguess.data.images import is_hidden, list_files
from tensorguess.errors import TensorGuessError


class DatasetError(TensorGuessError):
    """The image folder cannot be trained on as it is; the message says why and what to do."""


def label_for(folder_name: str) -> str:
    """The label of a folder (or of a CSV's label value): the one rule, for train and evaluate.

    retrain.py's rule where it gives a label (`Darth_Vader` -> `darth vader`, ASCII names
    byte for byte as before), widened to every script so that the label survives being
    written one a line and read back stripped: the name in NFC (a macOS NFD name gives
    the same label), lower-cased with str.lower() (as retrain.py; it keeps ASCII and `ß`
    as they are, where casefold would make `strasse`), letters, digits and the marks
    that belong to them (Unicode categories L, N, M: `猫`, `قطة`, `हिन्दी`) kept, each run of
    anything else one space, edges trimmed. A name with no letter or digit gives "",
    which no folder may have (`unique_labels` refuses it).
    """
    lowered = unicodedata.normalize("NFC", unicodedata.normalize("NFC", folder_name).lower())
    kept = "".join(ch if unicodedata.category(ch)[0] in "LNM" else " " for ch in lowered)
    return " ".join(kept.split())  # only the spaces put here are whitespace: L, N and M hold none


def legacy_label_for(folder_name: str) -> str:
    """retrain.py's own rule, as read back (stripped): only [a-z0-9] kept, so `café` gave `caf`.

    Only for matching a folder to a classifier trained before the rule took every script.
    """
    return re.sub(r"[^a-z0-9]+", " ", folder_name.lower()).strip()


@dataclass
class ImageSet:
    """Labels in the order of their sorted folder names, and the files of each."""

    root: Path
    labels: list[str]
    folders: list[str]  # the names the labels come from (folders, or a CSV's label values)
    files: dict[str, list[Path]]  # label -> files, in a stable order
    given: dict[Path, str] | None = None  # file -> split, when the data set comes split
    origin: str = ""  # how the labels and the split were found, for the console

    def all_files(self) -> list[Path]:
        """Every file, label by label (a file under two labels, twice)."""
        return [path for label in self.labels for path in self.files[label]]

    def name(self, path: Path) -> str:
        """The name a file is split and reported by: relative to the root when inside it."""
        return path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else str(path)


# Folder names of a data set that comes split (YOLO's layout, many published sets).
SPLIT_FOLDERS = {"train": "training", "training": "training", "val": "validation",
                 "valid": "validation", "validation": "validation", "test": "testing",
                 "testing": "testing"}


def discover(image_dir: Path, warn: Callable[[str], None] | None = None) -> ImageSet:
    """Read the class folders of `image_dir`; no image is decoded here.

    `image_dir/train/<class>/`, with `val/` (or `validation/`) and `test/` beside it,
    is a split given by the data set, honoured as it is.
    """
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise DatasetError(
            f"image folder {image_dir} does not exist; put photos in {image_dir}/<category>/"
        )
    folders = _folders(image_dir)
    if _given_split_layout(image_dir, folders):
        return _discover_given_split(image_dir, folders, warn)
    labels = unique_labels(folders, f"folders in {image_dir}")
    files = {label_for(f): list_files(image_dir / f, warn) for f in folders}
    return ImageSet(image_dir, labels, folders, files)


def _folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not is_hidden(p.name))


def unique_labels(names: list[str], where: str) -> list[str]:
    """The label of each name (label_for), in order; DatasetError, one line naming every name
    at fault, when a name gives no label (no letter or digit) or two names give one label:
    a labels file holds one label a line, so an empty label or a shared one is a class
    that guess could never name."""
    by_label: dict[str, list[str]] = {}
    for name in names:
        by_label.setdefault(label_for(name), []).append(name)
    problems = []
    if "" in by_label:
        problems.append(f"{_listed(by_label[''])} give{'s' if len(by_label['']) == 1 else ''} no "
                        "label (a label needs a letter or a digit)")
    for label, found in by_label.items():
        if label and len(found) > 1:
            both = "both" if len(found) == 2 else "all"
            problems.append(f"{_listed(found)} {both} give the label {label!r}{_nfd_note(found)}")
    if problems:
        raise DatasetError(f"{'; '.join(problems)} ({where}); rename them so that each gives a "
                           "label of its own")
    return [label_for(name) for name in names]


def _listed(names: list[str]) -> str:
    quoted = [repr(name) for name in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def _nfd_note(names: list[str]) -> str:
    """Two spellings of one name (NFC and NFD, as macOS writes it) look the same when printed."""
    if len({unicodedata.normalize("NFC", name) for name in names}) < len(names):
        return " (the same name written twice, composed and decomposed)"
    return ""


def _given_split_layout(image_dir: Path, folders: list[str]) -> bool:
    """train/ and val/ or test/, nothing else, each holding only folders."""
    kinds = {SPLIT_FOLDERS.get(f.lower()) for f in folders}
    if None in kinds or "training" not in kinds or len(kinds) < 2:
        return False
    return all(not any(p.is_file() and not is_hidden(p.name) for p in (image_dir / f).iterdir())
               for f in folders)


def _discover_given_split(image_dir: Path, split_folders: list[str], warn) -> ImageSet:
    classes = sorted({c for f in split_folders for c in _folders(image_dir / f)})
    labels = unique_labels(classes, f"class folders in {image_dir}")
    files: dict[str, list[Path]] = {label: [] for label in labels}
    given: dict[Path, str] = {}
    for folder in split_folders:
        for name in _folders(image_dir / folder):
            found = list_files(image_dir / folder / name, warn)
            files[label_for(name)].extend(found)
            given.update((path, SPLIT_FOLDERS[folder.lower()]) for path in found)
    for label in labels:
        files[label].sort(key=Path.as_posix)
    origin = (f"Split given by the folders {', '.join(f + '/' for f in split_folders)} of {image_dir}")
    return ImageSet(image_dir, labels, classes, files, given, origin)


def require_trainable(image_set: ImageSet, files: dict[str, list[Path]], which: str = "") -> None:
    """Raise DatasetError unless `files` (label -> files) can be trained on: 2 or more
    categories of 2 or more images each. Checked on the files found before the
    bottleneck pass, so that an untrainable set costs no extraction, and on the
    readable ones after it."""
    too_small = {label: len(found) for label, found in files.items() if len(found) < 2}
    if too_small:
        listing = ", ".join(
            f"{image_set.folders[image_set.labels.index(label)]!r} ({count})"
            for label, count in too_small.items()
        )
        raise DatasetError(
            f"each category needs at least 2 {which}images, fewer in: {listing}; "
            f"add photos to those folders of {image_set.root} or remove them"
        )
    if len(files) < 2:
        found = ", ".join(repr(f) for f in image_set.folders) or "none"
        raise DatasetError(
            f"training needs at least 2 categories (folders of images) in {image_set.root}; "
            f"found {found}"
        )


@dataclass
class Split:
    """Files of each split per label: split name -> label -> files; and what to tell the user."""

    parts: dict[str, dict[str, list[Path]]] = field(
        default_factory=lambda: {name: {} for name in SPLITS}
    )
    notes: list[str] = field(default_factory=list)  # groups too big to place, classes left out...
    labels: list[str] = field(default_factory=list)  # the image set's, in its order

    def files(self, name: str) -> tuple[list[Path], np.ndarray]:
        """The files of split `name` in label order, and each one's label index (int64)."""
        paths = [p for label in self.labels for p in self.parts[name][label]]
        truth = [index for index, label in enumerate(self.labels) for _ in self.parts[name][label]]
        return paths, np.array(truth, dtype=np.int64)

    def arrays(self, name: str, matrix: Callable[[list[Path]], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """`matrix` of split `name`'s files (one row per file, in files' order), and their truth."""
        paths, truth = self.files(name)
        return matrix(paths), truth

    def sizes(self) -> dict[str, int]:
        return {name: sum(len(f) for f in part.values()) for name, part in self.parts.items()}

    def per_class_sizes(self) -> dict[str, dict[str, int]]:
        return {name: {lab: len(f) for lab, f in part.items()} for name, part in self.parts.items()}


def split(
    image_set: ImageSet,
    readable: dict[str, list[Path]],
    testing_percentage: float,
    validation_percentage: float,
    groups: Iterable[Iterable[Path]] = (),
) -> Split:
    """Assign each readable file to a split, stably, keeping each group in one split.

    A group is photos that must not be on both sides of the split: a `_nohash_`
    family, the same content under several names or labels, near-duplicates (the
    caller's `groups`). Each group takes the split of its first member by path (by
    retrain.py's hash of that path relative to the image folder), so the rule is
    the same on every machine and after the folder is moved. A group that
    would take more than twice its split's share of a class stays in training
    (said in `notes`). Every class with at least 3 images gets at least one
    validation and one test image and keeps at least one training image, moving
    whole groups; a class whose groups are too few for that lacks a split, said
    in `notes`, rather than have a group broken up.
    """
    require_trainable(image_set, readable, "readable ")
    entries: list[Entry] = [(label, path) for label in image_set.labels
                            for path in readable.get(label, [])]
    units = grouped_units(entries, image_set.name, groups)
    result = Split(labels=list(image_set.labels))
    for name in SPLITS:
        for label in image_set.labels:
            result.parts[name][label] = []
    if image_set.given is not None:
        _follow_given(image_set, units, testing_percentage, validation_percentage, result)
    else:
        _follow_keys(image_set, units, testing_percentage, validation_percentage, readable, result)
    for part in result.parts.values():
        for files in part.values():
            files.sort(key=Path.as_posix)
    return result


def _follow_keys(image_set: ImageSet, units, testing_percentage: float, validation_percentage: float,
                 readable: dict[str, list[Path]], result: Split) -> None:
    """Each group in the band of its key, too big ones in training, then every split filled."""
    counts = {label: len(readable.get(label, [])) for label in image_set.labels}
    place, held_back = place_by_keys(units, counts, testing_percentage, validation_percentage)
    for held in held_back:
        members = units[held.unit][1]
        result.notes.append(
            f"a group of {len(members)} near-duplicate or same-named photos "
            f"({image_set.name(members[0][1])}, ...) is more than twice the {held.band} split's share of "
            f"{', '.join(held.strata)}: kept in training")
    for label, name in ensure_each_split(image_set.labels, units, place, counts):
        result.notes.append(f"{label!r} has no {name} photo: its photos form too few groups of "
                            "near-duplicate or same-named photos to be in every split")
    for index, (_, members) in enumerate(units):
        for label, path in members:
            result.parts[place[index]][label].append(path)


def _follow_given(image_set: ImageSet, units, testing_percentage: float, validation_percentage: float,
                  result: Split) -> None:
    """Each file in the split the data set gives it. A split it does not give at all is
    taken from its training photos by the usual rule, groups kept whole; files with no
    split of their own (a CSV row with an empty split) follow the usual rule. Groups
    that the given split puts on both sides are counted in `notes`: the split is the
    data set's, and so is the leak."""
    given = image_set.given or {}
    named = set(given.values())
    carved = [name for name in ("validation", "testing") if name not in named]
    if carved:
        result.notes.append(f"no {' or '.join(carved)} split given: taken from the training photos "
                            "by the usual rule")
    leaks = []
    for key, members in units:
        own = {given[path] for _, path in members if path in given}
        band = key_band(key, testing_percentage, validation_percentage)
        if len(own) > 1:
            leaks.append(members)
        for label, path in members:
            if len(own) > 1:
                name = given.get(path, "training")  # each where the data set put it
            elif not own:
                name = band  # no split of its own: the usual rule
            else:
                (name,) = own
                if name == "training" and band in carved:
                    name = band
            result.parts[name][label].append(path)
    if leaks:
        example = " ~ ".join(image_set.name(path) for _, path in leaks[0][:2])
        result.notes.append(f"{len(leaks)} group(s) of identical or near-duplicate photos are on both "
                            f"sides of the given split (e.g. {example}): its validation and test "
                            "figures flatter the classifier")
    for name in ("validation", "testing"):
        missing = [label for label in image_set.labels if not result.parts[name][label]]
        if missing and name not in carved:
            result.notes.append(f"the given {name} split has no photo of {', '.join(missing)}")

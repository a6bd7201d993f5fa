"""A folder-per-class image set: its labels and a stable train/validation/test split."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .images import is_hidden, list_files

# retrain.py's constant: the split is the sha1 of a name modulo this, as a percentage.
MAX_NUM_IMAGES_PER_CLASS = 2**27 - 1
SPLITS = ("training", "validation", "testing")


class DatasetError(Exception):
    """The image folder cannot be trained on as it is; the message says why and what to do."""


def label_for(folder_name: str) -> str:
    """retrain.py's label rule: lower-case, each run outside [a-z0-9] becomes one space."""
    return re.sub(r"[^a-z0-9]+", " ", folder_name.lower())


@dataclass
class ImageSet:
    """Labels in the order of their sorted folder names, and the files of each."""

    root: Path
    labels: list[str]
    folders: list[str]
    files: dict[str, list[Path]]  # label -> files, in a stable order


def discover(image_dir: Path, warn: Callable[[str], None] | None = None) -> ImageSet:
    """Read the class folders of `image_dir`; no image is decoded here."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise DatasetError(
            f"image folder {image_dir} does not exist; put photos in {image_dir}/<category>/"
        )
    folders = sorted(p.name for p in image_dir.iterdir() if p.is_dir() and not is_hidden(p.name))
    by_label: dict[str, str] = {}
    for folder in folders:
        label = label_for(folder)
        if label in by_label:
            raise DatasetError(
                f"folders {by_label[label]!r} and {folder!r} in {image_dir} both give the label "
                f"{label!r}; rename one of them"
            )
        by_label[label] = folder
    labels = [label_for(f) for f in folders]
    files = {label_for(f): list_files(image_dir / f, warn) for f in folders}
    return ImageSet(image_dir, labels, folders, files)


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


def split_key(relative_path: str) -> float:
    """retrain.py's percentage hash, of the path relative to the image folder.

    Anything after `_nohash_` is ignored, so `bob_nohash_1.jpg` and
    `bob_nohash_2.jpg` always land in the same split.
    """
    name = re.sub(r"_nohash_.*$", "", relative_path)
    hashed = int(hashlib.sha1(name.encode("utf-8")).hexdigest(), 16)
    return (hashed % (MAX_NUM_IMAGES_PER_CLASS + 1)) * (100.0 / MAX_NUM_IMAGES_PER_CLASS)


@dataclass
class Split:
    """Files of each split per label: split name -> label -> files."""

    parts: dict[str, dict[str, list[Path]]] = field(
        default_factory=lambda: {name: {} for name in SPLITS}
    )

    def sizes(self) -> dict[str, int]:
        return {name: sum(len(f) for f in part.values()) for name, part in self.parts.items()}

    def per_class_sizes(self) -> dict[str, dict[str, int]]:
        return {name: {lab: len(f) for lab, f in part.items()} for name, part in self.parts.items()}


def split(
    image_set: ImageSet,
    readable: dict[str, list[Path]],
    testing_percentage: float,
    validation_percentage: float,
) -> Split:
    """Assign each readable file to a split, stably.

    Every class with at least 3 images gets at least one validation and one test
    image and keeps at least one training image, however the hashes fall.
    """
    require_trainable(image_set, readable, "readable ")
    result = Split()
    for label, files in readable.items():
        keyed = sorted(
            (split_key(path.relative_to(image_set.root).as_posix()), path) for path in files
        )
        parts: dict[str, list[tuple[float, Path]]] = {name: [] for name in SPLITS}
        for key, path in keyed:
            if key < validation_percentage:
                parts["validation"].append((key, path))
            elif key < validation_percentage + testing_percentage:
                parts["testing"].append((key, path))
            else:
                parts["training"].append((key, path))
        _ensure_each_split(parts, len(files))
        for name in SPLITS:
            result.parts[name][label] = [path for _, path in sorted(parts[name], key=_by_path)]
    return result


def _by_path(item: tuple[float, Path]) -> str:
    return item[1].as_posix()


def _ensure_each_split(parts: dict[str, list[tuple[float, Path]]], total: int) -> None:
    """Move the fewest files needed so small classes are present in every split.

    Files move from the largest split, lowest hash first, so the result is as near
    the hash split as it can be. A `_nohash_` group (files sharing a key) moves
    whole when the donor keeps other files; only a class with too few groups has
    one broken up.
    """
    wanted = ("validation", "testing", "training") if total >= 3 else ("training",)
    for name in wanted:
        if parts[name]:
            continue
        donor = max((n for n in SPLITS if n != name), key=lambda n: len(parts[n]))
        parts[donor].sort()
        keys = sorted({key for key, _ in parts[donor]})
        movable = [key for key in keys if any(k != key for k, _ in parts[donor])]
        if movable:
            moving = [item for item in parts[donor] if item[0] == movable[0]]
            parts[donor] = [item for item in parts[donor] if item[0] != movable[0]]
            parts[name].extend(moving)
        else:
            parts[name].append(parts[donor].pop(0))

"""The points' split: each labelled photo in training, validation or testing, its group kept on one side.

Points have no classes, so the whole set is one stratum of grouped_split's rule, the classes'
own: a group takes the split of its first member's path (relative to the image root) by
retrain.py's hash, so the split is the same on every machine and after the folder moves; a
group over twice its split's share stays in training; with 3 photos or more every split gets
some, by moving whole groups.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tensorguess.data.grouped_split import SPLITS, Entry, ensure_each_split, place_by_keys, units
from tensorguess.data.keypoints import Instance, Keypoints

# The one stratum: every photo is counted against the whole set.
ALL_PHOTOS = "all photos"


@dataclass
class PointSplit:
    """The photos of each split (split name -> instances, by relative path), and what to tell the user."""

    parts: dict[str, list[Instance]] = field(default_factory=lambda: {name: [] for name in SPLITS})
    notes: list[str] = field(default_factory=list)  # groups kept in training, splits left empty

    def instances(self, name: str) -> list[Instance]:
        """The labelled photos of split `name` ("training", "validation" or "testing")."""
        return self.parts[name]

    def sizes(self) -> dict[str, int]:
        return {name: len(found) for name, found in self.parts.items()}


def split_points(keypoints: Keypoints, groups: Iterable[Iterable[Path]], testing_percentage: float,
                 validation_percentage: float) -> PointSplit:
    """Assign each labelled photo of `keypoints` to a split, stably, each of `groups` (photos by
    their `Instance.path`, e.g. point_groups' groups) kept whole in one split."""
    by_path = {instance.path: instance for instance in keypoints.instances}
    relative = {instance.path: instance.relative for instance in keypoints.instances}
    entries: list[Entry] = [(ALL_PHOTOS, path) for path in sorted(by_path, key=relative.__getitem__)]
    found = units(entries, relative.__getitem__, groups)
    counts = {ALL_PHOTOS: len(entries)}
    place, held_back = place_by_keys(found, counts, testing_percentage, validation_percentage)
    result = PointSplit()
    for held in held_back:
        members = found[held.unit][1]
        result.notes.append(
            f"a group of {len(members)} photos kept together ({relative[members[0][1]]}, ...) is more "
            f"than twice the {held.band} split's share of the {len(entries)} photos: kept in training")
    for _, name in ensure_each_split([ALL_PHOTOS], found, place, counts):
        result.notes.append(f"no {name} photo: the {len(entries)} photos form too few groups of "
                            "photos kept together to fill every split")
    for index, (_, members) in enumerate(found):
        result.parts[place[index]].extend(by_path[path] for _, path in members)
    for part in result.parts.values():
        part.sort(key=lambda instance: instance.relative)
    return result

"""The stable split rule that keeps groups whole, for any photos: the classes' split and the points' use it.

A photo's split comes from retrain.py's hash of its path relative to the image folder, so it
is the same on every machine and after the folder is moved. Photos that must not be on both
sides (same content, near-duplicates, a `--group_by` group, a `_nohash_` family) are joined
into units; a unit takes its first member's key. Entries carry a stratum (the classes' label;
one stratum for points): the size rules below count photos per stratum.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

# retrain.py's constant: the split is the sha1 of a name modulo this, as a percentage.
MAX_NUM_IMAGES_PER_CLASS = 2**27 - 1
SPLITS = ("training", "validation", "testing")

Entry = tuple[str, Path]  # (stratum, file): a file listed under two labels is two entries
Unit = tuple[float, list[Entry]]  # (the key of its first member, its members in path order)


def split_key(relative_path: str) -> float:
    """retrain.py's percentage hash, of the path relative to the image folder.

    Anything after `_nohash_` is ignored, so `bob_nohash_1.jpg` and
    `bob_nohash_2.jpg` always land in the same split.
    """
    name = re.sub(r"_nohash_.*$", "", relative_path)
    # The name's own bytes: UTF-8 as retrain.py hashed it, and a name that is not UTF-8 (its
    # bytes carried as lone surrogates) by the bytes the folder holds.
    hashed = int(hashlib.sha1(name.encode("utf-8", "surrogateescape")).hexdigest(), 16)
    return (hashed % (MAX_NUM_IMAGES_PER_CLASS + 1)) * (100.0 / MAX_NUM_IMAGES_PER_CLASS)


def band(key: float, testing_percentage: float, validation_percentage: float) -> str:
    """The split a key falls in: validation below its percentage, testing above it, then training."""
    if key < validation_percentage:
        return "validation"
    return "testing" if key < validation_percentage + testing_percentage else "training"


class Components:
    """Union-find over 0..count-1: which items end up joined, through any chain of joins."""

    def __init__(self, count: int):
        self.parent = list(range(count))

    def find(self, i: int) -> int:
        """The smallest-index-rooted representative of i's component (paths halved on the way)."""
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(self, indices: Iterable[int]) -> None:
        indices = list(indices)
        for other in indices[1:]:
            a, b = self.find(indices[0]), self.find(other)
            if a != b:
                self.parent[max(a, b)] = min(a, b)

    def members(self) -> list[list[int]]:
        """Each component's items, in index order, components by their first item."""
        found: dict[int, list[int]] = {}
        for i in range(len(self.parent)):
            found.setdefault(self.find(i), []).append(i)
        return list(found.values())


def units(entries: list[Entry], name: Callable[[Path], str], groups: Iterable[Iterable[Path]]) -> list[Unit]:
    """The entries joined into groups (union-find): (the group's split key, members), by key.

    `name(path)` is the path the key hashes (relative to the image folder); entries with one
    key (a `_nohash_` family) or one path (a file under two labels) are joined too.
    """
    components = Components(len(entries))
    keys = [split_key(name(path)) for _, path in entries]
    by_key: dict[float, list[int]] = {}
    by_path: dict[Path, list[int]] = {}
    for i, (_, path) in enumerate(entries):
        by_key.setdefault(keys[i], []).append(i)  # _nohash_ families share a key
        by_path.setdefault(path, []).append(i)  # one file under two labels
    for same in [*by_key.values(), *by_path.values()]:
        components.join(same)
    for group in groups:
        components.join(i for path in group for i in by_path.get(Path(path), []))
    # A group's key is its first member's by path: as uniform as one photo's key (the lowest
    # of several keys would favour the small splits), and the same wherever the folder is.
    found_units = []
    for found in components.members():
        found.sort(key=lambda i: _entry_order(entries[i]))
        found_units.append((keys[found[0]], [entries[i] for i in found]))
    found_units.sort(key=lambda unit: (unit[0], _entry_order(unit[1][0])))
    return found_units


def _entry_order(entry: Entry) -> tuple[str, str]:
    return entry[1].as_posix(), entry[0]


@dataclass
class HeldBack:
    """A unit its key put in a small split, kept in training: too big a share of these strata there."""

    unit: int  # its index in the units
    band: str  # the split its key gave
    strata: list[str]


def place_by_keys(units_found: list[Unit], counts: dict[str, int], testing_percentage: float,
                  validation_percentage: float) -> tuple[dict[int, str], list[HeldBack]]:
    """Each unit's split by its key (unit index -> split), and the units held back in training.

    A unit holding more than twice its split's share of a stratum (and more than a pair)
    stays in training: placing it there would make that split a poor sample of the stratum.
    """
    place: dict[int, str] = {}
    held_back = []
    for index, (key, members) in enumerate(units_found):
        name = band(key, testing_percentage, validation_percentage)
        if name != "training":
            share = testing_percentage if name == "testing" else validation_percentage
            too_big = [stratum for stratum, n in Counter(lab for lab, _ in members).items()
                       if n > max(2.0, 2 * counts[stratum] * share / 100)]
            if too_big:
                held_back.append(HeldBack(index, name, too_big))
                name = "training"
        place[index] = name
    return place, held_back


def ensure_each_split(strata: list[str], units_found: list[Unit], place: dict[int, str],
                      counts: dict[str, int]) -> list[tuple[str, str]]:
    """Move the fewest whole groups needed so strata of 3 or more are in every split; returns the
    (stratum, split) pairs left empty, whose groups are too few to fill every split.

    A group moves from the split that holds most of the stratum, smallest first (then
    lowest key), and
    only if that split keeps some of the stratum and of every other stratum it takes
    from there; so the result is as near the hash split as it can be. Linear in the
    number of photos: the counts are kept up to date rather than recounted.
    """
    held = {name: dict.fromkeys(strata, 0) for name in SPLITS}
    units_of: dict[str, list[int]] = {stratum: [] for stratum in strata}
    taken = [Counter(stratum for stratum, _ in members) for _, members in units_found]
    for index, per_stratum in enumerate(taken):
        for stratum, n in per_stratum.items():
            held[place[index]][stratum] += n
            units_of[stratum].append(index)
    for indices in units_of.values():
        indices.sort(key=lambda index: len(units_found[index][1]))  # stable: lowest key among equals
    missing = []
    for stratum in strata:
        wanted = ("validation", "testing", "training") if counts[stratum] >= 3 else ("training",)
        for name in wanted:
            if held[name][stratum]:
                continue
            donors = sorted((n for n in SPLITS if n != name), key=lambda n: -held[n][stratum])
            chosen = next((index for donor in donors for index in units_of[stratum]
                           if place[index] == donor
                           and all(held[donor][lab] > n for lab, n in taken[index].items())), None)
            if chosen is None:
                missing.append((stratum, name))
                continue
            for lab, n in taken[chosen].items():
                held[place[chosen]][lab] -= n
                held[name][lab] += n
            place[chosen] = name
    return missing

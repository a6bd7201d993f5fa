"""Point names and what joins them: the left/right pairs a flip swaps, and the skeleton's bones.

Pairs come from the caller (a flag), else the file, else the names: `left_ear`/`right_ear`,
`leftear`/`rightear`, `l_knee`/`r_knee`, `LeftHand`/`RightHand`, `LShoulder`/`RShoulder`,
`ear_l`/`ear_r`, `ear.L`/`ear.R`, case aside. A name is cut into words at separators
(`_ - . space`) and at camel-case steps; a word `left`/`l` or `right`/`r`, or a first or last word
starting or ending with `left`/`right`, marks a side, and two names of opposite sides that are
equal once the side is taken out make a pair. A single `l`/`r` counts only as a word of its own,
so `ring_tip` or `lower_lip` mark no side.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from tensorguess.errors import UsageError

SIDES = {"left": "left", "l": "left", "right": "right", "r": "right"}
SEPARATORS = re.compile(r"[_\-.\s]+")
# A step from a lower-case letter or digit to a capital, or from a run of capitals to a capitalised word.
CAMEL_STEP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
SIDE_MARK = "<side>"


def duplicated(names: Iterable[str]) -> list[str]:
    """The names that occur more than once, in the order of their first occurrence."""
    counts = Counter(names)
    return [name for name in dict.fromkeys(names) if counts[name] > 1]


def words(name: str) -> list[str]:
    """`name` cut at separators and camel-case steps, lower-cased: `LeftHand` -> [left, hand]."""
    return [word.lower() for part in SEPARATORS.split(name) if part
            for word in CAMEL_STEP.split(part) if word]


def side_and_rest(name: str) -> tuple[str, tuple[str, ...]] | None:
    """('left' or 'right', the name's words with the side's taken out), or None for a name of no side."""
    cut = words(name)
    marked = [index for index, word in enumerate(cut) if word in SIDES]
    if len(marked) == 1:
        index = marked[0]
        return SIDES[cut[index]], tuple(cut[:index] + [SIDE_MARK] + cut[index + 1:])
    if marked:
        return None  # `left_right_x`: no one side
    for side in ("left", "right"):  # glued to a word: `leftear`, `earright`
        if cut and cut[0].startswith(side) and len(cut[0]) > len(side):
            return side, (SIDE_MARK, cut[0][len(side):], *cut[1:])
        if cut and cut[-1].endswith(side) and len(cut[-1]) > len(side):
            return side, (*cut[:-1], cut[-1][: -len(side)], SIDE_MARK)
    return None


def pairs_from_names(names: Sequence[str]) -> list[tuple[int, int]]:
    """(left, right) index pairs of the names that differ only by their side, in the left names' order.

    A rest shared by more than one name of a side (two `left_ear`s written differently) pairs none
    of them: a guess that could swap the wrong points is worse than no pair.
    """
    by_rest: dict[tuple[str, ...], dict[str, list[int]]] = defaultdict(lambda: {"left": [], "right": []})
    for index, name in enumerate(names):
        found = side_and_rest(name)
        if found:
            side, rest = found
            by_rest[rest][side].append(index)
    pairs = [(sides["left"][0], sides["right"][0]) for sides in by_rest.values()
             if len(sides["left"]) == 1 and len(sides["right"]) == 1]
    return sorted(pairs)


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """Flag text `leftear:rightear,l_eye:r_eye` as name pairs; UsageError for text of another shape."""
    return [_two_names(item, ":", text, "pairs", "leftear:rightear,l_eye:r_eye") for item in _items(text)]


def parse_skeleton(text: str, names: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """Flag text `snout-leftear,snout-rightear` as bones (name pairs); UsageError for another shape.

    A name may hold `-` itself (`left-ear`) when `names` is given: a bone is then cut where both
    sides are names.
    """
    bones = []
    for item in _items(text):
        if names is not None and item.count("-") > 1:
            cuts = [(item[:at], item[at + 1:]) for at, char in enumerate(item)
                    if char == "-" and item[:at].strip() in names and item[at + 1:].strip() in names]
            if len(cuts) == 1:
                bones.append((cuts[0][0].strip(), cuts[0][1].strip()))
                continue
        bones.append(_two_names(item, "-", text, "skeleton", "snout-leftear,snout-rightear"))
    return bones


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _two_names(item: str, separator: str, text: str, what: str, example: str) -> tuple[str, str]:
    parts = [part.strip() for part in item.split(separator)]
    if len(parts) != 2 or not all(parts):
        raise UsageError(f"{what} {text!r}: {item!r} is not two names joined by {separator!r}; "
                         f"write them as {example}")
    return parts[0], parts[1]


def indexed_pairs(pairs: Iterable[tuple[str, str]], names: Sequence[str], what: str,
                  source: str) -> list[tuple[int, int]]:
    """Name pairs as index pairs into `names`; UsageError naming `source` for a name not among them.

    `what` is "pairs" (each point in at most one pair, never with itself) or "skeleton" (bones).
    """
    index = {name: at for at, name in enumerate(names)}
    result = []
    for first, second in pairs:
        unknown = [name for name in (first, second) if name not in index]
        if unknown:
            raise UsageError(f"{what} from {source}: {', '.join(map(repr, unknown))} is no point of the "
                             f"file (its points: {', '.join(names)})")
        if first == second:
            raise UsageError(f"{what} from {source}: {first!r} is joined to itself; name two points")
        result.append((index[first], index[second]))
    twice = twice_paired(result, names) if what == "pairs" else []
    if twice:
        raise UsageError(f"pairs from {source}: {', '.join(map(repr, twice))} is in two pairs; a point "
                         "swaps with one other at most")
    return result


def twice_paired(pairs: Sequence[tuple[int, int]], names: Sequence[str]) -> list[str]:
    """The names in more than one flip pair (a flip could not say where such a point goes)."""
    return [names[at] for at in duplicated([at for pair in pairs for at in pair])]

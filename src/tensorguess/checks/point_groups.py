"""Which labelled photos the points' split keeps on one side: same content, `--group_by`, near-duplicates.

Points have no classes, so the classes' automatic threshold (data_checks, which needs labels)
does not apply, and a fixed cosine joined pair by pair (single linkage) chains look-alikes, on
sets of one background or one video, into one group too big for any split. The rule here:
complete linkage at POINT_THRESHOLD (pairs strongest first; two groups merge only when every
photo of one is at the threshold to every photo of the other), then each photo left alone
joins the group of its closest photo at the threshold. A photo and its recompressed, resized
or brightened copy stay together, burst shots and consecutive frames form small groups, and no
chain of look-alikes becomes one group: a group is a core of mutual near-duplicates and photos
each close to that core. Measured on the shared hands and mouse by bench/point_groups.py
(docs/points.md, "The points' split").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tensorguess.data.images import printable
from tensorguess.data.keypoints import Keypoints
from tensorguess.data.photo_groups import by_pattern, same_content
from tensorguess.features.near_duplicates import STORE_NAME, find_pairs

if TYPE_CHECKING:
    from tensorguess.features.bottlenecks import Extraction

# Low enough that recompressed, doubled and brightened copies of the 100 px hands (the set where
# copies move furthest) reach their photo; what it joins beyond them, complete linkage bounds.
POINT_THRESHOLD = 0.95


@dataclass
class PointGroups:
    """The groups of photos (by Instance.path, 2 or more each) to keep whole, by where they come from."""

    threshold: float
    same_content: list[list[Path]] = field(default_factory=list)
    by_pattern: list[list[Path]] = field(default_factory=list)
    near_duplicates: list[list[Path]] = field(default_factory=list)
    pairs_apart: int = 0  # pairs at the threshold whose groups did not merge (not every photo close)
    lines: list[str] = field(default_factory=list)  # for the console, one line each

    @property
    def groups(self) -> list[list[Path]]:
        """Every group, of every kind: split_points joins the ones that share a photo."""
        return [*self.same_content, *self.by_pattern, *self.near_duplicates]


def point_groups(keypoints: Keypoints, extraction: Extraction | None, threshold: float | None = None,
                 group_by: str | None = None, cache_dir: Path | None = None,
                 warn: Callable[[str], None] = print) -> PointGroups:
    """The groups of the labelled photos: same content, `group_by`'s (a regular expression on the
    relative path; UsageError if it does not compile) and near-duplicates by the extraction's
    features at `threshold` (None: POINT_THRESHOLD), by near_duplicate_groups' rule.

    With no extraction, no near-duplicate is sought. The pair search is remembered in
    `cache_dir` (beside the bottlenecks), as the classes' is; `warn` hears why it could not be.
    """
    threshold = POINT_THRESHOLD if threshold is None else float(threshold)
    instances = sorted(keypoints.instances, key=lambda instance: instance.relative)
    relative = {instance.path: printable(instance.relative) for instance in instances}
    result = PointGroups(threshold)
    if group_by is not None:
        result.by_pattern, result.lines = by_pattern(instances, group_by)
    digests = extraction.digests if extraction is not None else None
    result.same_content = same_content(instances, digests)
    if result.same_content:
        example = " = ".join(relative[path] for path in result.same_content[0][:2])
        result.lines.append(f"Data check: {len(result.same_content)} photo(s) stored under several names "
                            f"(e.g. {example}); each kept in one split")
    if extraction is None:
        return result
    by_digest: dict[str, list[Path]] = {}  # distinct contents, in the order of their first path
    for instance in instances:
        if extraction.readable(instance.path):
            by_digest.setdefault(extraction.digests[instance.path], []).append(instance.path)
    row_digests = list(by_digest)
    matrix = extraction.features[extraction.row_of([same[0] for same in by_digest.values()])]
    store = cache_dir / STORE_NAME if cache_dir is not None else None
    pairs = find_pairs(row_digests, matrix, threshold, store, warn=warn)
    groups, result.pairs_apart = near_duplicate_groups(len(row_digests), pairs)
    result.near_duplicates = [[path for i in group for path in by_digest[row_digests[i]]] for group in groups]
    if result.near_duplicates:
        largest = max(result.near_duplicates, key=len)
        photos = sum(map(len, result.near_duplicates))
        result.lines.append(
            f"Data check: {len(result.near_duplicates)} group(s) of near-duplicate photos (cosine >= "
            f"{threshold:.3f}, complete linkage), {photos} photos, the largest {len(largest)} "
            f"({relative[largest[0]]}, ...); each kept in one split"
            + (f"; {result.pairs_apart} close pair(s) left in different groups, so that no chain of "
               "look-alikes makes one group" if result.pairs_apart else ""))
    return result


def near_duplicate_groups(count: int, pairs: list[tuple[int, int, float]]) -> tuple[list[list[int]], int]:
    """The groups (2 or more of 0..count-1, each in index order, by first index) that `pairs`
    (i, j, cosine), i < j, each given once, make by the rule: complete linkage, then each item
    left alone joins the group of its closest partner; and how many pairs stay between groups."""
    groups = complete_linkage(count, pairs)
    attach_alone(groups, pairs)
    group_of = {i: k for k, group in enumerate(groups) for i in group}
    apart = sum(1 for i, j, _ in pairs if group_of.get(i, -1 - i) != group_of.get(j, -1 - j))
    return groups, apart


def _strongest_first(pairs: list[tuple[int, int, float]]) -> list[tuple[int, int, float]]:
    # Then by index: every run, and every machine, gives the same groups.
    return sorted(pairs, key=lambda pair: (-pair[2], pair[0], pair[1]))


def complete_linkage(count: int, pairs: list[tuple[int, int, float]]) -> list[list[int]]:
    """Groups (2 or more, each in index order, by first index) in which every two items are a pair.

    Pairs are taken strongest first; two groups merge when all |A| x |B| pairs between them
    are given. The pairs between groups are counted as they merge, so each pair costs a few
    dictionary steps, not a look at every member.
    """
    group_of = list(range(count))
    members: dict[int, list[int]] = {i: [i] for i in range(count)}
    links: dict[int, dict[int, int]] = {i: {} for i in range(count)}  # group -> group -> pairs between
    for i, j, _ in pairs:
        links[i][j] = links[j][i] = 1
    for i, j, _ in _strongest_first(pairs):
        a, b = group_of[i], group_of[j]
        if a == b or links[a].get(b, 0) != len(members[a]) * len(members[b]):
            continue
        keep, gone = min(a, b), max(a, b)
        for other, n in links.pop(gone).items():
            del links[other][gone]
            if other != keep:
                links[keep][other] = links[keep].get(other, 0) + n
                links[other][keep] = links[keep][other]
        for item in members[gone]:
            group_of[item] = keep
        members[keep].extend(members.pop(gone))
    return sorted(sorted(found) for found in members.values() if len(found) > 1)


def attach_alone(groups: list[list[int]], pairs: list[tuple[int, int, float]]) -> None:
    """Each item in no group joins the group of its strongest partner, in place.

    After complete linkage an item left alone has partners only in groups of 2 or more (two
    lone partners would have merged): a copy of a photo whose look-alikes formed a group
    first. Such items join a group and never one another, so they cannot chain groups; each
    is at the threshold to at least one member of its group.
    """
    group_of = {i: k for k, group in enumerate(groups) for i in group}
    joins: dict[int, int] = {}
    for i, j, _ in _strongest_first(pairs):
        for alone, partner in ((i, j), (j, i)):
            if alone not in group_of and alone not in joins and partner in group_of:
                joins[alone] = group_of[partner]
    for alone, k in joins.items():
        groups[k].append(alone)
    for group in groups:
        group.sort()

"""Groups of labelled photos that need no features: the same content, `--group_by`'s pattern on the path.

Each group is photos that must not be on both sides of a split (point_split): a photo copied
under two names, or the frames of one video, one animal, one signer, which the user names
with a regular expression on the path relative to the image root.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

from tensorguess.data.images import content_hash, printable
from tensorguess.data.keypoints import Instance
from tensorguess.errors import UsageError

GROUP_BY_FLAG = "--group_by"


def same_content(instances: Sequence[Instance], digests: dict[Path, str] | None = None,
                 digest: Callable[[Path], str] = content_hash) -> list[list[Path]]:
    """The photos whose bytes are identical (2 or more each), by their paths.

    `digests` (content hashes by path, e.g. an extraction's) saves reading the photos again;
    a photo missing from it is hashed here. A photo that cannot be read stays alone.
    """
    by_digest: dict[str, list[Path]] = {}
    for instance in instances:
        found = (digests or {}).get(instance.path)
        if found is None:
            try:
                found = digest(instance.path)
            except OSError:
                continue
        by_digest.setdefault(found, []).append(instance.path)
    return [same for same in by_digest.values() if len(same) > 1]


def compile_group_by(pattern: str) -> re.Pattern[str]:
    """`--group_by`'s regular expression, or a UsageError naming the flag in one line."""
    try:
        return re.compile(pattern)
    except re.error as error:
        raise UsageError(f"{GROUP_BY_FLAG} {pattern!r} is not a regular expression ({error}); give one "
                         "whose match (or first group) names a photo's group, e.g. "
                         "'labeled-data/([^/]+)/' for DeepLabCut's videos") from error


def by_pattern(instances: Sequence[Instance], pattern: str | re.Pattern[str]
               ) -> tuple[list[list[Path]], list[str]]:
    """The groups `pattern` names (2 or more photos each) and the lines to say about them.

    A photo's name is the first match of `pattern` in its relative path, or that match's first
    group when the pattern has one; photos with equal names form a group. A photo it does not
    match (or whose first group takes no part in the match) is a group of its own, counted in
    one line.
    """
    compiled = compile_group_by(pattern) if isinstance(pattern, str) else pattern
    named: dict[str, list[Instance]] = {}
    unmatched: list[Instance] = []
    for instance in instances:
        match = compiled.search(instance.relative)
        name = None if match is None else match.group(1) if compiled.groups else match.group(0)
        if name is None:
            unmatched.append(instance)
        else:
            named.setdefault(name, []).append(instance)
    shown = printable(compiled.pattern)
    lines = []
    if named:
        largest = max(named.values(), key=len)
        matched = len(instances) - len(unmatched)
        lines.append(f"{GROUP_BY_FLAG} {shown}: {matched:,} photos in {len(named):,} group(s), the largest "
                     f"{len(largest):,} ({printable(largest[0].relative)}, ...); each kept in one split")
    if unmatched:
        lines.append(f"{GROUP_BY_FLAG} {shown} does not match the paths of {len(unmatched):,} of the "
                     f"{len(instances):,} photos (e.g. {printable(unmatched[0].relative)}): each is a "
                     "group of its own")
    groups = [[instance.path for instance in same] for same in named.values() if len(same) > 1]
    return groups, lines

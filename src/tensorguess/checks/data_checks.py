"""Checks of a photo set before training: duplicates across labels, near-duplicate groups.

The split keeps each group of identical or near-duplicate photos in one split
(dataset.split), so that the test accuracy is measured on photos unlike those the
model trained on. The same groups, the photos filed under two labels and the
photos whose label looks wrong are listed for the user: nothing is moved or
deleted, the checks only name paths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tensorguess.data.dataset import ImageSet
from tensorguess.data.grouped_split import Components
from tensorguess.features.near_duplicates import STORE_NAME, find_pairs
from tensorguess.head.train import TrainingDiverged

if TYPE_CHECKING:
    from tensorguess.features.bottlenecks import Extraction


@dataclass
class DataChecks:
    threshold: float
    groups: list[list[Path]] = field(default_factory=list)  # 2+ identical or near-duplicate photos
    across_labels: list[list[tuple[Path, str]]] = field(default_factory=list)  # same content, 2+ labels
    suspected_label_errors: list[dict] = field(default_factory=list)  # the most suspicious, at most
    label_errors_found: int = 0  # ...of this many flagged
    split_notes: list[str] = field(default_factory=list)

    def as_json(self, image_set: ImageSet) -> dict:
        return {
            "near_duplicate_threshold": self.threshold,
            "exact_duplicates_across_labels": [
                [{"file": image_set.name(path), "label": label} for path, label in same]
                for same in self.across_labels],
            "near_duplicate_groups": [[image_set.name(path) for path in group] for group in self.groups],
            "suspected_label_errors": self.suspected_label_errors,
            "suspected_label_errors_found": self.label_errors_found,
            "split_notes": self.split_notes,
        }

    def console_lines(self, image_set: ImageSet) -> list[str]:
        lines = []
        for same in self.across_labels:
            lines.append("Data check: the same photo under "
                         f"{len({label for _, label in same})} labels: "
                         + ", ".join(f"{image_set.name(path)} ({label})" for path, label in same))
        if self.groups:
            largest = max(self.groups, key=len)
            lines.append(
                f"Data check: {len(self.groups)} group(s) of identical or near-duplicate photos "
                f"(cosine >= {self.threshold:.3f}), {sum(map(len, self.groups))} photos, the largest "
                f"{len(largest)} ({image_set.name(largest[0])}, ...); each group is kept in one split")
        if self.suspected_label_errors:
            worst = self.suspected_label_errors[:3]
            lines.append(
                f"Data check: {self.label_errors_found} photo(s) whose label looks wrong"
                + (f" ({len(self.suspected_label_errors)} most suspicious kept)"
                   if self.label_errors_found > len(self.suspected_label_errors) else "")
                + ", most suspicious first: " + "; ".join(
                    f"{e['file']} is labelled {e['given']!r}, looks like {e['suggested']!r} "
                    f"({e['score']:.2f})" for e in worst)
                + (" ... (all in train_log.json and the report)"
                   if len(self.suspected_label_errors) > len(worst) else ""))
        return lines


def across_labels(image_set: ImageSet, readable: dict[str, list[Path]], digests: dict[Path, str]
                  ) -> list[list[tuple[Path, str]]]:
    """The same content (by hash) under two or more labels: each as [(path, label), ...]."""
    by_digest: dict[str, list[tuple[Path, str]]] = {}
    for label in image_set.labels:
        for path in readable.get(label, []):
            by_digest.setdefault(digests[path], []).append((path, label))
    found = [sorted(same, key=lambda e: (e[0].as_posix(), e[1])) for same in by_digest.values()
             if len({label for _, label in same}) > 1]
    return sorted(found, key=lambda same: same[0][0].as_posix())


# The automatic threshold (docs/benchmarks.md, "Near-duplicate threshold"): at least
# BASE_THRESHOLD, which catches 97-100% of near-copies (recompressed, cropped and resized
# back, brightened) on superheroes and flowers; raised to halve the distance at which
# photos of *different* classes typically meet (the median, over photos, of the highest
# cosine to another class's photo), since no near-copy can be told from a distinct photo
# closer than that. On sign-digits (all hands on one background: that median is 0.931)
# it becomes 0.966: 72% of near-copies caught and 0.1% of photos joined, where 0.90
# would chain 97% of them into one group.
BASE_THRESHOLD = 0.90
DISTANCE_SHARE = 0.5
SAMPLE = 256  # photos whose nearest other-class photo is sought: a stable median, ~1 s at 100k


BLOCK = 2048  # photos per product with the sample: [SAMPLE, BLOCK] floats at a time


def automatic_threshold(matrix: np.ndarray, labels: list[str], digests: list[str]) -> float:
    """max(BASE_THRESHOLD, 1 - DISTANCE_SHARE * (1 - median cosine to the nearest other-class photo)).

    `matrix[k]` is the features of a photo labelled `labels[k]` with content `digests[k]`.
    Blocked, with no normalised copy of the matrix: memory stays that of the sample.
    """
    inverse_norms = 1 / np.maximum(np.sqrt(np.einsum("ij,ij->i", matrix, matrix)), 1e-12)
    # An even, deterministic sample: the same photos give the same threshold on every machine.
    order = sorted(range(len(digests)), key=digests.__getitem__)
    sample = np.array(order[:: max(1, len(order) // SAMPLE)][:SAMPLE])
    names = {label: k for k, label in enumerate(sorted(set(labels)))}
    classes = np.array([names[label] for label in labels])
    first_of: dict[str, int] = {}
    content = np.array([first_of.setdefault(digest, len(first_of)) for digest in digests])
    unit_sample = matrix[sample] * inverse_norms[sample, None]
    nearest = np.full(len(sample), -np.inf)
    for start in range(0, len(matrix), BLOCK):
        end = min(start + BLOCK, len(matrix))
        cosines = (unit_sample @ matrix[start:end].T) * inverse_norms[None, start:end]
        other = ((classes[None, start:end] != classes[sample][:, None])
                 & (content[None, start:end] != content[sample][:, None]))
        nearest = np.maximum(nearest, np.where(other, cosines, -np.inf).max(axis=1))
    nearest = nearest[np.isfinite(nearest)]
    if not len(nearest):
        return BASE_THRESHOLD
    # float32 cosines of identical features can pass 1 by a rounding step; a cosine is at most 1.
    return min(1.0, max(BASE_THRESHOLD, 1 - DISTANCE_SHARE * (1 - float(np.median(nearest)))))


def duplicate_checks(image_set: ImageSet, readable: dict[str, list[Path]], extraction: Extraction,
                     threshold: float | None, cache_dir: Path | None,
                     warn: Callable[[str], None]) -> DataChecks:
    """Groups of photos with the same content or features at a cosine >= `threshold`
    (None: `automatic_threshold`).

    The search runs on the extraction's matrix itself (a row per distinct content), so
    it costs no copy of the features. It is remembered in `cache_dir` (beside the
    bottlenecks), so a rerun searches only the photos it has not seen.
    """
    digests = extraction.digests
    paths = sorted({path for label in image_set.labels for path in readable.get(label, [])},
                   key=Path.as_posix)
    checks = DataChecks(threshold or BASE_THRESHOLD,
                        across_labels=across_labels(image_set, readable, digests))
    if not paths:
        return checks
    components = Components(len(paths))
    by_digest: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        by_digest.setdefault(digests[path], []).append(i)
    for same in by_digest.values():
        components.join(same)  # the same content under several names
    # The rows of these photos' contents, in the order of their first path.
    rows = np.fromiter((extraction.rows[digest] for digest in by_digest), np.int64, len(by_digest))
    matrix = extraction.features
    if len(rows) != len(matrix):  # a subset of the photos extracted: only then a copy
        matrix = matrix[rows]
        rows = np.arange(len(rows))
    row_digests = [None] * len(rows)
    first_path = [0] * len(rows)
    for (digest, same), row in zip(by_digest.items(), rows.tolist(), strict=True):
        row_digests[row], first_path[row] = digest, same[0]
    if threshold is None:
        label_of = {path: label for label in reversed(image_set.labels)
                    for path in readable.get(label, [])}  # a path under two labels: its first
        checks.threshold = threshold = automatic_threshold(
            matrix, [label_of[paths[i]] for i in first_path], row_digests)
    store = cache_dir / STORE_NAME if cache_dir is not None else None
    for i, j, _ in find_pairs(row_digests, matrix, threshold, store, warn=warn):
        components.join((first_path[i], first_path[j]))
    groups = [[paths[i] for i in found] for found in components.members() if len(found) > 1]
    checks.groups = sorted(groups, key=lambda group: (-len(group), group[0].as_posix()))
    return checks


LABEL_ERRORS_KEPT = 200  # most suspicious first; the rest would be noise to read
OUT_OF_FOLD_STORE = "out_of_fold.npz"


def label_checks(image_set: ImageSet, readable: dict[str, list[Path]], extraction: Extraction,
                 extractor: str, cache_dir: Path | None,
                 warn: Callable[[str], None]) -> tuple[list[dict], int]:
    """Photos whose folder label disagrees confidently with out-of-fold predictions.

    Confident learning (label_issues.py) on a 5-fold cross-validation of the head over
    the cached bottlenecks: seconds, and stored beside them, so that an unchanged set
    and labels cost nothing on a rerun. Returns (the most suspicious, how many are flagged).
    """
    from tensorguess.checks import label_issues

    entries = [(path, k) for k, label in enumerate(image_set.labels) for path in readable.get(label, [])]
    if len(entries) < 2 * label_issues.FOLDS:
        return [], 0
    given = np.array([k for _, k in entries], np.int64)
    rows = extraction.row_of([path for path, _ in entries])
    key = label_issues.out_of_fold_key([extraction.digests[path] for path, _ in entries], given,
                                       extractor, classes=len(image_set.labels))

    def compute() -> np.ndarray:
        return label_issues.out_of_fold_probabilities(extraction.features, given, len(image_set.labels),
                                                      rows=rows)

    try:
        if cache_dir is None:
            probabilities = compute()
        else:
            probabilities, _ = label_issues.cached_out_of_fold(cache_dir / OUT_OF_FOLD_STORE, key,
                                                               compute, warn)
    except TrainingDiverged as error:  # a check, not the training: say so and go on without it
        warn(f"tensor-guess: the label check was skipped: its cross-validation {error}")
        return [], 0
    found = label_issues.suspected_label_errors([image_set.name(path) for path, _ in entries],
                                                image_set.labels, given, probabilities)
    return found[:LABEL_ERRORS_KEPT], len(found)

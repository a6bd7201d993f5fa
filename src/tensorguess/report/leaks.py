"""Photos of an evaluation set that the classifier has already seen, or near copies of them.

An accuracy measured on photos the model trained on flatters it. evaluate.sh
compares each labelled photo with the photos of DIR's training and validation
splits, as train.sh recorded them in train_log.json (their content hashes, and
their bottlenecks in DIR's cache): the same bytes are `identical`; bottlenecks at
a cosine of at least the training's near-duplicate threshold are `near-identical`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tensorguess.model_dir import TrainLog

SEEN_SPLITS = ("training", "validation")  # both shaped the model: weights, and the temperature
BLOCK = 4096  # rows of seen features per product: bounds memory whatever the training set


@dataclass
class Leaks:
    """What was checked and found: `kinds` holds one entry per labelled photo (None: no leak)."""

    kinds: list[str | None] = field(default_factory=list)
    threshold: float | None = None
    checked_features: bool = False
    note: str = ""  # why a part of the check could not be made

    def count(self, kind: str) -> int:
        return sum(1 for k in self.kinds if k == kind)

    def clean(self) -> np.ndarray:
        """bool [N]: the photos the model has not seen."""
        return np.array([kind is None for kind in self.kinds], dtype=bool)

    def summary(self, names: list[str]) -> dict:
        """report.json's `leaks` fields every kind shares (`names`: each photo's name in the report);
        each report adds its own numbers without the seen photos."""
        return {
            "identical": self.count("identical"),
            "near_identical": self.count("near-identical"),
            "threshold": self.threshold,
            "checked_features": self.checked_features,
            "note": self.note or None,
            "files": [{"file": name, "kind": kind}
                      for name, kind in zip(names, self.kinds, strict=True) if kind],
            "n_without": int(self.clean().sum()),
        }


def seen_digests(train_log: TrainLog) -> set[str]:
    """The content hashes of the photos the model trained on (SEEN_SPLITS), as train.sh logged them."""
    return {digest for name in SEEN_SPLITS for digest in train_log.split_digests.get(name, [])}


def reference_features(train_log: TrainLog, log_path: Path) -> tuple[set[str], np.ndarray | None, str]:
    """(seen content hashes, their bottlenecks [M,D] or None, why features are missing)."""
    from tensorguess.features.bottlenecks import BottleneckCache
    from tensorguess.features.modules import ModuleSpec

    seen = seen_digests(train_log)
    module = dict(train_log.module)
    cache_dir = train_log.bottleneck_dir
    if not module or not cache_dir:
        return seen, None, f"{log_path} names no module or cache"
    module["value_range"] = tuple(module.get("value_range", (0, 1)))
    try:
        cache = BottleneckCache(cache_dir, ModuleSpec(**module), warn=lambda line: None)
    except TypeError:
        return seen, None, f"{log_path} was written by another version"
    dim = cache.store.dim()
    wanted = sorted(seen)
    features = np.empty((len(wanted), dim or 0), np.float32)
    found = cache.store.read_into(wanted, features) if dim else np.zeros(len(wanted), bool)
    if not found.any():
        return seen, None, f"the bottleneck cache {cache.dir} holds none of the training photos"
    return seen, features if found.all() else features[found], ""


def content_hashes(paths: list[Path]) -> list[str | None]:
    """Each photo's content hash, None for one that cannot be read now."""
    from tensorguess.data.images import content_hash

    digests = []
    for path in paths:
        try:
            digests.append(content_hash(path))
        except OSError:
            digests.append(None)
    return digests


def find_leaks(digests: list[str | None], features: np.ndarray | None, seen: set[str],
               seen_features: np.ndarray | None, threshold: float | None) -> Leaks:
    """For each labelled photo (its content hash, its bottleneck row): identical, near-identical or None."""
    leaks = Leaks(threshold=threshold)
    leaks.kinds = ["identical" if d is not None and d in seen else None for d in digests]
    if features is None or seen_features is None or threshold is None or not len(features):
        return leaks
    leaks.checked_features = True
    best = max_cosine(features, seen_features)
    for i, value in enumerate(best):
        if leaks.kinds[i] is None and value >= threshold:
            leaks.kinds[i] = "near-identical"
    return leaks


def max_cosine(queries: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """For each query row, the highest cosine to any reference row, in blocks of the reference."""
    q = _normalised(queries)
    best = np.full(len(q), -1.0, np.float32)
    for start in range(0, len(reference), BLOCK):
        block = _normalised(reference[start:start + BLOCK])
        np.maximum(best, (q @ block.T).max(axis=1), out=best)
    return best


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)

"""The long-tail benchmark's sets: the shared photo sets' features (cached), split by group as
train.sh splits them, and training parts cut down to a long tail.

The split is the product's: dataset.split with the near-duplicate groups data_checks finds,
so no photo judged has a near-twin among those trained on. The test part is judged whole;
only the training part (and the validation part, in the same proportion) is cut down.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

import common

# The MPII tail: ten classes from 140 training photos down to 3.
SIGN_DIGITS_TAIL = (140, 90, 60, 40, 25, 16, 10, 6, 4, 3)
FLOWERS_TAIL = (140, 40, 12, 5, 3)
TESTING_PERCENTAGE, VALIDATION_PERCENTAGE = 20, 10


@dataclass
class Part:
    x: np.ndarray
    y: np.ndarray


@dataclass
class Photos:
    labels: list[str]
    training: Part
    validation: Part
    testing: Part


def features_and_split(folder: Path, cache_root: Path) -> Photos:
    """The set's features (from `cache_root`'s store where there) and its grouped split."""
    from tensorguess.checks import data_checks
    from tensorguess.data import dataset
    from tensorguess.features import modules
    from tensorguess.features.bottlenecks import BottleneckCache, extract

    spec, loaded = modules.resolve(str(common.MODULE))
    cache = BottleneckCache(cache_root, spec)
    image_set = dataset.discover(folder)
    paths = [p for label in image_set.labels for p in image_set.files[label]]
    extraction = extract(paths, spec, loaded, cache, batch_size=32, warn=lambda line: None)
    readable = {label: [p for p in image_set.files[label] if extraction.readable(p)]
                for label in image_set.labels}
    checks = data_checks.duplicate_checks(image_set, readable, extraction, None, cache.dir,
                                          lambda line: None)
    split = dataset.split(image_set, readable, TESTING_PERCENTAGE, VALIDATION_PERCENTAGE,
                          groups=checks.groups)
    parts = [Part(*split.arrays(name, extraction.matrix)) for name in ("training", "validation", "testing")]
    return Photos(list(image_set.labels), *parts)


def long_tail(photos: Photos, counts: tuple[int, ...], seed: int = 0) -> Photos:
    """The first len(counts) classes, class k's training part cut to counts[k] photos (at random,
    at most what it has) and its validation part in the same proportion (at least one photo)."""
    rng = np.random.default_rng(seed)
    classes = len(counts)

    def cut(part: Part, keep) -> Part:
        rows = []
        for k in range(classes):
            members = np.flatnonzero(part.y == k)
            rows.append(np.sort(rng.choice(members, min(keep(k, len(members)), len(members)), replace=False)))
        rows = np.concatenate(rows)
        return Part(part.x[rows], part.y[rows])

    training_sizes = np.bincount(photos.training.y, minlength=classes)[:classes]
    training = cut(photos.training, lambda k, n: counts[k])
    validation = cut(photos.validation,
                     lambda k, n: max(1, round(n * counts[k] / max(training_sizes[k], 1))))
    keep = photos.testing.y < classes
    return Photos(photos.labels[:classes], training, validation,
                  Part(photos.testing.x[keep], photos.testing.y[keep]))

"""Class imbalance: the warning a user needs, and how the head is kept from drowning small classes.

Three ways, chosen by --class_weights (docs/long-tails.md measures them):
- adjusted (the default): batches drawn uniformly over the training images, so each photo
  counts once, as it is; then post-hoc logit adjustment (Menon et al. 2021, "Long-tail
  learning via logit adjustment"): each class's logit is lowered by TAU x log(its share of
  the training photos), which turns a classifier of the training set's priors into one for
  equal priors. The offsets go into the layer's biases, so the exported graph decides
  exactly as validated.
- none: retrain.py's class-uniform batches (a class at random, then one of its photos):
  a class of 3 photos is drawn as often as one of 140, its 3 photos memorised.
- balanced: batches drawn uniformly, each photo's loss weighted by inverse class frequency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Above this ratio of largest to smallest class, accuracy alone says little.
IMBALANCE_RATIO = 10
CLASS_WEIGHTS = ("adjusted", "none", "balanced")
# "adjusted" adjusts only where the largest class has more than this many times the smallest's
# training photos (balance()).
ADJUST_ABOVE = 2
# The logit adjustment's strength. TAU = 1 is Bayes-optimal for a perfectly calibrated
# classifier; a head trained on few photos is over-confident on its big classes, and 1.5
# gave the better macro F1 on 5 of bench/longtail.py's 6 long tails (docs/long-tails.md);
# on balanced sets the offsets are all but equal and change nothing.
TAU = 1.5


def imbalance_warning(counts: dict[str, int], class_weights: str) -> str | None:
    """One line when the largest class has more than IMBALANCE_RATIO times the smallest's images."""
    if not counts:
        return None
    largest = max(counts, key=lambda label: counts[label])
    smallest = min(counts, key=lambda label: counts[label])
    if counts[largest] <= IMBALANCE_RATIO * max(counts[smallest], 0):
        return None
    remedy = {
        "adjusted": "each class's score is adjusted for its share of the training photos "
                    "(--class_weights balanced weights the loss instead)",
        "none": "batches are drawn class-uniformly; --class_weights balanced weights the loss instead",
        "balanced": "the loss is weighted by inverse class frequency",
    }[class_weights]
    return (
        f"tensor-guess: warning: imbalanced classes: {largest!r} has {counts[largest]} images, "
        f"{smallest!r} {counts[smallest]} ({counts[largest] / max(counts[smallest], 1):.0f}x); "
        f"{remedy}. Judge the classifier by per-class recall and macro F1 in the report, "
        "not accuracy alone"
    )


# Fewer photos than this in a class is "a handful": with the default 10% test and 10%
# validation shares the split gives it one test photo, so its test recall is 0 or 1 (the 95%
# Wilson interval of 1 right out of 1 is 0.21-1), and the head learns it from 8 or fewer.
SMALL_CLASS_PHOTOS = 10


def small_class_warning(counts: dict[str, int]) -> str | None:
    """One line naming the classes with fewer than SMALL_CLASS_PHOTOS photos, and what it means."""
    small = sorted((label for label in counts if counts[label] < SMALL_CLASS_PHOTOS),
                   key=lambda label: (counts[label], label))
    if not small:
        return None
    listed = ", ".join(f"{label!r} has {counts[label]}" for label in small)
    return (f"tensor-guess: warning: few photos: {listed} (under {SMALL_CLASS_PHOTOS}): "
            f"{'it is' if len(small) == 1 else 'each is'} learned from a handful and judged on one "
            "or two test photos, so its figures cannot be judged; more photos of "
            f"{'it' if len(small) == 1 else 'them'} would help both")


def balanced_weights(train_labels: np.ndarray, classes: int) -> np.ndarray:
    """scikit-learn's "balanced": n_images / (n_classes * n_images_of_the_class), per class."""
    counts = np.bincount(np.asarray(train_labels, np.int64), minlength=classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def logit_offsets(train_labels: np.ndarray, classes: int, tau: float = TAU) -> np.ndarray:
    """-tau x log(prior) of each class, centred on the classes present (a constant added to
    every logit changes no score); 0 for a class with no training photo (nothing to adjust)."""
    counts = np.bincount(np.asarray(train_labels, np.int64), minlength=classes).astype(np.float64)
    present = counts > 0
    offsets = np.zeros(classes)
    offsets[present] = -tau * np.log(counts[present] / counts.sum())
    offsets[present] -= offsets[present].mean()
    return offsets


@dataclass(frozen=True)
class Balance:
    """What the head's training takes for --class_weights: its loss weights (None: class-uniform
    batches) and its decision's offsets (None: none)."""

    weights: np.ndarray | None
    offsets: np.ndarray | None


def balance(class_weights: str, train_labels: np.ndarray, classes: int, tau: float = TAU) -> Balance:
    """The Balance of --class_weights. "adjusted" on a set whose largest class has at most
    ADJUST_ABOVE times the smallest's training photos keeps retrain.py's class-uniform batches:
    there the offsets are all but equal, and on flowers (1.4x) drawing over the images cost a
    point of accuracy (docs/long-tails.md), so a near-balanced set trains exactly as before."""
    if class_weights == "balanced":
        return Balance(balanced_weights(train_labels, classes), None)
    counts = np.bincount(np.asarray(train_labels, np.int64), minlength=classes)
    present = counts[counts > 0]
    if class_weights == "adjusted" and len(present) and present.max() > ADJUST_ABOVE * present.min():
        return Balance(np.ones(classes), logit_offsets(train_labels, classes, tau))
    return Balance(None, None)

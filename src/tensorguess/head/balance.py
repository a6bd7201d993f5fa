"""Class imbalance: the warning a user needs, and the loss weights --class_weights balanced uses."""

from __future__ import annotations

import numpy as np

# Above this ratio of largest to smallest class, accuracy alone says little.
IMBALANCE_RATIO = 10


def imbalance_warning(counts: dict[str, int], class_weights: str) -> str | None:
    """One line when the largest class has more than IMBALANCE_RATIO times the smallest's images."""
    if not counts:
        return None
    largest = max(counts, key=lambda label: counts[label])
    smallest = min(counts, key=lambda label: counts[label])
    if counts[largest] <= IMBALANCE_RATIO * max(counts[smallest], 0):
        return None
    remedy = ("batches are drawn class-uniformly; --class_weights balanced weights the loss instead"
              if class_weights == "none" else "the loss is weighted by inverse class frequency")
    return (
        f"tensor-guess: warning: imbalanced classes: {largest!r} has {counts[largest]} images, "
        f"{smallest!r} {counts[smallest]} ({counts[largest] / max(counts[smallest], 1):.0f}x); "
        f"{remedy}. Judge the classifier by per-class recall and macro F1 in the report, "
        "not accuracy alone"
    )


def balanced_weights(train_labels: np.ndarray, classes: int) -> np.ndarray:
    """scikit-learn's "balanced": n_images / (n_classes * n_images_of_the_class), per class."""
    counts = np.bincount(np.asarray(train_labels, np.int64), minlength=classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights

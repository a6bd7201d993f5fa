"""Stratified k-fold: the folds the label check's out-of-fold scores and --recipe_mode auto's
cross-validation share (one rule, so both split a class the same way)."""

from __future__ import annotations

import numpy as np


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold (0..folds-1) of each photo: each class shuffled by `seed` and dealt round the
    folds, continuing from where the previous class stopped, so folds differ by one photo at most."""
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    start = 0
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        members = members[rng.permutation(len(members))]
        fold[members] = (start + np.arange(len(members))) % folds
        start += len(members)
    return fold

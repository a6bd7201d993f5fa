"""Suspected label errors: photos whose folder disagrees confidently with out-of-fold predictions.

The method is confident learning (Northcutt, Jiang and Chuang, JAIR 2021), computed
exactly as cleanlab 2.x's `filter.find_label_issues` does by default
(`filter_by="prune_by_noise_rate"`, calibrated confident joint, ranked by
self-confidence). It is written out here in numpy rather than imported, because
cleanlab pulls scikit-learn and pandas into the image; the tests check that our
ranking equals cleanlab's on the same predicted probabilities.

Its input is out-of-fold probabilities: the head is trained k times on the cached
bottlenecks, each time on k-1 folds, and predicts the fold it did not see, so no
photo is scored by a head that learned its (possibly wrong) label. They take
seconds and are kept on disk, keyed by the photos' contents and labels, so an
unchanged set costs nothing on a rerun.

    probabilities, _ = cached_out_of_fold(store, out_of_fold_key(digests, given, module_identity),
                                          lambda: out_of_fold_probabilities(features, given, classes))
    errors = suspected_label_errors(files, labels, given, probabilities, limit=100)
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tensorguess.atomic_write import write_atomically
from tensorguess.head.folds import stratified_folds  # shared with --recipe_mode auto

# The head of each fold: head.train.train_head (class-uniform batches, softmax by SGD)
# on features centred and scaled to a mean squared norm of 1, so that one learning rate
# suits any extractor. Each photo of a batch then moves its own logits by about
# LEARNING_RATE / BATCH = 3 per step: a short, sharp fit, which ranks wrong labels better
# than a well calibrated head, while not so sharp that the scores saturate at 1.0 and the
# ranking falls to ties. The trials that chose these values (steps, learning rate, folds,
# other heads): docs/benchmarks.md, section 12, "Suspected label errors".
STEPS = 500
LEARNING_RATE = 300.0
BATCH = 100
FOLDS = 5
# In the cache key: scores are read back only for the head that made them (the name is a key,
# kept so that scores cached before stay found).
HEAD = f"train_final_layer/centred-unit-rms-as-read/steps={STEPS}/lr={LEARNING_RATE:g}/batch={BATCH}"

# cleanlab's constants (cleanlab/internal/constants.py), so that comparisons agree exactly.
_FLOATING_POINT_COMPARISON = 1e-6
_THRESHOLD_LOWER_BOUND = 2 * _FLOATING_POINT_COMPARISON
_TINY = 1e-100
_ABSENT_THRESHOLD = 2.0  # above any probability: nothing is confidently counted into an absent class


# ---- confident learning, as cleanlab does it


def confident_thresholds(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """Per class k: the mean predicted probability of k over the photos labelled k (its self-confidence)."""
    labels = np.asarray(labels)
    present = set(np.unique(labels).tolist())
    thresholds = [np.mean(pred_probs[:, k][labels == k]) if k in present else _ABSENT_THRESHOLD
                  for k in range(pred_probs.shape[1])]
    return np.clip(thresholds, a_min=_THRESHOLD_LOWER_BOUND, a_max=None)


def confident_joint(labels: np.ndarray, pred_probs: np.ndarray, calibrate: bool = True) -> np.ndarray:
    """[K, K] counts: row = given label, column = the label a photo confidently belongs to.

    A photo counts towards the class whose probability reaches that class's threshold;
    when several do, towards its most probable class; when none does, not at all.
    Calibrated, the rows sum to the photos given each label and the whole to N.
    """
    labels = np.asarray(labels)
    classes = pred_probs.shape[1]
    reaching = pred_probs >= confident_thresholds(labels, pred_probs) - 1e-6
    count = reaching.sum(axis=1)
    guess = np.where(count > 1, pred_probs.argmax(axis=1), reaching.argmax(axis=1))
    confident = count > 0
    counts = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(counts, (guess[confident], labels[confident]), 1)
    # Transposed, as cleanlab's (a confusion matrix's .T): the float sums below then add up in
    # the same order, and a count rounds the same way when it falls at .5.
    joint = counts.T
    np.fill_diagonal(joint, joint.diagonal().clip(min=1))
    if not calibrate:
        return joint
    given = np.bincount(labels, minlength=classes)
    scaled = (joint.T / np.clip(joint.sum(axis=1), a_min=_TINY, a_max=None) * given).T
    scaled = scaled / np.clip(np.sum(scaled), a_min=_TINY, a_max=None) * given.sum()
    return _round_rows(scaled)


def _round_preserving_sum(values: np.ndarray) -> np.ndarray:
    """Round to integers keeping the (rounded) total: cleanlab's round_preserving_sum."""
    floats = np.asarray(values, dtype=float)
    ints = floats.round()
    target = np.sum(floats).round()
    total = np.sum(ints).round()
    while abs(total - target) > _FLOATING_POINT_COMPARISON:
        diff = np.round(target - total)
        step = -1 if diff < 0 else 1
        changes = min(int(abs(diff)), len(values))
        for i in np.argsort(floats - ints)[::-step][:changes]:
            ints[i] += step
        total = np.sum(ints).round()
    return ints.astype(int)


def _round_rows(matrix: np.ndarray) -> np.ndarray:
    return np.apply_along_axis(_round_preserving_sum, 1, matrix).astype(int)


def _prune_counts(joint: np.ndarray, keep: int = 1) -> np.ndarray:
    """How many photos to flag per (true label, given label): the joint's transpose, with at
    least `keep` photos left in each class (cleanlab's _keep_at_least_n_per_class, frac_noise 1)."""
    matrix = joint.T
    diagonal = np.diagonal(matrix)
    raised = np.maximum(diagonal, keep)
    spread = np.maximum(np.count_nonzero(matrix, axis=0) - 1.0, 1.0)
    adjusted = matrix - (raised - diagonal) / spread
    adjusted[adjusted < 0] = 0
    np.fill_diagonal(adjusted, raised)
    return _round_rows(adjusted.astype(int)).astype(int)


def find_label_issues(labels: Sequence[int] | np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """Indices of the photos whose given label is likely wrong, the least likely right first.

    The same indices in the same order as cleanlab's
    `filter.find_label_issues(labels, pred_probs, return_indices_ranked_by="self_confidence")`:
    for each given label k and other label j, the calibrated confident joint says how
    many photos labelled k are really j; that many photos labelled k with the largest
    p(j) - p(k) are flagged (prune by noise rate), except where k is still the most
    probable label; the flagged are ranked by p(k), their self-confidence, lowest first.
    """
    labels = np.asarray(labels, dtype=np.int64)
    pred_probs = np.asarray(pred_probs)
    if pred_probs.ndim != 2 or len(pred_probs) != len(labels):
        raise ValueError(f"pred_probs must be [N, classes] for N = {len(labels)} labels, "
                         f"not {pred_probs.shape}")
    classes = pred_probs.shape[1]
    prune = _prune_counts(confident_joint(labels, pred_probs))
    flagged = np.zeros(len(labels), dtype=bool)
    for k in range(classes):
        members = np.flatnonzero(labels == k)
        if len(members) <= 1:
            continue  # cleanlab leaves a class of one photo alone (min_examples_per_class)
        mask = np.zeros(len(members), dtype=bool)
        for j in range(classes):
            if j != k and prune[j, k] > 0:
                margin = pred_probs[members, j] - pred_probs[members, k]
                mask[np.argsort(-margin)[:prune[j, k]]] = True
        flagged[members] = mask
    # A photo whose given label is (within rounding) its most probable one is never flagged.
    nudged = pred_probs.copy()
    nudged[np.arange(len(labels)), labels] += _FLOATING_POINT_COMPARISON
    flagged[nudged.argmax(axis=1) == labels] = False
    issues = np.flatnonzero(flagged)
    self_confidence = pred_probs[np.arange(len(labels)), labels]
    return issues[np.argsort(self_confidence[issues])]


def suspected_label_errors(files: Sequence[str], labels: Sequence[str], given: Sequence[int] | np.ndarray,
                           pred_probs: np.ndarray, limit: int | None = None) -> list[dict]:
    """The photos find_label_issues flags, most suspicious first, as report entries.

    Each is {"file", "given", "suggested", "score"}: `files[i]` as given, the label names
    of the folder it is in and of the label the out-of-fold head prefers (its most
    probable one, never the given one for a flagged photo), and `score`, the probability
    of the suggested label after temperature scaling. The order is confident learning's
    (the given label least likely first); the score says how sure the suggestion is.
    `limit` keeps the first ones only.

    The temperature is fitted to all the photos' given labels (calibration.fit_temperature
    on log pred_probs, which are the logits less a constant per row): the sharp head that
    ranks best gives nearly every suspect 1.000, which says nothing.
    """
    from tensorguess.head.calibration import fit_temperature
    from tensorguess.metrics import softmax

    given = np.asarray(given, dtype=np.int64)
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    if not len(files) == len(given) == len(pred_probs):
        raise ValueError(f"{len(files)} files, {len(given)} labels and {len(pred_probs)} score rows "
                         "must be as many")
    ranked = find_label_issues(given, pred_probs)[:limit]
    if not len(ranked):
        return []
    logits = np.log(np.maximum(pred_probs, 1e-300))
    scores = softmax(logits / fit_temperature(logits, given))
    suggested = pred_probs.argmax(axis=1)
    return [{"file": files[i], "given": labels[given[i]], "suggested": labels[suggested[i]],
             "score": round(float(scores[i, suggested[i]]), 6)} for i in ranked.tolist()]


# ---- the out-of-fold probabilities


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, classes: int, folds: int = FOLDS,
                              seed: int = 0, steps: int = STEPS, learning_rate: float = LEARNING_RATE,
                              batch_size: int = BATCH, rows: np.ndarray | None = None) -> np.ndarray:
    """[N, classes] float64: each photo's scores from a head trained on the other folds only.

    Photo k's features are `features[rows[k]]` (`rows` None: `features[k]`), so the
    caller's one matrix serves without a copy per photo. Stratified k-fold over
    `labels` (the given ones); deterministic for a seed. A class with fewer photos
    than folds is missing from some training folds; its photos are then scored by
    heads that never saw the class, and look suspicious, as they should when a label
    has so little support.
    """
    features = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.arange(len(features)) if rows is None else np.asarray(rows, dtype=np.int64)
    if features.ndim != 2 or len(rows) != len(labels):
        raise ValueError(f"features must be [N, D] for N = {len(labels)} labels, not {features.shape}")
    if folds < 2:
        raise ValueError(f"out-of-fold scores need at least 2 folds, not {folds}")
    fold = stratified_folds(labels, folds, seed)
    probabilities = np.zeros((len(labels), classes), dtype=np.float64)
    # Each fold traces the head's training step anew, by design; TensorFlow's warning
    # about retracing would only alarm whoever reads the console.
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        for held_out in range(folds):
            _fit_fold(features, rows, labels, classes, fold == held_out, steps, learning_rate, batch_size,
                      seed + held_out, probabilities)
    finally:
        tf_logger.setLevel(level)
    return probabilities


CHUNK = 1024  # rows read at a time: float64 work in [CHUNK, D], never [N, D]


def _fit_fold(features: np.ndarray, rows: np.ndarray, labels: np.ndarray, classes: int, test: np.ndarray,
              steps: int, learning_rate: float, batch_size: int, seed: int,
              probabilities: np.ndarray) -> None:
    """Train on the photos outside `test` and write the scores of those in it into `probabilities`.

    No fold is ever copied out of `features`: the head reads its training rows from the
    caller's matrix through an index and standardises each batch as it reads it (at
    100,000 photos a fold's standardised copy, and TensorFlow's copy of that, were the
    peak of a cold run), and the held-out fold is scored a chunk at a time.
    """
    from tensorguess.head.train import Rows, Schedule, train_head
    from tensorguess.metrics import softmax

    train = ~test
    if not test.any() or not train.any():
        return
    train_rows, test_at = rows[train], np.flatnonzero(test)
    mean = sum(features[train_rows[start:start + CHUNK]].sum(axis=0, dtype=np.float64)
               for start in range(0, len(train_rows), CHUNK)) / len(train_rows)
    squares = sum(float(np.sum((features[train_rows[start:start + CHUNK]] - mean) ** 2))
                  for start in range(0, len(train_rows), CHUNK))
    scale = np.sqrt(squares / len(train_rows)) or 1.0
    # No validation set: nothing would use its figures, and at 100k photos it and its copy
    # cost 160 MB at the check's peak.
    nothing = np.zeros((0, features.shape[1]), np.float32)
    schedule = Schedule(steps, learning_rate, batch_size, -1, steps, seed)
    layer, _ = train_head(Rows(features, labels[train], train_rows, standardise=(mean, scale)),
                          Rows(nothing, labels[:0]), classes, schedule)
    for start in range(0, len(test_at), CHUNK):
        at = test_at[start:start + CHUNK]
        standardised = ((features[rows[at]] - mean) / scale).astype(np.float32)
        probabilities[at] = softmax(layer.logits(standardised).astype(np.float64))


# ---- the cache


def out_of_fold_key(content_digests: Sequence[str], given: Sequence[int] | np.ndarray, extractor: str,
                    folds: int = FOLDS, seed: int = 0, classes: int | None = None) -> str:
    """sha256 naming what out-of-fold scores depend on: the photos' contents in order, their given
    labels, the feature extractor's identity, the folds, the seed, the number of classes
    (where a class may have no photo) and the head's settings."""
    about = {"head": HEAD, "extractor": extractor, "folds": int(folds), "seed": int(seed),
             "classes": classes, "contents": list(content_digests),
             "given": [int(label) for label in given]}
    return hashlib.sha256(json.dumps(about, separators=(",", ":")).encode()).hexdigest()


def cached_out_of_fold(path: Path, key: str, compute: Callable[[], np.ndarray],
                       warn: Callable[[str], None] = lambda line: print(line, file=sys.stderr)
                       ) -> tuple[np.ndarray, bool]:
    """The scores stored at `path` (an .npz) if stored under `key`, else compute() stored there.

    Returns (scores, whether they came from the file). One file holds one set: scores
    for other photos or labels replace it. Plain arrays, never pickles; written to a
    temporary file and renamed, so a killed run leaves the old file or the new one. A
    file that cannot be read is recomputed; one that cannot be written is one warning.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["key"]) == key:
                scores = stored["probabilities"]
                if scores.ndim == 2 and np.all(np.isfinite(scores)):
                    return scores.astype(np.float64), True
    except (OSError, ValueError, KeyError, EOFError):
        pass  # absent, or damaged outside our control: compute it again
    scores = np.asarray(compute(), dtype=np.float64)
    buffer = io.BytesIO()
    np.savez(buffer, key=np.array(key), probabilities=scores)
    try:
        write_atomically(path, buffer.getvalue())
    except OSError as error:
        warn(f"tensor-guess: cannot store out-of-fold scores in {path} ({error.strerror or error}): "
             "they are computed again next time")
    return scores, False

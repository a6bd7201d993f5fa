"""Classification and calibration metrics from true labels and score vectors, in plain numpy.

Conventions follow scikit-learn's so the numbers can be checked against it:
precision or recall of a class with nothing to divide by is 0, and the macro
and weighted averages run over the classes that occur in the truth or in the
predictions (a class the classifier knows but that neither appears nor is
predicted does not drag the macro F1 down). Top-k accuracy is scikit-learn's
top_k_accuracy_score, except that tied scores rank the lower class index first, as
argmax does, so that top-1 accuracy is the accuracy.
"""

from __future__ import annotations

import numpy as np

ECE_BINS = 15
TOP_K = 5  # the report's top-k accuracy; only meaningful with more classes than that
# A class with fewer test photos than this cannot be judged: even all of them right, its
# recall's 95% Wilson interval reaches below 0.72 (at 9 photos, 0.70; at 3, 0.44), and one
# photo more or less moves its recall by more than a tenth.
JUDGE_MIN_PHOTOS = 10
WILSON_Z = 1.959964  # the normal quantile of a 95% two-sided interval


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """[classes, classes] counts; rows are the true class, columns the predicted one."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(truth, np.int64), np.asarray(predicted, np.int64)), 1)
    return matrix


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros_like(numerator, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def per_class(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """precision, recall, f1 and support of each class from a confusion matrix."""
    hits = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    support = matrix.sum(axis=1)
    precision = _divide(hits, predicted)
    recall = _divide(hits, support.astype(np.float64))
    f1 = _divide(2 * precision * recall, precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def top_k_accuracy(probabilities: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Share of images whose true label is among their k highest scores (nan for no image).

    A label's rank is the number of labels scored higher, plus those scored the same
    with a lower index: the order a stable descending sort gives, without sorting.
    """
    probabilities = np.asarray(probabilities, np.float64)
    truth = np.asarray(truth, np.int64)
    if not len(truth):
        return float("nan")
    own = probabilities[np.arange(len(truth)), truth][:, None]
    before = np.arange(probabilities.shape[1])[None, :] < truth[:, None]
    rank = np.sum((probabilities > own) | ((probabilities == own) & before), axis=1)
    return float(np.mean(rank < k))


def never_predicted(matrix: np.ndarray) -> np.ndarray:
    """Indices of the classes present in the truth that no image was predicted as."""
    return np.flatnonzero((matrix.sum(axis=1) > 0) & (matrix.sum(axis=0) == 0))


def expected_calibration_error(probabilities: np.ndarray, truth: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """ECE (Guo et al. 2017): the top score against the hit rate, in equal-width bins.

    Sum over bins of (share of images in the bin) x |accuracy - mean top score|.
    """
    confidence, correct = _confidence_and_correct(probabilities, truth)
    if not len(confidence):
        return float("nan")
    table = reliability_table(confidence, correct, bins)
    return float(np.sum(table["count"] / len(confidence) * np.abs(table["accuracy"] - table["confidence"])))


def reliability_table(confidence: np.ndarray, correct: np.ndarray,
                      bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Per bin (lower, upper]: count, accuracy and mean confidence (0 where empty)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds (edges[i], edges[i+1]]; a score of exactly 0 goes in the first bin.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins).astype(np.float64)
    hits = np.bincount(index, weights=correct.astype(np.float64), minlength=bins)
    total = np.bincount(index, weights=confidence, minlength=bins)
    return {"lower": edges[:-1], "upper": edges[1:], "count": count,
            "accuracy": _divide(hits, count), "confidence": _divide(total, count)}


def _confidence_and_correct(probabilities: np.ndarray, truth: np.ndarray):
    probabilities = np.asarray(probabilities, np.float64)
    if not len(probabilities):
        return np.zeros(0), np.zeros(0, bool)
    return probabilities.max(axis=1), probabilities.argmax(axis=1) == np.asarray(truth)


def brier_score(probabilities: np.ndarray, truth: np.ndarray) -> float:
    """Brier's original multi-class score: mean squared distance to the one-hot truth (0 to 2)."""
    probabilities = np.asarray(probabilities, np.float64)
    if not len(probabilities):
        return float("nan")
    onehot = np.eye(probabilities.shape[1])[np.asarray(truth, np.int64)]
    return float(np.mean(np.sum((probabilities - onehot) ** 2, axis=1)))


def negative_log_likelihood(probabilities: np.ndarray, truth: np.ndarray) -> float:
    probabilities = np.asarray(probabilities, np.float64)
    if not len(probabilities):
        return float("nan")
    picked = probabilities[np.arange(len(truth)), np.asarray(truth, np.int64)]
    return float(-np.mean(np.log(np.maximum(picked, 1e-300))))


def wilson_interval(successes: int, n: int, z: float = WILSON_Z) -> tuple[float, float] | None:
    """Wilson's score interval of a proportion (Wilson 1927): (low, high), None when n is 0.

    Unlike the normal approximation p +- z sqrt(p(1-p)/n), it stays inside [0, 1] and is not
    of width 0 when every photo is right or every one wrong, which is what a small class shows.
    """
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def recall_intervals(matrix: np.ndarray, labels: list[str]) -> dict[str, dict]:
    """Each class's recall with its 95% Wilson interval (None without a test photo of it)."""
    hits, support = np.diag(matrix), matrix.sum(axis=1)
    intervals = {}
    for i, label in enumerate(labels):
        interval = wilson_interval(int(hits[i]), int(support[i]))
        intervals[label] = {"support": int(support[i]), "hits": int(hits[i]),
                            "low": None if interval is None else interval[0],
                            "high": None if interval is None else interval[1]}
    return intervals


def summary(probabilities: np.ndarray, truth: np.ndarray, labels: list[str]) -> dict:
    """The report's numbers: n, accuracy, top-5 accuracy, macro and weighted F1, per class,
    confusion, the classes never predicted, ECE, Brier.

    `top5_accuracy` is None with 5 classes or fewer, where it is 1 whatever the scores.
    """
    probabilities = np.asarray(probabilities, np.float64).reshape(-1, len(labels))
    truth = np.asarray(truth, np.int64)
    predicted = probabilities.argmax(axis=1) if len(truth) else truth
    matrix = confusion_matrix(truth, predicted, len(labels))
    classes = per_class(matrix)
    n = int(len(truth))
    seen = (classes["support"] > 0) | (matrix.sum(axis=0) > 0)
    f1_seen = classes["f1"][seen]

    def number(value: float) -> float | None:
        return None if n == 0 or not np.isfinite(value) else float(value)

    return {
        "n": n,
        "accuracy": number(np.trace(matrix) / n if n else np.nan),
        "top5_accuracy": number(top_k_accuracy(probabilities, truth, TOP_K))
        if len(labels) > TOP_K else None,
        "macro_f1": number(f1_seen.mean() if len(f1_seen) else np.nan),
        "weighted_f1": number(np.sum(classes["f1"] * classes["support"]) / n if n else np.nan),
        "per_class": {
            label: {"precision": float(classes["precision"][i]), "recall": float(classes["recall"][i]),
                    "f1": float(classes["f1"][i]), "support": int(classes["support"][i])}
            for i, label in enumerate(labels)
        },
        "confusion_matrix": {"labels": list(labels), "matrix": matrix.tolist()},
        # A class present but never guessed: the failure a single accuracy hides best.
        "never_predicted": [labels[i] for i in never_predicted(matrix)],
        # How far each recall can be trusted, and the classes too thin in these photos to judge.
        "recall_intervals": recall_intervals(matrix, labels),
        "too_few_to_judge": [label for i, label in enumerate(labels)
                             if classes["support"][i] < JUDGE_MIN_PHOTOS],
        "ece": number(expected_calibration_error(probabilities, truth)),
        "brier": number(brier_score(probabilities, truth)),
    }

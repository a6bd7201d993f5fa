"""report.json's content, from an Evaluation."""

from __future__ import annotations

import time

import numpy as np

from tensorguess import metrics
from tensorguess.report.model import GENERATOR, Evaluation


def build(evaluation: Evaluation) -> dict:
    """The content of report.json."""
    probabilities = np.asarray(evaluation.probabilities, np.float64).reshape(-1, len(evaluation.labels))
    truth = np.asarray(evaluation.truth, np.int64)
    numbers = metrics.summary(probabilities, truth, evaluation.labels)
    predicted = probabilities.argmax(axis=1) if len(truth) else truth
    wrong = [
        {"file": evaluation.name(path), "true": evaluation.labels[t], "predicted": evaluation.labels[p],
         "score": round(float(probabilities[i, p]), 6)}
        for i, (path, t, p) in enumerate(zip(evaluation.paths, truth, predicted, strict=True)) if t != p
    ]
    wrong.sort(key=lambda item: -item["score"])  # the most confident mistakes first
    return {
        "generator": GENERATOR,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": evaluation.source,
        "images": str(evaluation.root),
        "classifier": evaluation.classifier,
        **numbers,
        "calibration": _calibration(evaluation, numbers),
        "misclassified": wrong,
        "unreadable_files": [{"file": evaluation.name(s.path), "reason": s.reason}
                             for s in evaluation.unreadable],
        **({"leaks": _leaks(evaluation, probabilities, truth)} if evaluation.leaks is not None else {}),
    }


def _leaks(evaluation: Evaluation, probabilities: np.ndarray, truth: np.ndarray) -> dict:
    """The images the classifier has seen (or near copies), and the accuracy without them."""
    found = evaluation.leaks
    clean = found.clean()
    predicted = probabilities.argmax(axis=1) if len(truth) else truth
    return {
        **found.summary([evaluation.name(path) for path in evaluation.paths]),
        "accuracy_without": float(np.mean(predicted[clean] == truth[clean])) if clean.any() else None,
    }


def _calibration(evaluation: Evaluation, numbers: dict) -> dict | None:
    if evaluation.temperature is None:
        return None  # a graph from another tool: its temperature, if any, is unknown
    before = evaluation.uncalibrated if evaluation.uncalibrated is not None else evaluation.probabilities
    n = len(evaluation.truth)
    return {
        "temperature": evaluation.temperature,
        "ece_before": metrics.expected_calibration_error(before, evaluation.truth) if n else None,
        "ece_after": numbers["ece"],
        "brier_before": metrics.brier_score(before, evaluation.truth) if n else None,
        "brier_after": numbers["brier"],
        **({"fit": evaluation.calibration_fit} if evaluation.calibration_fit else {}),
    }

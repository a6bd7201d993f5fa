"""The record a points report is written from: photos read by a points model, and their numbers.

train.sh makes one for its test split (train_points.test) and evaluate.sh for a labelled set
(report/points_evaluate.py); both take its numbers from `tested`, so the two reports count alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tensorguess import point_metrics


@dataclass
class Tested:
    """Photos read as the exported model reads them: predicted and labelled points, in photo pixels,
    every array in the model's point order."""

    predicted: np.ndarray  # [N, K, 2]
    confidence: np.ndarray  # [N, K]
    truth: np.ndarray  # [N, K, 2]
    visible: np.ndarray  # [N, K]
    boxes: np.ndarray  # [N, 4] the crop the points stage read
    truth_boxes: np.ndarray  # [N, 4] the crop the labelled points give
    paths: list[Path]
    names: list[str]
    summary: dict


def record(predicted: np.ndarray, confidence: np.ndarray, truth: np.ndarray, visible: np.ndarray,
           boxes: np.ndarray, truth_boxes: np.ndarray, paths: list[Path], names: list[str],
           located: bool) -> Tested:
    """The record with its summary: point_metrics.summary, `n`, and for a model with a locate stage
    (`located`) `locate_iou`, the mean IoU of the box it read with the labelled points' box."""
    found = point_metrics.summary(predicted, truth, visible, names)
    if located:
        ious = [point_metrics.box_iou(a, b) for a, b in zip(boxes, truth_boxes, strict=True)]
        found["locate_iou"] = float(np.mean(ious)) if ious else None
    found["n"] = len(paths)
    return Tested(predicted, confidence, truth, visible, boxes, truth_boxes, list(paths), list(names), found)

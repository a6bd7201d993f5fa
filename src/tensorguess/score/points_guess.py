"""guess's words for a points model's answer on one photo: its text lines and its JSON fields.

Both give the same numbers, in the photo's own pixels (x right, y down, from the photo's top-left
corner, as it stands upright by its EXIF orientation):
- the box as x, y, width, height (COCO's bbox order): the square the points were read in, which
  is the locate stage's crop, or, for a one-stage model, the photo's own square, centred (so it
  reaches past a photo that is not square);
- the photo's score: the mean of its points' scores;
- each point's name, x, y and score (the softmax mass near the heatmap's peak, 0 to 1).
A head that gives no score (direct regression) has none: `-` in the text, null in the JSON.
"""

from __future__ import annotations

import math

import numpy as np

from tensorguess.score.points import PointsResult, PointsScorer

NO_SCORE = "-"  # the text's score where the model gives none


def box_xywh(result: PointsResult) -> list[float]:
    """The scorer's box (x0, y0, x1, y1) as x, y, width, height."""
    x0, y0, x1, y1 = (float(v) for v in result.box)
    return [x0, y0, x1 - x0, y1 - y0]


def photo_score(result: PointsResult) -> float | None:
    """The mean of the points' scores; None when the model gives none."""
    scores = np.asarray(result.confidence, np.float64)
    scores = scores[np.isfinite(scores)]
    return float(scores.mean()) if scores.size else None


def _score(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _score_text(value: float | None) -> str:
    return NO_SCORE if value is None else f"{value:.2f}"


def lines(result: PointsResult, names: list[str]) -> list[str]:
    """`box X Y W H SCORE`, then `NAME X Y SCORE` a point in the model's order (a name may hold
    spaces: the last three fields are the numbers)."""
    x, y, width, height = box_xywh(result)
    head = f"box {x:.1f} {y:.1f} {width:.1f} {height:.1f} {_score_text(photo_score(result))}"
    return [head, *(f"{name} {px:.1f} {py:.1f} {_score_text(_score(score))}"
                    for name, (px, py), score in zip(names, result.points, result.confidence, strict=True))]


def document(result: PointsResult, names: list[str]) -> dict:
    """guess --json's fields for one photo (guess adds "image" before them): "box" [x, y, w, h],
    "score", and "keypoints", a {"name", "x", "y", "score"} a point in the model's order."""
    return {"box": box_xywh(result), "score": photo_score(result),
            "keypoints": [{"name": name, "x": float(x), "y": float(y), "score": _score(score)}
                          for name, (x, y), score in zip(names, result.points, result.confidence,
                                                         strict=True)]}


def guess_lines(scorer: PointsScorer, result: PointsResult) -> list[str]:
    return lines(result, scorer.names)


def guess_document(scorer: PointsScorer, result: PointsResult) -> dict:
    return document(result, scorer.names)

"""Keypoint metrics in plain numpy: errors in pixels and in box sides, PCK, its area, per point, box IoU.

Only labelled points count: every function takes `visible` [N,K] (COCO's v > 0) and a point
not labelled is left out of every sum and every count, never scored at (0,0).

An error is normalised by its instance's side: the longer side of the extent of that instance's
visible ground-truth points (COCO's bbox, with no margin). One visible point, or points that
coincide, span nothing: such an instance, and any whose points span less than the floor, is
measured against the floor, FLOOR_SHARE of the median side of the instances with at least two
visible points in the same call (1 px when none has two). Half the typical side rather than the
typical side itself: a guess at an unknown scale should count errors larger, not flatter them.

PCK at t is the share of counted points whose normalised error is at most t. The area under the
PCK curve is taken exactly, not on a grid: over thresholds 0..AUC_UP_TO and normalised to 1, it
is the mean over the counted points of max(0, 1 - error / AUC_UP_TO), since each point adds
PCK's step from its error up to AUC_UP_TO.
"""

from __future__ import annotations

import numpy as np

PCK_THRESHOLDS = (0.05, 0.1, 0.2)
PER_POINT_PCK = 0.1
AUC_UP_TO = 0.2
FLOOR_SHARE = 0.5
NO_SCALE_PX = 1.0  # the floor when no instance has two visible points: errors stay in pixels


def threshold_key(threshold: float) -> str:
    return f"{threshold:g}"


def masks(truth: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """truth as float64 [N,K,2] and visible as bool [N,K], checked to agree in shape."""
    truth = np.asarray(truth, np.float64)
    visible = np.asarray(visible).astype(bool)
    if truth.ndim != 3 or truth.shape[2] != 2 or visible.shape != truth.shape[:2]:
        raise ValueError(f"points must be [N,K,2] and visibility [N,K]: got {truth.shape} and "
                         f"{visible.shape}")
    return truth, visible


def pixel_errors(predicted: np.ndarray, truth: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Euclidean distance of each point, [N,K]; nan where the point is not labelled."""
    truth, visible = masks(truth, visible)
    distance = np.linalg.norm(np.asarray(predicted, np.float64) - truth, axis=2)
    return np.where(visible, distance, np.nan)


def extents(truth: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """The longer side of the box of each instance's visible points, [N]; 0 for fewer than two."""
    truth, visible = masks(truth, visible)
    low = np.where(visible[..., None], truth, np.inf).min(axis=1)
    high = np.where(visible[..., None], truth, -np.inf).max(axis=1)
    side = (high - low).max(axis=1)
    return np.where(visible.sum(axis=1) >= 2, side, 0.0)


def floor_side(truth: np.ndarray, visible: np.ndarray) -> float:
    """FLOOR_SHARE of the median side of the instances with two or more visible points."""
    _, visible = masks(truth, visible)
    spanned = extents(truth, visible)[visible.sum(axis=1) >= 2]
    spanned = spanned[spanned > 0]
    return FLOOR_SHARE * float(np.median(spanned)) if len(spanned) else NO_SCALE_PX


def instance_sides(truth: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Each instance's side for normalising its errors, [N]: its extent, at least the floor."""
    return np.maximum(extents(truth, visible), floor_side(truth, visible))


def pck(normalised: np.ndarray, threshold: float) -> float | None:
    """Share of the counted (non-nan) normalised errors at most `threshold`; None with none."""
    counted = normalised[~np.isnan(normalised)]
    return float(np.mean(counted <= threshold)) if len(counted) else None


def pck_auc(normalised: np.ndarray, up_to: float = AUC_UP_TO) -> float | None:
    """The area under PCK(t) for t in 0..up_to, divided by up_to: exact, see the module's text."""
    counted = normalised[~np.isnan(normalised)]
    return float(np.mean(np.maximum(0.0, 1.0 - counted / up_to))) if len(counted) else None


def box_iou(a, b) -> float:
    """Intersection over union of two boxes [x0, y0, x1, y1]; 0 when both have no area."""
    ax0, ay0, ax1, ay1 = (float(v) for v in a)
    bx0, by0, bx1, by1 = (float(v) for v in b)
    width = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    height = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = width * height
    union = max(0.0, ax1 - ax0) * max(0.0, ay1 - ay0) + max(0.0, bx1 - bx0) * max(0.0, by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def _mean(values: np.ndarray) -> float | None:
    counted = values[~np.isnan(values)]
    return float(np.mean(counted)) if len(counted) else None


def summary(predicted: np.ndarray, truth: np.ndarray, visible: np.ndarray, names: list[str],
            sides: np.ndarray | None = None) -> dict:
    """The report's numbers. Points in pixels of the photo, [N,K,2]; `visible` [N,K]; `sides`,
    each instance's normalising side, defaults to `instance_sides`. A number with no labelled
    point to count is None."""
    truth, visible = masks(truth, visible)
    if len(names) != truth.shape[1]:
        raise ValueError(f"{len(names)} names for {truth.shape[1]} points")
    errors = pixel_errors(predicted, truth, visible)
    sides = instance_sides(truth, visible) if sides is None else np.asarray(sides, np.float64)
    normalised = errors / sides[:, None]
    per_point = {}
    for k, name in enumerate(names):
        column, column_norm = errors[:, k], normalised[:, k]
        per_point[name] = {"mean_error_px": _mean(column), "mean_error_norm": _mean(column_norm),
                           "pck": {threshold_key(PER_POINT_PCK): pck(column_norm, PER_POINT_PCK)},
                           "points_counted": int(visible[:, k].sum())}
    return {
        "mean_error_px": _mean(errors),
        "mean_error_norm": _mean(normalised),
        "pck": {threshold_key(t): pck(normalised, t) for t in PCK_THRESHOLDS},
        "auc": pck_auc(normalised),
        "per_point": per_point,
        "points_counted": int(visible.sum()),
    }


def hardest(per_point: dict) -> list[str]:
    """The point names by mean normalised error, worst first; never-labelled points last."""
    return sorted(per_point, key=lambda name: -np.inf if per_point[name]["mean_error_norm"] is None
                  else per_point[name]["mean_error_norm"], reverse=True)

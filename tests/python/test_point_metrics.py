"""Keypoint metrics on small examples computed by hand, masked points and a one-point instance included."""

from __future__ import annotations

import numpy as np
import pytest

from tensorguess import point_metrics

NAMES = ["a", "b", "c", "never"]
# Instance 0: three labelled points spanning 10 x 20 (side 20). Instance 1: one labelled point
# (side 0: the floor, half the median side of the others, 10). "never" is labelled nowhere.
TRUTH = np.array([[[0, 0], [10, 0], [0, 20], [5, 5]],
                  [[50, 50], [0, 0], [0, 0], [0, 0]]], float)
VISIBLE = np.array([[1, 1, 1, 0],
                    [1, 0, 0, 0]], bool)
PREDICTED = np.array([[[3, 4], [10, 1], [0, 20], [90, 90]],  # errors 5, 1, 0 px
                      [[52, 50], [0, 0], [0, 0], [0, 0]]], float)  # error 2 px


def test_the_summary_by_hand():
    result = point_metrics.summary(PREDICTED, TRUTH, VISIBLE, NAMES)
    # Pixel errors 5, 1, 0, 2; normalised 5/20, 1/20, 0/20, 2/10.
    assert result["points_counted"] == 4
    assert result["mean_error_px"] == pytest.approx(2.0)
    assert result["mean_error_norm"] == pytest.approx((0.25 + 0.05 + 0 + 0.2) / 4)
    assert result["pck"] == {"0.05": 0.5, "0.1": 0.5, "0.2": 0.75}
    # max(0, 1 - e/0.2) for 0.25, 0.05, 0, 0.2: 0, 0.75, 1, 0.
    assert result["auc"] == pytest.approx(1.75 / 4)
    assert result["per_point"]["a"] == {"mean_error_px": pytest.approx(3.5),
                                        "mean_error_norm": pytest.approx(0.225),
                                        "pck": {"0.1": 0.0}, "points_counted": 2}
    assert result["per_point"]["b"] == {"mean_error_px": 1.0, "mean_error_norm": 0.05,
                                        "pck": {"0.1": 1.0}, "points_counted": 1}
    assert result["per_point"]["never"] == {"mean_error_px": None, "mean_error_norm": None,
                                            "pck": {"0.1": None}, "points_counted": 0}
    assert point_metrics.hardest(result["per_point"]) == ["a", "b", "c", "never"]


def test_points_not_labelled_count_for_nothing():
    moved = PREDICTED.copy()
    moved[~VISIBLE] = [1000, -1000]  # wherever the unlabelled points are predicted
    truth = TRUTH.copy()
    truth[~VISIBLE] = [-7, 3]  # and wherever their (meaningless) coordinates lie
    assert point_metrics.summary(moved, truth, VISIBLE, NAMES) == point_metrics.summary(
        PREDICTED, TRUTH, VISIBLE, NAMES)


def test_sides_and_their_floor():
    assert point_metrics.extents(TRUTH, VISIBLE).tolist() == [20.0, 0.0]
    assert point_metrics.instance_sides(TRUTH, VISIBLE).tolist() == [20.0, 10.0]
    # An instance whose points span less than the floor is measured against the floor too.
    close = np.array([[[0, 0], [40, 0]], [[0, 0], [60, 0]], [[5, 5], [6, 5]]], float)
    assert point_metrics.instance_sides(close, np.ones((3, 2), bool)).tolist() == [40.0, 60.0, 20.0]
    # No instance with two labelled points: errors are normalised by 1 px, i.e. stay in pixels.
    alone = point_metrics.summary(PREDICTED[1:], TRUTH[1:], VISIBLE[1:], NAMES)
    assert alone["mean_error_norm"] == alone["mean_error_px"] == 2.0
    # The caller's own sides (a photo's box, say) replace them.
    given = point_metrics.summary(PREDICTED, TRUTH, VISIBLE, NAMES, sides=np.array([100.0, 4.0]))
    assert given["mean_error_norm"] == pytest.approx((0.05 + 0.01 + 0 + 0.5) / 4)


def test_the_area_is_the_pck_curves():
    rng = np.random.default_rng(3)
    normalised = np.concatenate([rng.uniform(0, 0.3, 200), [np.nan] * 5])
    grid = np.linspace(0, point_metrics.AUC_UP_TO, 20001)
    curve = [point_metrics.pck(normalised, t) for t in grid]
    area = np.trapezoid(curve, grid) / point_metrics.AUC_UP_TO
    assert point_metrics.pck_auc(normalised) == pytest.approx(area, abs=1e-4)
    assert point_metrics.pck_auc(np.array([np.nan])) is None


@pytest.mark.parametrize(("a", "b", "iou"), [
    ([0, 0, 2, 2], [1, 1, 3, 3], 1 / 7),
    ([0, 0, 2, 2], [0, 0, 2, 2], 1.0),
    ([0, 0, 1, 1], [2, 2, 3, 3], 0.0),
    ([0, 0, 4, 2], [1, 0, 3, 2], 0.5),
    ([1, 1, 1, 1], [1, 1, 1, 1], 0.0),  # no area: nothing to overlap
])
def test_box_iou(a, b, iou):
    assert point_metrics.box_iou(a, b) == pytest.approx(iou)
    assert point_metrics.box_iou(b, a) == pytest.approx(iou)


def test_shapes_that_disagree_are_refused():
    with pytest.raises(ValueError, match=r"\[N,K,2\]"):
        point_metrics.summary(PREDICTED, TRUTH, VISIBLE[:, :3], NAMES)

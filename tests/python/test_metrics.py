"""Metrics, calibration and imbalance helpers on synthetic numbers, checked against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, classification_report, log_loss, top_k_accuracy_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.utils.class_weight import compute_class_weight

from tensorguess import metrics
from tensorguess.head.balance import balanced_weights, imbalance_warning, logit_offsets, small_class_warning
from tensorguess.head.calibration import AUTO_MIN_VALIDATION, calibrate, fit_temperature, scaled_nll
from tensorguess.report.evaluate import undo_temperature


def random_scores(rng, n: int, classes: int, sharpness: float = 3.0) -> np.ndarray:
    return metrics.softmax(rng.normal(size=(n, classes)) * sharpness)


def assert_matches_scikit_learn(summary: dict, truth, predicted, labels) -> None:
    """Our report numbers against classification_report and confusion_matrix on the same predictions."""
    names = list(range(len(labels)))
    expected = sk_confusion_matrix(truth, predicted, labels=names)
    assert summary["confusion_matrix"]["matrix"] == expected.tolist()
    assert summary["confusion_matrix"]["labels"] == list(labels)
    report = classification_report(truth, predicted, output_dict=True, zero_division=0)
    for key, row in report.items():
        if not isinstance(row, dict) or key in ("macro avg", "weighted avg"):
            continue
        ours = summary["per_class"][labels[int(key)]]
        for name in ("precision", "recall", "f1-score"):
            assert ours[name.replace("-score", "")] == pytest.approx(row[name], abs=1e-12), (key, name)
        assert ours["support"] == row["support"]
    assert summary["accuracy"] == pytest.approx(report["accuracy"] if "accuracy" in report
                                                else np.mean(np.asarray(truth) == predicted))
    assert summary["macro_f1"] == pytest.approx(report["macro avg"]["f1-score"], abs=1e-12)
    assert summary["weighted_f1"] == pytest.approx(report["weighted avg"]["f1-score"], abs=1e-12)
    assert summary["n"] == len(truth) == sum(row["support"] for row in summary["per_class"].values())


@pytest.mark.parametrize("seed", range(5))
def test_metrics_agree_with_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    labels = ["cat", "dog", "never predicted", "absent", "bird"]
    truth = rng.choice([0, 1, 2, 4], size=300, p=[0.6, 0.3, 0.05, 0.05])
    scores = random_scores(rng, 300, 5)
    scores[:, 2] = 0.0  # a class the classifier never picks
    scores /= scores.sum(axis=1, keepdims=True)
    summary = metrics.summary(scores, truth, labels)
    assert_matches_scikit_learn(summary, truth, scores.argmax(axis=1), labels)
    assert summary["per_class"]["absent"]["support"] == 0
    assert summary["brier"] == pytest.approx(
        brier_score_loss(truth, scores, labels=list(range(5)), scale_by_half=False))
    positive = random_scores(rng, 300, 5)
    assert metrics.negative_log_likelihood(positive, truth) == pytest.approx(
        log_loss(truth, positive, labels=list(range(5))))


@pytest.mark.parametrize("seed", range(6))
def test_top_k_accuracy_agrees_with_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    classes = int(rng.integers(3, 25))
    truth = rng.integers(0, classes, 400)
    scores = random_scores(rng, 400, classes, sharpness=rng.uniform(0.5, 4))
    scores[np.arange(400), truth] += rng.uniform(0, 0.3, 400)  # better than chance
    for k in range(1, classes):
        expected = top_k_accuracy_score(truth, scores, k=k, labels=list(range(classes)))
        assert metrics.top_k_accuracy(scores, truth, k) == pytest.approx(expected, abs=1e-12), k
    assert metrics.top_k_accuracy(scores, truth, 1) == pytest.approx(np.mean(scores.argmax(axis=1) == truth))
    summary = metrics.summary(scores, truth, [f"c{i}" for i in range(classes)])
    if classes > 5:
        assert summary["top5_accuracy"] == pytest.approx(
            top_k_accuracy_score(truth, scores, k=5, labels=list(range(classes))))
    else:
        assert summary["top5_accuracy"] is None  # 1 whatever the scores: meaningless


def test_tied_scores_rank_as_argmax_does_so_top_1_is_the_accuracy():
    scores = np.full((4, 6), 1 / 6)
    truth = np.array([0, 1, 5, 0])
    assert metrics.top_k_accuracy(scores, truth, 1) == 0.5  # argmax picks class 0 on a tie
    assert metrics.top_k_accuracy(scores, truth, 5) == 0.75  # class 5 ranks last
    assert metrics.summary(scores, truth, list("abcdef"))["accuracy"] == 0.5
    assert np.isnan(metrics.top_k_accuracy(np.zeros((0, 6)), np.zeros(0, np.int64), 5))


def test_one_class_predicted_for_everything_is_named():
    """The MPII project's failure: 20 classes, one guessed for nearly every image."""
    rng = np.random.default_rng(4)
    labels = [f"pose {i}" for i in range(20)]
    truth = np.arange(400) % 20
    scores = random_scores(rng, 400, 20, sharpness=0.1)
    scores[:, 3] += 1.0  # class 3 wins almost everywhere
    scores[truth == 7, 7] += 2.0  # class 7 is still found
    scores /= scores.sum(axis=1, keepdims=True)
    summary = metrics.summary(scores, truth, labels)
    predicted = set(scores.argmax(axis=1).tolist())
    assert predicted == {3, 7}
    assert summary["never_predicted"] == [label for i, label in enumerate(labels) if i not in predicted]
    assert summary["top5_accuracy"] > summary["accuracy"]
    absent = metrics.summary(scores[truth != 5], truth[truth != 5], labels)
    assert "pose 5" not in absent["never_predicted"]  # never predicted, but not present either


def test_ece_of_a_perfectly_calibrated_case_is_zero():
    # In each bin, exactly the share of images the top score promises are right.
    classes, per_bin = 10, 1000
    scores, truth = [], []
    for center in (np.arange(2, metrics.ECE_BINS) + 0.5) / metrics.ECE_BINS:
        row = np.full(classes, (1 - center) / (classes - 1))
        row[0] = center
        right = round(center * per_bin)
        scores += [row] * per_bin
        truth += [0] * right + [1] * (per_bin - right)
    ece = metrics.expected_calibration_error(np.array(scores), np.array(truth))
    assert ece == pytest.approx(0, abs=5e-4)


def test_ece_of_sampled_calibrated_scores_is_near_zero_and_of_overconfident_ones_is_the_gap():
    rng = np.random.default_rng(3)
    confidence = rng.uniform(0.5, 1.0, 100_000)
    correct = rng.uniform(size=confidence.size) < confidence
    scores = np.stack([confidence, 1 - confidence], axis=1)
    truth = np.where(correct, 0, 1)
    assert metrics.expected_calibration_error(scores, truth) < 0.01
    overconfident = np.tile([0.9, 0.1], (1000, 1))
    half_right = np.array([0, 1] * 500)
    assert metrics.expected_calibration_error(overconfident, half_right) == pytest.approx(0.4)


def test_an_empty_evaluation_has_no_numbers_and_does_not_fail():
    summary = metrics.summary(np.zeros((0, 3)), np.zeros(0, np.int64), ["a", "b", "c"])
    assert summary["n"] == 0 and summary["accuracy"] is None and summary["ece"] is None
    assert summary["never_predicted"] == [] and summary["top5_accuracy"] is None
    many = metrics.summary(np.zeros((0, 8)), np.zeros(0, np.int64), list("abcdefgh"))
    assert many["top5_accuracy"] is None
    assert summary["confusion_matrix"]["matrix"] == [[0] * 3] * 3


def test_temperature_fit_finds_the_true_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5000, 6)) * 4
    truth_temperature = 2.5
    truth = np.array([rng.choice(6, p=p) for p in metrics.softmax(logits / truth_temperature)])
    assert fit_temperature(logits, truth) == pytest.approx(truth_temperature, rel=0.1)


@pytest.mark.parametrize("seed", range(20))
def test_temperature_scaling_never_raises_the_validation_nll(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 200))
    logits = rng.normal(size=(n, 4)) * rng.uniform(0.1, 30)
    truth = logits.argmax(axis=1) if seed % 3 == 0 else rng.integers(0, 4, n)  # some all-right sets
    for mode in ("auto", "on"):
        result = calibrate(logits, truth, mode)
        assert scaled_nll(logits, truth, result.temperature) <= scaled_nll(logits, truth, 1.0) + 1e-12
        if result.applied:
            assert result.nll_after <= result.nll_before


def test_calibration_modes():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(100, 3)) * 10
    # Overconfident 5x, not random: with random labels the best T is past the search's bound,
    # and a T at the bound is never kept.
    truth = np.array([rng.choice(3, p=p) for p in metrics.softmax(logits / 5)])
    auto = calibrate(logits, truth, "auto")
    assert auto.applied and auto.temperature > 1 and auto.ece_after < auto.ece_before
    assert calibrate(logits, truth, "off").temperature == 1.0
    few = calibrate(logits[: AUTO_MIN_VALIDATION - 1], truth[: AUTO_MIN_VALIDATION - 1], "auto")
    assert not few.applied and "too few" in few.reason
    assert calibrate(logits[:5], truth[:5], "on").applied
    assert not calibrate(logits[:0], truth[:0], "on").applied


def test_undoing_the_temperature_recovers_the_raw_scores():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(50, 5)) * 5
    for temperature in (0.5, 1.7):
        calibrated = metrics.softmax(logits / temperature).astype(np.float32)
        assert np.allclose(undo_temperature(calibrated, temperature), metrics.softmax(logits), atol=1e-5)


def test_balanced_weights_are_scikit_learns():
    labels = np.array([0] * 50 + [1] * 5 + [2] * 20)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    assert np.allclose(balanced_weights(labels, 3), expected)


def test_imbalance_warning_above_ten_times():
    assert imbalance_warning({"a": 100, "b": 10}, "none") is None
    line = imbalance_warning({"a": 101, "b": 10, "c": 50}, "none")
    assert line.startswith("tensor-guess: warning: imbalanced classes: 'a' has 101 images, 'b' 10")
    assert "--class_weights balanced" in line


def test_wilson_interval_matches_the_hand_computed_values():
    # 8 of 10: p = 0.8, z^2 = 3.8415: centre (0.8 + 0.19207) / 1.38415 = 0.71673, half-width
    # 1.96 sqrt(0.016 + 0.0096037) / 1.38415 = 0.22657 (Wilson 1927; Newcombe 1998's table: 0.490-0.943)
    assert metrics.wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert metrics.wilson_interval(1, 1) == pytest.approx((1 / (1 + 1.959964 ** 2), 1.0))  # 0.2065-1
    assert metrics.wilson_interval(0, 1) == pytest.approx((0.0, 1 - 1 / (1 + 1.959964 ** 2)))
    assert metrics.wilson_interval(0, 0) is None


def test_the_report_names_the_classes_too_thin_to_judge():
    truth = np.array([0] * 12 + [1] * 3 + [2] * 10)
    predicted = np.array([0] * 12 + [1, 0, 0] + [2] * 8 + [0, 0])
    summary = metrics.summary(np.eye(3)[predicted], truth, ["big", "tiny", "ten"])
    assert summary["too_few_to_judge"] == ["tiny"]
    assert summary["recall_intervals"]["ten"]["low"] == pytest.approx(0.4902, abs=1e-4)
    assert summary["recall_intervals"]["tiny"] == {
        "support": 3, "hits": 1, **dict(zip(("low", "high"), metrics.wilson_interval(1, 3), strict=True))}


def test_small_class_warning_names_the_classes_under_a_handful():
    assert small_class_warning({"a": 10, "b": 200}) is None
    line = small_class_warning({"a": 4, "b": 200, "c": 9, "d": 3})
    assert line.startswith("tensor-guess: warning: few photos: 'd' has 3, 'a' has 4, 'c' has 9 (under 10): ")
    assert "cannot be judged" in line and "more photos of them" in line


def test_logit_offsets_lower_the_big_classes_by_tau_log_prior():
    offsets = logit_offsets(np.array([0] * 80 + [1] * 20), 3, tau=1.5)
    assert offsets[1] - offsets[0] == pytest.approx(1.5 * np.log(4))
    assert offsets[2] == 0  # no training photo: nothing to adjust


def test_adjusted_keeps_class_uniform_batches_on_a_near_balanced_set():
    from tensorguess.head.balance import balance

    near = balance("adjusted", np.array([0] * 20 + [1] * 12), 2)
    assert near.weights is None and near.offsets is None  # exactly retrain.py's head
    tail = balance("adjusted", np.array([0] * 21 + [1] * 10), 2)
    assert np.all(tail.weights == 1) and tail.offsets[1] > tail.offsets[0]

"""Temperature scaling (Guo et al. 2017): one number T so that softmax(logits / T) means probability.

T is fitted on the validation split by minimising its negative log-likelihood. Dividing
every logit by the same T > 0 never changes which class wins, so accuracy is untouched;
only how sure the scores say the classifier is changes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from tensorguess.metrics import expected_calibration_error, negative_log_likelihood, softmax

# Search range of T: beyond it the validation set is too small or too clean to say anything.
T_MIN, T_MAX = 0.05, 20.0
# --calibrate auto fits T only on a validation split at least this large: on a handful of
# images that are all right, NLL keeps falling as T -> 0 and the scores would become
# overconfident, which is the opposite of the point.
AUTO_MIN_VALIDATION = 20
# ...and keeps it only when it lowers the validation NLL by more than this (nats per image).
AUTO_MIN_GAIN = 1e-4


@dataclass
class Calibration:
    temperature: float  # 1.0 when not applied
    applied: bool
    reason: str  # why it was or was not applied, for the console and the log
    validation_n: int
    nll_before: float | None = None
    nll_after: float | None = None
    ece_before: float | None = None
    ece_after: float | None = None

    def as_json(self) -> dict:
        return asdict(self)


def scaled_nll(logits: np.ndarray, truth: np.ndarray, temperature: float) -> float:
    return negative_log_likelihood(softmax(np.asarray(logits, np.float64) / temperature), truth)


def fit_temperature(logits: np.ndarray, truth: np.ndarray, iterations: int = 80) -> float:
    """The T in [T_MIN, T_MAX] with the lowest NLL of softmax(logits / T), and never worse than 1.

    The NLL is convex in 1/T, hence unimodal in log T: a golden-section search finds it.
    """
    logits = np.asarray(logits, np.float64)
    truth = np.asarray(truth, np.int64)

    def loss(log_t: float) -> float:
        return scaled_nll(logits, truth, math.exp(log_t))

    low, high = math.log(T_MIN), math.log(T_MAX)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    for _ in range(iterations):
        if loss_a <= loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    best = math.exp((low + high) / 2)
    # Rounding can only make the search end a hair away from the optimum; T = 1 is the baseline.
    return best if loss(math.log(best)) <= scaled_nll(logits, truth, 1.0) else 1.0


def at_bound(temperature: float) -> bool:
    """Whether a fitted T ended at an end of the search range (within 0.5%)."""
    return abs(math.log(temperature / T_MIN)) < 5e-3 or abs(math.log(temperature / T_MAX)) < 5e-3


def calibrate(logits: np.ndarray, truth: np.ndarray, mode: str = "auto") -> Calibration:
    """Decide the temperature for `mode`: "auto", "on" or "off"."""
    logits = np.asarray(logits, np.float64)
    truth = np.asarray(truth, np.int64)
    n = int(len(truth))
    if mode == "off":
        return Calibration(1.0, False, "off (--calibrate off)", n)
    if n == 0:
        return Calibration(1.0, False, "skipped: the validation split is empty", n)
    if mode == "auto" and n < AUTO_MIN_VALIDATION:
        return Calibration(
            1.0, False, f"skipped: {n} validation images are too few to fit a temperature on "
            f"(auto needs {AUTO_MIN_VALIDATION}; --calibrate on forces it)", n)
    temperature = fit_temperature(logits, truth)
    before, after = scaled_nll(logits, truth, 1.0), scaled_nll(logits, truth, temperature)
    result = Calibration(
        temperature, True, "", n, before, after,
        expected_calibration_error(softmax(logits), truth),
        expected_calibration_error(softmax(logits / temperature), truth),
    )
    if at_bound(temperature):
        result.temperature, result.applied = 1.0, False
        result.nll_after, result.ece_after = before, result.ece_before
        trend = ("as T -> 0 (every validation photo is right, by a wide margin)" if temperature < 1
                 else "as T grows")
        result.reason = (f"skipped: the best temperature is at the search's bound "
                         f"(T={temperature:.3f}): the validation NLL keeps falling {trend}, which "
                         "says nothing about new photos; kept T = 1")
    elif mode == "auto" and before - after <= AUTO_MIN_GAIN:
        result.temperature, result.applied = 1.0, False
        result.nll_after, result.ece_after = before, result.ece_before
        result.reason = "skipped: no temperature lowers the validation NLL"
    else:
        result.reason = "applied" if mode == "auto" else "applied (--calibrate on)"
    return result

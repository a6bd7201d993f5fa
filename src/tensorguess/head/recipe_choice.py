"""--recipe_mode auto: the head's recipe chosen by cross-validation on the training part only.

Each candidate recipe (CANDIDATES, the one list to extend) is trained FOLDS times on the
cached bottlenecks of the training photos, each time on all folds but one, and predicts the
fold it did not see; the earliest (simplest) candidate whose out-of-fold macro F1 is within
one standard error of the best one's wins (the bootstrap's, over the photos): a lead smaller
than the score's own noise is no reason to leave the simpler recipe. The validation and test
photos are never read here: validation still judges the chosen recipe afterwards (and
calibrates it), and the test split stays what no choice has seen.

Why macro F1: on an imbalanced set accuracy rewards a recipe that serves the big classes
and forgets the small ones; macro F1 weighs every class alike, and on a balanced set it
ranks recipes as accuracy does.

Explicit flags mean what they say: a recipe setting given on the command line (or set to
other than its default by a caller) is pinned, and only the candidates that agree with
every pinned setting are tried; fewer than two left, the recipe is as given. --recipe_mode
fixed pins them all.

Time: a fixed amount of work, so that the choice never depends on how busy the machine is
(and a rerun chooses as the run did): FOLDS trainings of each candidate (LARGE_FOLDS from
LARGE_SET training photos on: each held-out fold still holds 500 photos or more to score),
each of the candidate's own `steps` (the run's own steps when fewer), on the cached
bottlenecks only (no photo is decoded). The budget, said in the log line: at most
3 x 1,000 steps of the linear head and 3 x 300 of the hidden layer's (Adam converges
in far fewer steps than plain SGD; its 1,000 steps cost three quarters of the choice);
on a long tail the linear head's folds take the run's own steps (3 x 4,000 by default),
so that the adjustment's strength is chosen on heads fit as far as the run's.
Measured on sign-digits (1,276 training photos, MobileNet v1): docs/benchmarks.md, section 20.

Logit adjustment's strength (balance.py's tau) is chosen here too, at no training cost: a
fold's head decides on its own logits plus the offsets, so each of TAUS is scored on the same
out-of-fold logits, and the candidate keeps the first of TAUS (the default first) within one
standard error of its best.
Only the training part's folds see it, as for the recipe.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

import numpy as np

from tensorguess.head.balance import TAU, balance, logit_offsets
from tensorguess.head.folds import stratified_folds
from tensorguess.head.train import Rows, Schedule, train_head

MODES = ("auto", "fixed")
METRIC = "macro F1"
FOLDS = 3
LARGE_SET = 1000  # training photos from which LARGE_FOLDS folds are enough
LARGE_FOLDS = 2
CV_STEPS = 1000
HIDDEN_CV_STEPS = 300  # Adam 1e-3: measured as good as 1,000 on sign-digits (benchmarks, section 20)
TAUS = (TAU, 1.0, 2.0, 0.0)  # the default first: a tie keeps it
MIN_PHOTOS = 2 * FOLDS  # fewer, and a fold's head learns from next to nothing
BOOTSTRAP = 200  # resamples for a score's standard error (a few milliseconds)


@dataclass(frozen=True)
class Candidate:
    """One recipe: TrainConfig's settings it sets; every other recipe setting at its default."""

    name: str
    settings: dict
    steps: int = CV_STEPS  # a fold's training steps (the run's own when fewer)
    # On a long tail (logit-adjusted), a fold's head trains as long as the run's: the adjustment's
    # right strength depends on how far the head has fit the priors, and tau chosen on heads of a
    # quarter of the steps was too weak for the head the run trains (long-tails.md).
    run_steps_on_tail: bool = False


# The recipes --recipe_mode auto tries, cheapest first (the first is the default head and the
# baseline the others must beat; each decides with --class_weights' default, logit adjustment
# on a long tail). Measured: docs/benchmarks.md, sections 8, 17 and 20.
CANDIDATES: tuple[Candidate, ...] = (
    Candidate("linear head", {}, run_steps_on_tail=True),
    # Not "balanced class weights": for the linear head its loss is, in expectation, the class-uniform
    # batches' (the default's on a near-balanced set: the same optimum), and on a long tail it lost to
    # logit adjustment on every cut, where its out-of-fold score led (long-tails.md).
    Candidate("512 hidden, Adam 1e-3, dropout 0.2, smoothing 0.1",
              {"hidden_units": 512, "dropout_rate": 0.2, "label_smoothing": 0.1, "optimizer": "adam",
               "learning_rate": 0.001}, HIDDEN_CV_STEPS),
)
# The settings a recipe is made of: what a candidate may change, and what a flag pins.
RECIPE_SETTINGS = ("hidden_units", "dropout_rate", "label_smoothing", "optimizer", "weight_decay",
                   "learning_rate", "class_weights")


@dataclass
class Scored:
    name: str
    macro_f1: float
    accuracy: float
    seconds: float
    tau: float | None = None  # logit adjustment's strength chosen on the folds; None: no adjustment
    steps: int = 0
    se: float = 0.0  # the bootstrap standard error of macro_f1

    def as_json(self) -> dict:
        return {"name": self.name, "macro_f1": round(self.macro_f1, 4), "accuracy": round(self.accuracy, 4),
                "standard_error": round(self.se, 4), "seconds": round(self.seconds, 2), "tau": self.tau,
                "steps": self.steps}


@dataclass
class Choice:
    """What --recipe_mode decided: the configuration to train, and what the train log records."""

    cfg: object  # the TrainConfig to train: the run's, with the chosen recipe's settings
    log: dict
    tau: float = TAU  # logit adjustment's strength to train with (balance.py)

    @property
    def line(self) -> str:
        return self.log["line"]


def pinned(cfg) -> list[str]:
    """The recipe settings the user fixed: given as flags, or other than their defaults."""
    defaults = type(cfg)()
    given = set(getattr(cfg, "given_flags", ()))
    return [name for name in RECIPE_SETTINGS
            if name in given or getattr(cfg, name) != getattr(defaults, name)]


def candidate_configs(cfg) -> list[tuple[str, object]]:
    """(name, configuration) of each candidate that agrees with every pinned setting."""
    return [(candidate.name, config) for candidate, config in _candidates(cfg)]


def _candidates(cfg) -> list[tuple[Candidate, object]]:
    """(candidate, configuration) of each candidate that agrees with every pinned setting."""
    defaults = type(cfg)()
    fixed = pinned(cfg)
    chosen = []
    for candidate in CANDIDATES:
        recipe = {name: getattr(defaults, name) for name in RECIPE_SETTINGS} | candidate.settings
        if all(recipe[name] == getattr(cfg, name) for name in fixed):
            chosen.append((candidate, dataclasses.replace(cfg, **recipe)))
    return chosen


def choose(cfg, matrix: np.ndarray, rows: np.ndarray, truth: np.ndarray, classes: int, seed: int) -> Choice:
    """The recipe to train on the training photos `matrix[rows]` labelled `truth` (its `line` says it)."""
    started = time.perf_counter()
    as_given = {"mode": cfg.recipe_mode, "metric": METRIC, "pinned": pinned(cfg), "candidates": [],
                "chosen": None, "runner_up": None}
    if cfg.recipe_mode == "fixed":
        return _as_given(cfg, as_given, "--recipe_mode fixed")
    tried = _candidates(cfg)
    if len(tried) < 2:
        return _as_given(cfg, as_given, "pinned by " + ", ".join(f"--{n}" for n in as_given["pinned"]))
    if len(truth) < MIN_PHOTOS:
        return _as_given(cfg, as_given, f"fewer than {MIN_PHOTOS} training photos to cross-validate on")
    folds = folds_for(len(truth))
    fold = stratified_folds(truth, folds, seed)
    scored = [(_cross_validate(config, candidate, matrix, rows, truth, classes, fold, seed), config)
              for candidate, config in tried]
    # One standard error (Hastie, Tibshirani and Friedman, section 7.10): the first candidate, the
    # cheapest, that scores within the best's noise; a lead smaller than the noise is no lead, and
    # on long tails of a few photos a class, picking the top score picked the noise (long-tails.md).
    top = max(scored, key=lambda item: item[0].macro_f1)[0]
    chosen_at = next(i for i, (s, _) in enumerate(scored) if s.macro_f1 >= top.macro_f1 - top.se)
    best, chosen_cfg = scored[chosen_at]
    others = [s for i, (s, _) in enumerate(scored) if i != chosen_at]
    runner = max(others, key=lambda s: s.macro_f1)
    seconds = time.perf_counter() - started
    adjusted = f", logit adjustment tau {best.tau:g}" if best.tau is not None else ""
    budget = " + ".join(f"{folds} x {s.steps}" for s, _ in scored)
    kept = (f"; within one standard error ({top.se:.3f}) of {top.name}'s, so the simpler is kept"
            if best is not top else "")
    line = (f"Recipe: chose {best.name}{adjusted} ({METRIC} {best.macro_f1:.3f} out-of-fold, {folds} folds "
            f"of the {len(truth)} training photos; runner-up {runner.name} {runner.macro_f1:.3f}{kept}); "
            f"{len(scored)} recipes in {seconds:.0f} s (budget: {budget} steps on the cached bottlenecks)")
    log = {**as_given, "candidates": [s.as_json() for s, _ in scored], "chosen": best.name,
           "runner_up": runner.as_json() if runner else None, "folds": folds,
           "steps": {s.name: s.steps for s, _ in scored}, "tau": best.tau, "seconds": round(seconds, 2),
           "line": line}
    return Choice(chosen_cfg, log, TAU if best.tau is None else best.tau)


def folds_for(photos: int) -> int:
    """FOLDS, or LARGE_FOLDS from LARGE_SET training photos on."""
    return LARGE_FOLDS if photos >= LARGE_SET else FOLDS


def _as_given(cfg, log: dict, why: str) -> Choice:
    line = f"Recipe: as given ({why})"
    return Choice(cfg, {**log, "line": line})


def _cross_validate(cfg, candidate: Candidate, matrix: np.ndarray, rows: np.ndarray, truth: np.ndarray,
                    classes: int, fold: np.ndarray, seed: int) -> Scored:
    """The candidate's out-of-fold predictions of every training photo, scored (with the best of
    TAUS where its head is logit-adjusted)."""
    started = time.perf_counter()
    raw = np.zeros((len(truth), classes), np.float64)  # out-of-fold logits before any adjustment
    adjusted = False
    steps = min(candidate.steps, cfg.how_many_training_steps)
    if candidate.run_steps_on_tail and balance(cfg.class_weights, truth, classes).offsets is not None:
        steps = cfg.how_many_training_steps
    nothing = np.zeros((0, matrix.shape[1]), np.float32)
    # Each fold traces the head's step anew, by design (as the label check's folds do).
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        for held_out in range(int(fold.max()) + 1):
            train, test = fold != held_out, fold == held_out
            # The fold's head is trained and decides as the run's would (balance.py's --class_weights).
            chosen = balance(cfg.class_weights, truth[train], classes)
            schedule = Schedule(steps, cfg.learning_rate, cfg.train_batch_size, -1, steps, seed + held_out)
            layer, _ = train_head(Rows(matrix, truth[train], rows[train]), Rows(nothing, truth[:0]), classes,
                                  schedule, cfg.head(), class_weights=chosen.weights,
                                  logit_offsets=chosen.offsets)
            raw[test] = layer.logits(matrix[rows[test]])
            if chosen.offsets is not None:  # train_head put them in the biases: take them out again
                raw[test] -= chosen.offsets
                adjusted = True
    finally:
        tf_logger.setLevel(level)
    tried = []
    for tau in (TAUS if adjusted else (None,)):
        predicted = raw.copy()
        if tau is not None:  # each fold adjusted by its own training photos' priors, as balance() does
            for held_out in range(int(fold.max()) + 1):
                test = fold == held_out
                predicted[test] += logit_offsets(truth[~test], classes, tau)
        guess = predicted.argmax(axis=1)
        tried.append((macro_f1(truth, guess), float(np.mean(guess == truth)), tau, guess))
    # One standard error: the first of TAUS (the default first) that scores within the noise of the best.
    top = max(tried, key=lambda t: t[0])
    noise = standard_error(truth, top[3], classes, seed)
    score, accuracy, tau, _ = next(t for t in tried if t[0] >= top[0] - noise)
    return Scored(candidate.name, score, accuracy, time.perf_counter() - started, tau, steps, noise)


def standard_error(truth: np.ndarray, predicted: np.ndarray, classes: int, seed: int,
                   resamples: int = BOOTSTRAP) -> float:
    """The bootstrap standard error of macro F1 (the photos drawn again with replacement): how far
    the out-of-fold score would move on another draw of as many photos. With a handful of photos
    in a class, one photo moves its F1 by a third, and the choices' scores by several points."""
    truth, predicted = np.asarray(truth, np.int64), np.asarray(predicted, np.int64)
    counts = np.random.default_rng(seed).multinomial(len(truth), np.full(len(truth), 1 / len(truth)),
                                                     size=resamples).astype(np.float64)  # [B, photos]
    hit = truth == predicted
    scores = np.zeros(resamples)
    present = np.zeros(resamples)
    for k in range(classes):
        actual = counts[:, truth == k].sum(axis=1)
        guessed = counts[:, predicted == k].sum(axis=1)
        hits = counts[:, hit & (truth == k)].sum(axis=1)
        both = actual + guessed
        scores += np.where(actual > 0, 2 * hits / np.maximum(both, 1), 0.0)
        present += actual > 0
    return float(np.std(scores / np.maximum(present, 1)))


def macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    """The mean F1 over the classes present in `truth` (a class never predicted scores 0)."""
    scores = []
    for k in np.unique(truth):
        hits = np.sum((predicted == k) & (truth == k))
        guessed, actual = np.sum(predicted == k), np.sum(truth == k)
        scores.append(2 * hits / (guessed + actual) if guessed + actual else 0.0)
    return float(np.mean(scores)) if scores else float("nan")


# ---- fine-tuning, offered when the cheap recipes leave a gap

GAP = 0.03  # validation error above this is a gap worth the offer
FINE_TUNE_PHOTOS_PER_SECOND = 30.0  # a floor measured on 2 cores (MobileNet v1, last 4 layers)
OFFER_SECONDS = 600.0  # an offer only where 3 epochs would take about this long at most


def fine_tune_offer(validation_accuracy: float, training_photos: int, epochs: int) -> str | None:
    """One line offering --fine_tune when validation says the head left a gap and it would be
    affordable; None otherwise."""
    if not np.isfinite(validation_accuracy) or 1 - validation_accuracy <= GAP:
        return None
    seconds = training_photos * epochs / FINE_TUNE_PHOTOS_PER_SECOND
    if seconds > OFFER_SECONDS:
        return None
    return (f"Recipe: validation accuracy {validation_accuracy * 100:.1f}% leaves a gap of "
            f"{(1 - validation_accuracy) * 100:.1f} points; --fine_tune (about {seconds / 60:.0f} min more "
            f"here) may close it, and keeps this model where it does not")

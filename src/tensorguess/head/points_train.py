"""Training a points head (points_net.py) with Adam, on spatial maps or on images through a frozen trunk.

Every epoch visits the training set once in a fresh order fixed by the seed; after it the head
is scored on validation by its mean point error (Euclidean, as a share of the input side, over
the labelled points), and the epoch with the lowest error is the one kept. Training stops early
once `patience` epochs in a row have not beaten it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from tensorguess.head.points_net import Prediction
from tensorguess.head.train import TrainingDiverged


@dataclass(frozen=True)
class PointsSchedule:
    """How long and how fast the head learns (train.py's Schedule, counted in epochs)."""

    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 1e-3
    patience: int = 10  # epochs without a better validation error before stopping; 0: never stop
    seed: int = 0


@dataclass(frozen=True)
class PointSet:
    """Photos' inputs and their points: `inputs` are spatial maps [N,h,w,C], or images [N,S,S,3]
    in [0,1] when training is given the trunk; `points` [N,K,2] normalised to the input side;
    `visible` [N,K] (a point not labelled is never learned)."""

    inputs: np.ndarray
    points: np.ndarray
    visible: np.ndarray

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass
class PointsEpoch:
    epoch: int
    train_loss: float  # the mean of the batches' losses, as the weights moved during the epoch
    validation_error: float  # mean point error as a share of the input side
    seconds: float

    def as_json(self) -> dict:
        return asdict(self)


def best_epoch(history: list[PointsEpoch]) -> PointsEpoch:
    """The lowest validation error, the earliest on ties; the last epoch without validation."""
    if not all(np.isfinite(e.validation_error) for e in history):
        return history[-1]
    return min(history, key=lambda e: (e.validation_error, e.epoch))


def batches(count: int, size: int, order: np.ndarray | None = None):
    order = np.arange(count) if order is None else order
    for start in range(0, count, size):
        yield order[start:start + size]


def predict(head, inputs: np.ndarray, trunk: Callable | None = None, batch_size: int = 64
            ) -> tuple[np.ndarray, np.ndarray]:
    """(points [N,K,2] normalised, confidence [N,K]) of the head on maps, or images through `trunk`."""
    return _predict_with(_predictor(head, trunk), head, inputs, batch_size)


def _predict_with(call, head, inputs: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf

    points, confidence = [], []
    for rows in batches(len(inputs), batch_size):
        prediction = call(tf.constant(inputs[rows], tf.float32))
        points.append(prediction.points.numpy())
        confidence.append(prediction.confidence.numpy())
    if not points:
        return np.zeros((0, head.points, 2), np.float32), np.zeros((0, head.points), np.float32)
    return np.concatenate(points), np.concatenate(confidence)


def _predictor(head, trunk: Callable | None):
    import tensorflow as tf

    @tf.function
    def call(inputs) -> Prediction:
        prediction = head.predict(trunk(inputs) if trunk else inputs)
        return Prediction(prediction.points, prediction.confidence, None)

    return call


def validation_error(head, validation: PointSet, trunk: Callable | None = None, batch_size: int = 64,
                     call=None) -> float:
    """Mean Euclidean point error over the labelled points, as a share of the input side."""
    points, _ = _predict_with(call or _predictor(head, trunk), head, validation.inputs, batch_size)
    visible = np.asarray(validation.visible, bool)
    if not visible.any():
        return float("nan")
    return float(np.linalg.norm(points - validation.points, axis=-1)[visible].mean())


def train_points_head(head, training: PointSet | Sequence[PointSet], validation: PointSet,
                      schedule: PointsSchedule, trunk: Callable | None = None,
                      on_epoch: Callable[[PointsEpoch], None] = lambda epoch: None) -> list[PointsEpoch]:
    """Train `head` in place and leave it at its best epoch; returns every epoch's figures.

    With `trunk` (features/spatial.SpatialTrunk), the sets hold images and the trunk runs on
    every batch, frozen; without it they hold the trunk's maps, computed once. `training` may
    be several sets, the same photos each distorted another way: epoch e reads set e mod their
    number, so each epoch sees every photo once and the distortions vary from epoch to epoch.
    """
    sets = [training] if isinstance(training, PointSet) else list(training)
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.Adam(schedule.learning_rate)
    optimizer.build(head.variables)

    @tf.function
    def step(inputs, truth, visible):
        maps = trunk(inputs) if trunk else inputs
        with tf.GradientTape() as tape:
            loss = head.loss(maps, truth, visible)
        optimizer.apply_gradients(zip(tape.gradient(loss, head.variables), head.variables, strict=True))
        return loss

    call = _predictor(head, trunk)  # one traced prediction for every epoch's validation
    best_values = [v.numpy() for v in head.variables]
    history: list[PointsEpoch] = []
    for epoch in range(1, schedule.epochs + 1):
        started = time.perf_counter()
        training = sets[(epoch - 1) % len(sets)]
        points = np.asarray(training.points, np.float32)
        visible = np.asarray(training.visible, bool)
        order = np.random.default_rng([schedule.seed, epoch]).permutation(len(training))
        losses, counts = [], []
        for rows in batches(len(training), schedule.batch_size, order):
            loss = step(tf.constant(training.inputs[rows], tf.float32), tf.constant(points[rows]),
                           tf.constant(visible[rows]))
            losses.append(float(loss))
            counts.append(len(rows))
        train_loss = float(np.average(losses, weights=counts))
        if not np.isfinite(train_loss):
            raise TrainingDiverged(f"the points head diverged in epoch {epoch} (loss {train_loss}); "
                                   f"try a learning rate below {schedule.learning_rate:g}", epoch)
        error = validation_error(head, validation, trunk, schedule.batch_size, call)
        result = PointsEpoch(epoch, train_loss, error, round(time.perf_counter() - started, 3))
        history.append(result)
        on_epoch(result)
        if best_epoch(history) is result:
            best_values = [v.numpy() for v in head.variables]
        elif schedule.patience and np.isfinite(error) and (
                epoch - best_epoch(history).epoch >= schedule.patience):
            break
    for variable, value in zip(head.variables, best_values, strict=True):
        variable.assign(value)
    return history

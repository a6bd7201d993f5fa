"""The final softmax layer and its training loop, on cached bottlenecks, in plain TF 2.

Each training batch is drawn like retrain.py's: a class uniformly at random, then
an image of that class, with replacement, so small classes are not drowned out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from tensorguess.errors import TensorGuessError
from tensorguess.features.shared_matrix import as_tensor
from tensorguess.metrics import softmax


class TrainingDiverged(TensorGuessError):
    """The loss or the weights stopped being finite numbers: the layer learned nothing usable."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


@dataclass
class EvalPoint:
    step: int
    train_accuracy: float
    cross_entropy: float
    validation_accuracy: float
    validation_cross_entropy: float
    validation_n: int

    def as_json(self) -> dict:
        return asdict(self)


OPTIMIZERS = ("sgd", "momentum", "adam")


@dataclass(frozen=True)
class HeadSpec:
    """What the head is and how it learns (make_image_classifier's names).

    The default is retrain.py's head: one softmax layer by plain SGD.
    """

    hidden_units: int = 0  # a ReLU layer of this many units before the softmax; 0: none
    dropout_rate: float = 0.0  # dropped share of the inputs of each layer, while training only
    label_smoothing: float = 0.0
    optimizer: str = "sgd"  # sgd, momentum (0.9) or adam
    weight_decay: float = 0.0  # decoupled, as Keras' optimizers apply it

    def describe(self) -> str:
        layers = f"{self.hidden_units} ReLU units + softmax" if self.hidden_units else "softmax"
        extras = [f"{name.replace('_', ' ')} {value:g}" for name, value in
                  (("dropout_rate", self.dropout_rate), ("label_smoothing", self.label_smoothing),
                   ("weight_decay", self.weight_decay)) if value]
        return ", ".join([layers, self.optimizer, *extras])


@dataclass
class FinalLayer:
    weights: np.ndarray  # [bottleneck size or hidden units, classes]
    biases: np.ndarray  # [classes]
    temperature: float = 1.0  # calibration.py's: the scores are softmax(logits / temperature)
    hidden_weights: np.ndarray | None = None  # [bottleneck size, hidden units], with a hidden layer
    hidden_biases: np.ndarray | None = None

    def logits(self, bottlenecks: np.ndarray) -> np.ndarray:
        if self.hidden_weights is not None:
            bottlenecks = np.maximum(bottlenecks @ self.hidden_weights + self.hidden_biases, 0)
        return bottlenecks @ self.weights + self.biases

    def probabilities(self, bottlenecks: np.ndarray) -> np.ndarray:
        return softmax(self.logits(bottlenecks) / self.temperature)


def grouped(labels: np.ndarray, classes: int):
    """The rows in class order, with each class's offset and count in it, for class-uniform draws.

    An order of indices rather than sorted features: the features are never copied.
    """
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=classes)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return order, offsets, counts


def train_final_layer(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    classes: int,
    steps: int,
    learning_rate: float,
    train_batch_size: int,
    validation_batch_size: int,
    eval_step_interval: int,
    seed: int,
    on_eval: Callable[[EvalPoint], None] = lambda point: None,
    class_weights: np.ndarray | None = None,
    head: HeadSpec = HeadSpec(),
    train_rows: np.ndarray | None = None,
    standardise: tuple[np.ndarray, float] | None = None,
) -> tuple[FinalLayer, list[EvalPoint]]:
    """Train softmax(x W + b) (or with `head`'s hidden layer) on cross-entropy; evaluate
    every eval_step_interval.

    With `class_weights` (one per class), batches are drawn uniformly over the training
    images instead of class-uniformly, and each image's loss is multiplied by its class's
    weight: the other remedy for imbalance, not one stacked on the other.

    Training image k's features are `train_x[train_rows[k]]` (None: `train_x[k]`), so a
    caller's one matrix serves without a copy of its training rows; `train_x` is read in
    place where features.shared_matrix allows (allocate it with aligned_empty). With `standardise`
    = (mean, scale), every row is read as (row - mean) / scale, and the layer returned
    expects rows standardised so.
    """
    import tensorflow as tf

    generator = tf.random.Generator.from_seed(seed)
    order, offsets, counts = grouped(train_y, classes)
    x, y = as_tensor(train_x, np.float32), tf.constant(train_y, tf.int64)
    rows = tf.constant(np.arange(len(train_y)) if train_rows is None else train_rows, tf.int64)
    mean, scale = standardise if standardise is not None else (np.zeros(train_x.shape[1]), 1.0)
    # Subtracting 0 and dividing by 1 are exact: without `standardise` the steps are unchanged.
    mean, scale = tf.constant(mean, tf.float32), tf.constant(scale, tf.float32)
    order = tf.constant(order, tf.int64)
    offsets, counts = tf.constant(offsets, tf.int64), tf.constant(counts, tf.int64)
    present = tf.constant(np.flatnonzero(counts.numpy()), tf.int64)
    val_order, val_offsets, val_counts = grouped(val_y, classes)

    width = train_x.shape[1]
    hidden = []
    if head.hidden_units:
        limit = float(np.sqrt(6 / (width + head.hidden_units)))  # Glorot's uniform
        hidden = [tf.Variable(generator.uniform([width, head.hidden_units], -limit, limit),
                              name="hidden_weights"),
                  tf.Variable(tf.zeros([head.hidden_units]), name="hidden_biases")]
        width = head.hidden_units
    weights = tf.Variable(generator.truncated_normal([width, classes], stddev=0.001), name="final_weights")
    biases = tf.Variable(tf.zeros([classes]), name="final_biases")
    variables = [*hidden, weights, biases]
    optimizer = _optimizer(head, learning_rate)

    def draw(class_order, total_offsets, total_counts, present_classes, size):
        pick = generator.uniform([size], 0, tf.size(present_classes, tf.int64), tf.int64)
        chosen = tf.gather(present_classes, pick)
        within = tf.cast(
            generator.uniform([size]) * tf.cast(tf.gather(total_counts, chosen), tf.float32),
            tf.int64,
        )
        within = tf.minimum(within, tf.gather(total_counts, chosen) - 1)
        return tf.gather(class_order, tf.gather(total_offsets, chosen) + within)

    loss_weights = None if class_weights is None else tf.constant(class_weights, tf.float32)
    total = tf.constant(len(train_y), tf.int64)

    def sample(order, size):
        if loss_weights is None:
            return draw(order, offsets, counts, present, size)
        return tf.gather(order, generator.uniform([size], 0, total, tf.int64))

    def dropped(values, training):
        if not training or not head.dropout_rate:
            return values
        keep = tf.cast(generator.uniform(tf.shape(values)) >= head.dropout_rate, tf.float32)
        return values * keep / (1 - head.dropout_rate)

    def forward(features, training=False):
        if hidden:
            features = tf.nn.relu(tf.matmul(dropped(features, training), hidden[0]) + hidden[1])
        return tf.matmul(dropped(features, training), weights) + biases

    def metrics(features, truth, weighted=False, training=False):
        logits = forward(features, training)
        if training and head.label_smoothing:
            smoothed = (tf.one_hot(truth, classes) * (1 - head.label_smoothing)
                        + head.label_smoothing / classes)
            per_image = tf.nn.softmax_cross_entropy_with_logits(labels=smoothed, logits=logits)
        else:
            per_image = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=truth, logits=logits)
        if weighted and loss_weights is not None:
            per_image = per_image * tf.gather(loss_weights, truth)
        entropy = tf.reduce_mean(per_image)
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), truth), tf.float32))
        return accuracy, entropy

    def read(matrix, picked=None):
        return ((matrix if picked is None else tf.gather(matrix, picked)) - mean) / scale

    def run_steps(count, x, y, order, rows):
        batch = tf.zeros([train_batch_size], tf.int64)
        for _ in tf.range(count):
            batch = sample(order, train_batch_size)
            with tf.GradientTape() as tape:
                _, loss = metrics(read(x, tf.gather(rows, batch)), tf.gather(y, batch), weighted=True,
                                  training=True)
            gradients = tape.gradient(loss, variables)
            if optimizer is None:  # retrain.py's plain SGD, exactly
                for variable, gradient in zip(variables, gradients, strict=True):
                    variable.assign_sub(learning_rate * gradient)
            else:
                optimizer.apply_gradients(zip(gradients, variables, strict=True))
        # Reported unweighted, like validation, so the two curves can be compared.
        return metrics(read(x, tf.gather(rows, batch)), tf.gather(y, batch))

    vx, vy = as_tensor(val_x, np.float32), tf.constant(val_y, tf.int64)
    v_order, v_offsets, v_counts = (tf.constant(a, tf.int64) for a in (val_order, val_offsets, val_counts))
    v_present = tf.constant(np.flatnonzero(val_counts), tf.int64)

    # A sample larger than the set would repeat images and overstate N: use them all.
    validate_all = validation_batch_size < 0 or validation_batch_size >= len(val_y)
    val_n = len(val_y) if validate_all else validation_batch_size

    def validate(vx, vy, v_order):
        if validate_all:
            return metrics(read(vx), vy)
        chosen = draw(v_order, v_offsets, v_counts, v_present, validation_batch_size)
        return metrics(read(vx, chosen), tf.gather(vy, chosen))

    # One traced call per evaluation: running validation eagerly cost as much as the steps.
    # The features come in as arguments, not as captures: a traced function keeps what it
    # captures for as long as TensorFlow keeps the function, which outlives this call, so
    # every training in a process (the label check's five folds) would keep its own copy.
    @tf.function
    def steps_then_validate(count, x, y, order, rows, vx, vy, v_order):
        return (*run_steps(count, x, y, order, rows), *validate(vx, vy, v_order))

    history: list[EvalPoint] = []
    done = 0
    for target in eval_steps(steps, eval_step_interval):
        train_accuracy, entropy, val_accuracy, val_entropy = steps_then_validate(
            tf.constant(target + 1 - done), x, y, order, rows, vx, vy, v_order)
        done = target + 1
        point = EvalPoint(target, float(train_accuracy), float(entropy), float(val_accuracy),
                          float(val_entropy), int(val_n))
        history.append(point)
        on_eval(point)
        if not np.isfinite(point.cross_entropy):
            raise TrainingDiverged(f"training diverged at step {target} (cross entropy "
                                   f"{point.cross_entropy})", target)
    layer = FinalLayer(weights.numpy(), biases.numpy(),
                       hidden_weights=hidden[0].numpy() if hidden else None,
                       hidden_biases=hidden[1].numpy() if hidden else None)
    if not all(np.all(np.isfinite(v.numpy())) for v in variables):
        raise TrainingDiverged(f"training diverged by step {steps - 1} (weights are no longer "
                               "finite numbers)", steps - 1)
    return layer, history


def _optimizer(head: HeadSpec, learning_rate: float):
    """Keras' optimizer for the head's choice; None for plain SGD (retrain.py's update, by hand)."""
    import keras

    if head.optimizer == "sgd" and not head.weight_decay:
        return None
    decay = head.weight_decay or None
    if head.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate, weight_decay=decay)
    momentum = 0.9 if head.optimizer == "momentum" else 0.0
    return keras.optimizers.SGD(learning_rate, momentum=momentum, weight_decay=decay)


def eval_steps(steps: int, interval: int) -> list[int]:
    """The steps after which retrain.py evaluates: 0, interval, 2*interval, ..., and the last."""
    interval = max(1, interval)
    points = list(range(0, steps, interval))
    if steps and points[-1] != steps - 1:
        points.append(steps - 1)
    return points

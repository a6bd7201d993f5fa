"""The final softmax layer and its training loop, on cached bottlenecks, in plain TF 2.

Each training batch is drawn like retrain.py's: a class uniformly at random, then
an image of that class, with replacement, so small classes are not drowned out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from tensorguess.metrics import softmax


class TrainingDiverged(Exception):
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


@dataclass
class FinalLayer:
    weights: np.ndarray  # [bottleneck size, classes]
    biases: np.ndarray  # [classes]
    temperature: float = 1.0  # calibration.py's: the scores are softmax(logits / temperature)

    def logits(self, bottlenecks: np.ndarray) -> np.ndarray:
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
) -> tuple[FinalLayer, list[EvalPoint]]:
    """Train softmax(x W + b) by SGD on cross-entropy; evaluate every eval_step_interval.

    With `class_weights` (one per class), batches are drawn uniformly over the training
    images instead of class-uniformly, and each image's loss is multiplied by its class's
    weight: the other remedy for imbalance, not one stacked on the other.
    """
    import tensorflow as tf

    generator = tf.random.Generator.from_seed(seed)
    order, offsets, counts = grouped(train_y, classes)
    x, y = tf.constant(train_x, tf.float32), tf.constant(train_y, tf.int64)
    order = tf.constant(order, tf.int64)
    offsets, counts = tf.constant(offsets, tf.int64), tf.constant(counts, tf.int64)
    present = tf.constant(np.flatnonzero(counts.numpy()), tf.int64)
    val_order, val_offsets, val_counts = grouped(val_y, classes)

    weights = tf.Variable(
        generator.truncated_normal([train_x.shape[1], classes], stddev=0.001), name="final_weights"
    )
    biases = tf.Variable(tf.zeros([classes]), name="final_biases")

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

    def sample(size):
        if loss_weights is None:
            return draw(order, offsets, counts, present, size)
        return tf.gather(order, generator.uniform([size], 0, total, tf.int64))

    def metrics(features, truth, weighted=False):
        logits = tf.matmul(features, weights) + biases
        per_image = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=truth, logits=logits)
        if weighted and loss_weights is not None:
            per_image = per_image * tf.gather(loss_weights, truth)
        entropy = tf.reduce_mean(per_image)
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), truth), tf.float32))
        return accuracy, entropy

    def run_steps(count):
        batch = tf.zeros([train_batch_size], tf.int64)
        for _ in tf.range(count):
            batch = sample(train_batch_size)
            with tf.GradientTape() as tape:
                _, loss = metrics(tf.gather(x, batch), tf.gather(y, batch), weighted=True)
            grad_w, grad_b = tape.gradient(loss, [weights, biases])
            weights.assign_sub(learning_rate * grad_w)
            biases.assign_sub(learning_rate * grad_b)
        # Reported unweighted, like validation, so the two curves can be compared.
        return metrics(tf.gather(x, batch), tf.gather(y, batch))

    vx, vy = tf.constant(val_x, tf.float32), tf.constant(val_y, tf.int64)
    v_order, v_offsets, v_counts = (tf.constant(a, tf.int64) for a in (val_order, val_offsets, val_counts))
    v_present = tf.constant(np.flatnonzero(val_counts), tf.int64)

    # A sample larger than the set would repeat images and overstate N: use them all.
    validate_all = validation_batch_size < 0 or validation_batch_size >= len(val_y)
    val_n = len(val_y) if validate_all else validation_batch_size

    def validate():
        if validate_all:
            return metrics(vx, vy)
        chosen = draw(v_order, v_offsets, v_counts, v_present, validation_batch_size)
        return metrics(tf.gather(vx, chosen), tf.gather(vy, chosen))

    # One traced call per evaluation: running validation eagerly cost as much as the steps.
    @tf.function
    def steps_then_validate(count):
        return (*run_steps(count), *validate())

    history: list[EvalPoint] = []
    done = 0
    for target in eval_steps(steps, eval_step_interval):
        train_accuracy, entropy, val_accuracy, val_entropy = steps_then_validate(
            tf.constant(target + 1 - done))
        done = target + 1
        point = EvalPoint(target, float(train_accuracy), float(entropy), float(val_accuracy),
                          float(val_entropy), int(val_n))
        history.append(point)
        on_eval(point)
        if not np.isfinite(point.cross_entropy):
            raise TrainingDiverged(f"training diverged at step {target} (cross entropy "
                                   f"{point.cross_entropy})", target)
    layer = FinalLayer(weights.numpy(), biases.numpy())
    if not (np.all(np.isfinite(layer.weights)) and np.all(np.isfinite(layer.biases))):
        raise TrainingDiverged(f"training diverged by step {steps - 1} (weights are no longer "
                               "finite numbers)", steps - 1)
    return layer, history


def eval_steps(steps: int, interval: int) -> list[int]:
    """The steps after which retrain.py evaluates: 0, interval, 2*interval, ..., and the last."""
    interval = max(1, interval)
    points = list(range(0, steps, interval))
    if steps and points[-1] != steps - 1:
        points.append(steps - 1)
    return points

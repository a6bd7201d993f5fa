"""The final softmax layer and its training loop, on cached bottlenecks, in plain TF 2.

Each training batch is drawn like retrain.py's: a class uniformly at random, then
an image of that class, with replacement, so small classes are not drowned out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np


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

    def probabilities(self, bottlenecks: np.ndarray) -> np.ndarray:
        logits = bottlenecks @ self.weights + self.biases
        logits = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)


def grouped(features: np.ndarray, labels: np.ndarray, classes: int):
    """Features sorted by class, with each class's offset and count, for class-uniform draws."""
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=classes)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return features[order], labels[order], offsets, counts


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
) -> tuple[FinalLayer, list[EvalPoint]]:
    """Train softmax(x W + b) by SGD on cross-entropy; evaluate every eval_step_interval."""
    import tensorflow as tf

    generator = tf.random.Generator.from_seed(seed)
    x, y, offsets, counts = grouped(train_x, train_y, classes)
    x, y = tf.constant(x, tf.float32), tf.constant(y, tf.int64)
    offsets, counts = tf.constant(offsets, tf.int64), tf.constant(counts, tf.int64)
    present = tf.constant(np.flatnonzero(counts.numpy()), tf.int64)
    val_sorted = grouped(val_x, val_y, classes)

    weights = tf.Variable(
        generator.truncated_normal([train_x.shape[1], classes], stddev=0.001), name="final_weights"
    )
    biases = tf.Variable(tf.zeros([classes]), name="final_biases")

    def draw(total_offsets, total_counts, present_classes, size):
        pick = generator.uniform([size], 0, tf.size(present_classes, tf.int64), tf.int64)
        chosen = tf.gather(present_classes, pick)
        within = tf.cast(
            generator.uniform([size]) * tf.cast(tf.gather(total_counts, chosen), tf.float32),
            tf.int64,
        )
        within = tf.minimum(within, tf.gather(total_counts, chosen) - 1)
        return tf.gather(total_offsets, chosen) + within

    def metrics(features, truth):
        logits = tf.matmul(features, weights) + biases
        entropy = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=truth, logits=logits)
        )
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), truth), tf.float32))
        return accuracy, entropy

    @tf.function
    def run_steps(count):
        batch = tf.zeros([train_batch_size], tf.int64)
        for _ in tf.range(count):
            batch = draw(offsets, counts, present, train_batch_size)
            with tf.GradientTape() as tape:
                _, loss = metrics(tf.gather(x, batch), tf.gather(y, batch))
            grad_w, grad_b = tape.gradient(loss, [weights, biases])
            weights.assign_sub(learning_rate * grad_w)
            biases.assign_sub(learning_rate * grad_b)
        return metrics(tf.gather(x, batch), tf.gather(y, batch))

    vx, vy, v_offsets, v_counts = (tf.constant(a) for a in val_sorted)
    vx, vy = tf.cast(vx, tf.float32), tf.cast(vy, tf.int64)
    v_present = tf.constant(np.flatnonzero(val_sorted[3]), tf.int64)

    def validate():
        # A sample larger than the set would repeat images and overstate N: use them all.
        if validation_batch_size < 0 or validation_batch_size >= len(val_y):
            return (*metrics(vx, vy), len(val_y))
        chosen = draw(tf.cast(v_offsets, tf.int64), tf.cast(v_counts, tf.int64), v_present,
                      validation_batch_size)
        return (*metrics(tf.gather(vx, chosen), tf.gather(vy, chosen)), validation_batch_size)

    history: list[EvalPoint] = []
    done = 0
    for target in eval_steps(steps, eval_step_interval):
        train_accuracy, entropy = run_steps(tf.constant(target + 1 - done))
        done = target + 1
        val_accuracy, val_entropy, val_n = validate()
        point = EvalPoint(target, float(train_accuracy), float(entropy), float(val_accuracy),
                          float(val_entropy), int(val_n))
        history.append(point)
        on_eval(point)
    return FinalLayer(weights.numpy(), biases.numpy()), history


def eval_steps(steps: int, interval: int) -> list[int]:
    """The steps after which retrain.py evaluates: 0, interval, 2*interval, ..., and the last."""
    interval = max(1, interval)
    points = list(range(0, steps, interval))
    if steps and points[-1] != steps - 1:
        points.append(steps - 1)
    return points

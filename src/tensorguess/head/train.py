"""The final softmax layer and its training loop, on cached bottlenecks, in plain TF 2.

By default (retrain.py's way) each training batch is drawn class-uniformly: a class
at random, then an image of that class, with replacement. With `class_weights` the
batches are drawn over the images instead (head/balance.py says which the product
uses: drawn so, then logit-adjusted, by default).
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


@dataclass(frozen=True)
class Schedule:
    """How long and how fast the head learns, and how often it is evaluated (retrain.py's flags)."""

    steps: int
    learning_rate: float
    train_batch_size: int
    validation_batch_size: int  # a class-uniform sample of validation; -1 (or more than there are): all
    eval_step_interval: int
    seed: int


@dataclass(frozen=True)
class Rows:
    """Labelled feature rows: image k's features are `matrix[index[k]]` (index None: `matrix[k]`).

    Through `index`, a caller's one matrix serves without a copy of its rows; `matrix` is
    read in place where features.shared_matrix allows (allocate it with aligned_empty).
    With `standardise` = (mean, scale) (the label checks' folds), every row is read as
    (row - mean) / scale; a head trained on such rows expects rows standardised so, and
    reads its validation rows so too.
    """

    matrix: np.ndarray
    truth: np.ndarray
    index: np.ndarray | None = None
    standardise: tuple[np.ndarray, float] | None = None


def train_head(training: Rows, validation: Rows, classes: int, schedule: Schedule,
               head: HeadSpec = HeadSpec(), on_eval: Callable[[EvalPoint], None] = lambda point: None,
               class_weights: np.ndarray | None = None,
               logit_offsets: np.ndarray | None = None) -> tuple[FinalLayer, list[EvalPoint]]:
    """Train softmax(x W + b) (or with `head`'s hidden layer) on cross-entropy; evaluate
    every schedule.eval_step_interval steps, telling `on_eval`.

    With `class_weights` (one per class), batches are drawn uniformly over the training
    images instead of class-uniformly, and each image's loss is multiplied by its class's
    weight: the other remedy for imbalance, not one stacked on the other.

    With `logit_offsets` (one per class), the layer decides on logits + offsets: they are
    added to its biases at the end (so every consumer of the layer, the exported graph
    included, computes exactly them) and to the validation's logits, never to the
    training loss (balance.py's post-hoc logit adjustment).
    """
    return Learner(training, validation, classes, schedule, head, class_weights,
                   logit_offsets).train(on_eval)


class Learner:
    """One training of the head: its variables, its random draws and its traced steps."""

    def __init__(self, training: Rows, validation: Rows, classes: int, schedule: Schedule,
                 head: HeadSpec, class_weights: np.ndarray | None, logit_offsets: np.ndarray | None = None):
        import tensorflow as tf

        self.classes, self.schedule, self.head = classes, schedule, head
        self.generator = tf.random.Generator.from_seed(schedule.seed)
        train_x, train_y = training.matrix, training.truth
        order, offsets, counts = grouped(train_y, classes)
        self.x, self.y = as_tensor(train_x, np.float32), tf.constant(train_y, tf.int64)
        index = np.arange(len(train_y)) if training.index is None else training.index
        self.rows = tf.constant(index, tf.int64)
        mean, scale = training.standardise or (np.zeros(train_x.shape[1]), 1.0)
        # Subtracting 0 and dividing by 1 are exact: without `standardise` the steps are unchanged.
        self.mean, self.scale = tf.constant(mean, tf.float32), tf.constant(scale, tf.float32)
        self.order = tf.constant(order, tf.int64)
        self.offsets, self.counts = tf.constant(offsets, tf.int64), tf.constant(counts, tf.int64)
        self.present = tf.constant(np.flatnonzero(counts), tf.int64)
        val_order, val_offsets, val_counts = grouped(validation.truth, classes)

        width = train_x.shape[1]
        self.hidden = []
        if head.hidden_units:
            limit = float(np.sqrt(6 / (width + head.hidden_units)))  # Glorot's uniform
            self.hidden = [tf.Variable(self.generator.uniform([width, head.hidden_units], -limit, limit),
                                       name="hidden_weights"),
                           tf.Variable(tf.zeros([head.hidden_units]), name="hidden_biases")]
            width = head.hidden_units
        self.weights = tf.Variable(self.generator.truncated_normal([width, classes], stddev=0.001),
                                   name="final_weights")
        self.biases = tf.Variable(tf.zeros([classes]), name="final_biases")
        self.variables = [*self.hidden, self.weights, self.biases]
        self.optimizer = _optimizer(head, schedule.learning_rate)
        self.loss_weights = None if class_weights is None else tf.constant(class_weights, tf.float32)
        self.total = tf.constant(len(train_y), tf.int64)
        self.offsets_given = None if logit_offsets is None else np.asarray(logit_offsets, np.float32)
        self.decision_offsets = tf.constant(np.zeros(classes, np.float32) if logit_offsets is None
                                            else self.offsets_given)

        self.vx, self.vy = as_tensor(validation.matrix, np.float32), tf.constant(validation.truth, tf.int64)
        self.v_order, self.v_offsets, self.v_counts = (tf.constant(a, tf.int64)
                                                       for a in (val_order, val_offsets, val_counts))
        self.v_present = tf.constant(np.flatnonzero(val_counts), tf.int64)
        # A sample larger than the set would repeat images and overstate N: use them all.
        size = schedule.validation_batch_size
        self.validate_all = size < 0 or size >= len(validation.truth)
        self.val_n = len(validation.truth) if self.validate_all else size
        # One traced call per evaluation: running validation eagerly cost as much as the steps.
        # The features come in as arguments, not as captures: a traced function keeps what it
        # captures for as long as TensorFlow keeps the function, which outlives this training, so
        # every training in a process (the label check's five folds) would keep its own copy.
        self.steps_then_validate = tf.function(self._steps_then_validate)

    def draw(self, class_order, total_offsets, total_counts, present_classes, size):
        """`size` rows, class-uniformly: a present class at random, then one of its rows."""
        import tensorflow as tf

        pick = self.generator.uniform([size], 0, tf.size(present_classes, tf.int64), tf.int64)
        chosen = tf.gather(present_classes, pick)
        within = tf.cast(
            self.generator.uniform([size]) * tf.cast(tf.gather(total_counts, chosen), tf.float32),
            tf.int64,
        )
        within = tf.minimum(within, tf.gather(total_counts, chosen) - 1)
        return tf.gather(class_order, tf.gather(total_offsets, chosen) + within)

    def sample(self, order, size):
        import tensorflow as tf

        if self.loss_weights is None:
            return self.draw(order, self.offsets, self.counts, self.present, size)
        return tf.gather(order, self.generator.uniform([size], 0, self.total, tf.int64))

    def dropped(self, values, training):
        import tensorflow as tf

        rate = self.head.dropout_rate
        if not training or not rate:
            return values
        keep = tf.cast(self.generator.uniform(tf.shape(values)) >= rate, tf.float32)
        return values * keep / (1 - rate)

    def forward(self, features, training=False):
        import tensorflow as tf

        if self.hidden:
            weights, biases = self.hidden
            features = tf.nn.relu(tf.matmul(self.dropped(features, training), weights) + biases)
        return tf.matmul(self.dropped(features, training), self.weights) + self.biases

    def metrics(self, features, truth, weighted=False, training=False, decided=False):
        """(accuracy, mean cross-entropy) of the head on `features`; `decided`: of the logits
        the finished layer will give (with the decision's offsets)."""
        import tensorflow as tf

        logits = self.forward(features, training)
        if decided:
            logits = logits + self.decision_offsets
        smoothing = self.head.label_smoothing
        if training and smoothing:
            smoothed = tf.one_hot(truth, self.classes) * (1 - smoothing) + smoothing / self.classes
            per_image = tf.nn.softmax_cross_entropy_with_logits(labels=smoothed, logits=logits)
        else:
            per_image = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=truth, logits=logits)
        if weighted and self.loss_weights is not None:
            per_image = per_image * tf.gather(self.loss_weights, truth)
        entropy = tf.reduce_mean(per_image)
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), truth), tf.float32))
        return accuracy, entropy

    def read(self, matrix, picked=None):
        import tensorflow as tf

        return ((matrix if picked is None else tf.gather(matrix, picked)) - self.mean) / self.scale

    def run_steps(self, count, x, y, order, rows):
        import tensorflow as tf

        size, rate = self.schedule.train_batch_size, self.schedule.learning_rate
        batch = tf.zeros([size], tf.int64)
        for _ in tf.range(count):
            batch = self.sample(order, size)
            with tf.GradientTape() as tape:
                _, loss = self.metrics(self.read(x, tf.gather(rows, batch)), tf.gather(y, batch),
                                       weighted=True, training=True)
            gradients = tape.gradient(loss, self.variables)
            if self.optimizer is None:  # retrain.py's plain SGD, exactly
                for variable, gradient in zip(self.variables, gradients, strict=True):
                    variable.assign_sub(rate * gradient)
            else:
                self.optimizer.apply_gradients(zip(gradients, self.variables, strict=True))
        # Reported unweighted, like validation, so the two curves can be compared.
        return self.metrics(self.read(x, tf.gather(rows, batch)), tf.gather(y, batch))

    def validate(self, vx, vy, v_order):
        import tensorflow as tf

        if self.validate_all:
            return self.metrics(self.read(vx), vy, decided=True)
        chosen = self.draw(v_order, self.v_offsets, self.v_counts, self.v_present,
                           self.schedule.validation_batch_size)
        return self.metrics(self.read(vx, chosen), tf.gather(vy, chosen), decided=True)

    def _steps_then_validate(self, count, x, y, order, rows, vx, vy, v_order):
        return (*self.run_steps(count, x, y, order, rows), *self.validate(vx, vy, v_order))

    def train(self, on_eval: Callable[[EvalPoint], None]) -> tuple[FinalLayer, list[EvalPoint]]:
        """Run the schedule; the layer learned and the evaluation points, each told to `on_eval`."""
        import tensorflow as tf

        steps = self.schedule.steps
        history: list[EvalPoint] = []
        done = 0
        for target in eval_steps(steps, self.schedule.eval_step_interval):
            train_accuracy, entropy, val_accuracy, val_entropy = self.steps_then_validate(
                tf.constant(target + 1 - done), self.x, self.y, self.order, self.rows, self.vx, self.vy,
                self.v_order)
            done = target + 1
            point = EvalPoint(target, float(train_accuracy), float(entropy), float(val_accuracy),
                              float(val_entropy), int(self.val_n))
            history.append(point)
            on_eval(point)
            if not np.isfinite(point.cross_entropy):
                raise TrainingDiverged(f"training diverged at step {target} (cross entropy "
                                       f"{point.cross_entropy})", target)
        hidden = self.hidden
        biases = self.biases.numpy()
        if self.offsets_given is not None:
            biases = biases + self.offsets_given
        layer = FinalLayer(self.weights.numpy(), biases,
                           hidden_weights=hidden[0].numpy() if hidden else None,
                           hidden_biases=hidden[1].numpy() if hidden else None)
        if not all(np.all(np.isfinite(v.numpy())) for v in self.variables):
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

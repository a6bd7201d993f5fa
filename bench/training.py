"""Training the final layer for 4000 steps on cached bottlenecks of the superheroes set.

    python bench/training.py [--out bench/results/training.json] [--steps 4000] [--rounds 2]

The bottlenecks are computed once, before any timing. Then, alternating, --rounds times:
  ours   head.train.train_head with retrain.py's defaults: 4000 steps, learning rate
         0.01, batch 100, evaluate every 10 steps on a validation batch of 100.
  eager  the same steps, draws and evaluations (on the whole validation set when it is
         smaller than the batch, as ours), op for op, in a plain eager loop (no
         tf.function), reading the metrics back to Python at each evaluation as ours does.
The best round of each is compared; CPU seconds (this process, all threads) are given too.
"""

from __future__ import annotations

import numpy as np

import common

LEARNING_RATE = 0.01
TRAIN_BATCH = 100
VALIDATION_BATCH = 100
EVAL_INTERVAL = 10
SEED = 1


def bottleneck_arrays():
    """(train_x, train_y, val_x, val_y, classes) as retrain() builds them."""
    from tensorguess.data import dataset
    from tensorguess.features import bottlenecks, modules

    image_set = dataset.discover(common.SUPERHEROES)
    paths = [path for label in image_set.labels for path in image_set.files[label]]
    spec, loaded = modules.resolve(str(common.MODULE))
    extraction = bottlenecks.extract(paths, spec, loaded, cache=None)
    parts = dataset.split(image_set, image_set.files, 10.0, 10.0).parts

    def arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
        chosen = [p for label in image_set.labels for p in parts[name][label]]
        truth = [i for i, label in enumerate(image_set.labels) for _ in parts[name][label]]
        return extraction.matrix(chosen), np.array(truth, dtype=np.int64)

    return (*arrays("training"), *arrays("validation"), len(image_set.labels))


def train_eager(train_x, train_y, val_x, val_y, classes: int, steps: int) -> float:
    """The naive loop: one eager step at a time; returns the last validation accuracy."""
    import tensorflow as tf

    from tensorguess.head.train import eval_steps, grouped

    generator = tf.random.Generator.from_seed(SEED)
    def sorted_by_class(features, labels):
        order, offsets, counts = grouped(labels, classes)
        return (tf.constant(a) for a in (features[order], labels[order], offsets, counts))

    x, y, offsets, counts = sorted_by_class(train_x, train_y)
    vx, vy, v_offsets, v_counts = sorted_by_class(val_x, val_y)
    weights = tf.Variable(generator.truncated_normal([train_x.shape[1], classes], stddev=0.001))
    biases = tf.Variable(tf.zeros([classes]))

    def draw(offsets, counts, size: int):
        """A class uniformly at random, then one of its images, with replacement (as ours)."""
        chosen = generator.uniform([size], 0, classes, tf.int64)
        within = tf.cast(generator.uniform([size]) * tf.cast(tf.gather(counts, chosen), tf.float32), tf.int64)
        return tf.gather(offsets, chosen) + tf.minimum(within, tf.gather(counts, chosen) - 1)

    def metrics(features, truth):
        logits = tf.matmul(features, weights) + biases
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=truth, logits=logits))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), truth), tf.float32))
        return accuracy, loss

    evaluate_at = set(eval_steps(steps, EVAL_INTERVAL))
    history = []
    for step in range(steps):
        batch = draw(offsets, counts, TRAIN_BATCH)
        with tf.GradientTape() as tape:
            accuracy, loss = metrics(tf.gather(x, batch), tf.gather(y, batch))
        grad_w, grad_b = tape.gradient(loss, [weights, biases])
        weights.assign_sub(LEARNING_RATE * grad_w)
        biases.assign_sub(LEARNING_RATE * grad_b)
        if step in evaluate_at:
            # As ours: a batch no smaller than the validation set means the whole set.
            chosen = tf.range(len(val_y)) if VALIDATION_BATCH >= len(val_y) else draw(
                v_offsets, v_counts, VALIDATION_BATCH)
            val_accuracy, val_loss = metrics(tf.gather(vx, chosen), tf.gather(vy, chosen))
            history.append((step, float(accuracy), float(loss), float(val_accuracy), float(val_loss)))
    return history[-1][3]


def train_ours(train_x, train_y, val_x, val_y, classes: int, steps: int) -> float:
    from tensorguess.head.train import Rows, Schedule, train_head

    schedule = Schedule(steps, LEARNING_RATE, TRAIN_BATCH, VALIDATION_BATCH, EVAL_INTERVAL, SEED)
    _, history = train_head(Rows(train_x, train_y), Rows(val_x, val_y), classes, schedule)
    return history[-1].validation_accuracy


def main() -> None:
    parse = common.parser(__doc__.splitlines()[0])
    parse.add_argument("--steps", type=int, default=4000)
    parse.add_argument("--rounds", type=int, default=2)
    args = parse.parse_args()
    common.quiet_tensorflow()
    machine = common.machine()
    data = bottleneck_arrays()

    rounds = common.alternate({name: (lambda _round, train=train: train(*data, args.steps))
                               for name, train in (("ours", train_ours), ("eager", train_eager))},
                              args.rounds)
    best, best_cpu = rounds.best()
    common.finish({
        "benchmark": "training",
        "machine": machine,
        "steps": args.steps,
        "training_images": len(data[1]),
        "validation_images": len(data[3]),
        "seconds_per_round": rounds.seconds,
        "cpu_seconds_per_round": rounds.cpu_seconds,
        "best_seconds": best,
        "steps_per_second": {name: round(args.steps / s, 1) for name, s in best.items()},
        "final_validation_accuracy": rounds.results,
        "ratios": {
            "ours_speedup_over_eager": round(best["eager"] / best["ours"], 2),
            "ours_speedup_over_eager_cpu": round(best_cpu["eager"] / best_cpu["ours"], 2),
        },
    }, args.out)


if __name__ == "__main__":
    main()

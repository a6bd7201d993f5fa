"""Long tails: the classes head's ways against scikit-learn's balanced logistic regression, in one run.

    python bench/longtail.py [--out bench/results/longtail.json] [--seeds 0 1 2]

Sets (bench/longtail_data.py): each shared set split by group as train.sh splits it (20% test,
10% validation, near-duplicates kept together); the training part cut down to a long tail:
sign-digits' ten classes to 140, 90, 60, 40, 25, 16, 10, 6, 4, 3 photos (the first holds ~110,
all it has) and flowers' five to 140, 40, 12, 5, 3; each cut at random by --seeds. The test
part is judged whole, so every class is judged on 27-130 photos it never trained on. The
balanced sets (flowers, superheroes, sign-digits whole) check that the new default costs
nothing where there is no tail.

Ways, all on the same cached MobileNet v1 bottlenecks and the product's schedule (4000 steps,
SGD 0.01, batches of 100):
- old:        --class_weights none, retrain.py's class-uniform batches (the default before)
- balanced:   --class_weights balanced
- adjusted:   --class_weights adjusted (head/balance.py), tau 1.5, the linear head
- default:    what a default train.sh runs: --recipe_mode auto's choice (head/recipe_choice.py: its
              candidates and logit adjustment's tau chosen by cross-validation on the training
              part only), then that recipe trained with that tau
- sklearn_lr: LogisticRegression(class_weight="balanced") on L2-normalised bottlenecks
- ncm:        nearest class mean of the L2-normalised bottlenecks (cosine)
Reported: accuracy, macro F1, per-class recall, and the classes at zero recall.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import common
import longtail_data

SETS = {"sign-digits": longtail_data.SIGN_DIGITS_TAIL, "flowers": longtail_data.FLOWERS_TAIL}
BALANCED = ("flowers", "superheroes", "sign-digits")


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def head_way(mode: str):
    def fit(photos: longtail_data.Photos, seed: int):
        from tensorguess.config import TrainConfig
        from tensorguess.head.balance import balance
        from tensorguess.head.train import Rows, Schedule, train_head

        cfg = TrainConfig()
        classes = len(photos.labels)
        chosen = balance(mode, photos.training.y, classes)
        schedule = Schedule(cfg.how_many_training_steps, cfg.learning_rate, cfg.train_batch_size,
                            cfg.validation_batch_size, cfg.eval_step_interval, seed)
        layer, _ = train_head(Rows(photos.training.x, photos.training.y),
                              Rows(photos.validation.x, photos.validation.y), classes, schedule,
                              class_weights=chosen.weights, logit_offsets=chosen.offsets)
        return layer.logits(photos.testing.x).argmax(axis=1)
    return fit


def default_way(photos: longtail_data.Photos, seed: int):
    from tensorguess.config import TrainConfig
    from tensorguess.head import recipe_choice
    from tensorguess.head.balance import balance
    from tensorguess.head.train import Rows, Schedule, train_head

    classes = len(photos.labels)
    truth = photos.training.y
    choice = recipe_choice.choose(TrainConfig(), photos.training.x, np.arange(len(truth)), truth, classes,
                                  seed)
    cfg = choice.cfg
    chosen = balance(cfg.class_weights, truth, classes, choice.tau)
    schedule = Schedule(cfg.how_many_training_steps, cfg.learning_rate, cfg.train_batch_size,
                        cfg.validation_batch_size, cfg.eval_step_interval, seed)
    layer, _ = train_head(Rows(photos.training.x, truth), Rows(photos.validation.x, photos.validation.y),
                          classes, schedule, cfg.head(), class_weights=chosen.weights,
                          logit_offsets=chosen.offsets)
    print(f"    {choice.line}", flush=True)
    return layer.logits(photos.testing.x).argmax(axis=1)


def sklearn_lr(photos: longtail_data.Photos, seed: int):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(class_weight="balanced", max_iter=5000, random_state=seed)
    model.fit(l2(photos.training.x), photos.training.y)
    return model.predict(l2(photos.testing.x))


def ncm(photos: longtail_data.Photos, seed: int):
    x = l2(photos.training.x)
    means = l2(np.stack([x[photos.training.y == k].mean(axis=0) for k in range(len(photos.labels))]))
    return (l2(photos.testing.x) @ means.T).argmax(axis=1)


WAYS = {"old": head_way("none"), "balanced": head_way("balanced"), "adjusted": head_way("adjusted"),
        "default": default_way, "sklearn_lr": sklearn_lr, "ncm": ncm}


def judged(photos: longtail_data.Photos, predicted: np.ndarray) -> dict:
    from tensorguess import metrics

    classes = len(photos.labels)
    matrix = metrics.confusion_matrix(photos.testing.y, predicted, classes)
    recall = metrics.per_class(matrix)["recall"]
    f1 = metrics.per_class(matrix)["f1"]
    trained = np.bincount(photos.training.y, minlength=classes)
    return {"accuracy": round(float(np.trace(matrix) / matrix.sum()), 4),
            "macro_f1": round(float(f1.mean()), 4),
            "recall": [round(float(r), 3) for r in recall],
            "zero_recall_with_3_or_more": [photos.labels[k] for k in range(classes)
                                           if recall[k] == 0 and trained[k] >= 3]}


def run_set(photos: longtail_data.Photos, seed: int) -> dict:
    result = {"training": np.bincount(photos.training.y).tolist(),
              "validation": np.bincount(photos.validation.y, minlength=len(photos.labels)).tolist(),
              "testing": np.bincount(photos.testing.y).tolist()}
    for name, way in WAYS.items():
        started = time.perf_counter()
        predicted = way(photos, seed)
        result[name] = {**judged(photos, predicted), "seconds": round(time.perf_counter() - started, 2)}
        print(f"  {name:10s} acc {result[name]['accuracy']:.3f} macro F1 {result[name]['macro_f1']:.3f} "
              f"recall {result[name]['recall']}", flush=True)
    return result


def main() -> None:
    parse = common.parser(__doc__.splitlines()[0])
    parse.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parse.add_argument("--cache", type=Path, default=Path("/tmp/tensorguess-bench-longtail"))
    args = parse.parse_args()
    common.quiet_tensorflow()
    results = {"machine": common.machine(), "long_tails": {}, "balanced": {}}
    split = {name: longtail_data.features_and_split(common.SHARED / "datasets" / name, args.cache)
             for name in ("sign-digits", "flowers", "superheroes")}
    for name, counts in SETS.items():
        for seed in args.seeds:
            print(f"{name} long tail, seed {seed}", flush=True)
            tail = longtail_data.long_tail(split[name], counts, seed)
            results["long_tails"][f"{name}/{seed}"] = run_set(tail, seed)
    for name in BALANCED:
        print(f"{name} whole", flush=True)
        results["balanced"][name] = run_set(split[name], args.seeds[0])
    tails = results["long_tails"].values()
    results["mean_macro_f1"] = {way: round(float(np.mean([t[way]["macro_f1"] for t in tails])), 4)
                                for way in WAYS}
    common.finish(results, args.out)


if __name__ == "__main__":
    main()

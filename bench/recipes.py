"""Recipes: test accuracy, macro F1, ECE and time of each head and augmentation recipe, and Keras' way.

    python bench/recipes.py [--datasets flowers sign-digits] [--seeds 1 2] [--keras-epochs 5]
                            [--work /work/scale/recipes] [--out bench/results/recipes.json]
                            [--plot docs/recipes.png]

Each recipe is a real `retrain()` (train.sh's whole run: bottlenecks from the shared
cache, data checks, the stable split, training 4000 steps, calibration, export,
report) on ../shared's flowers and sign-digits with MobileNet v1. The numbers are of
the test split, which no recipe trains on and none of them augments; each recipe runs
once per seed (the split is the same for every seed: it is by content), and its mean
and spread are reported. Time: the wall time of the run with every bottleneck (and
every variant) already cached, which is what each rerun costs; the first run's time of
the augmented recipes (computing the variants) is reported too.

The baseline is what Keras' transfer-learning tutorial does: image_dataset_from_directory
over the same training photos (symlinked by our split, so both see the same photos),
the same module as a frozen layer and a Dense softmax, `fit` with Adam for
--keras-epochs epochs, no cache (the network runs over every photo every epoch). After
each epoch it is scored on the same test photos; reported: its accuracy per epoch, the
time it took, and the time until it first reached the default recipe's accuracy.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from pathlib import Path

import common

DATASETS = {"flowers": common.SHARED / "datasets" / "flowers", "sign-digits": common.SIGN_DIGITS}

# name -> TrainConfig settings; the first is today's default (retrain.py's head).
RECIPES = {
    "retrain.py head (default)": {},
    "linear, adam": {"optimizer": "adam", "learning_rate": 0.001},
    "512 hidden, adam, dropout 0.2": {"hidden_units": 512, "dropout_rate": 0.2, "optimizer": "adam",
                                      "learning_rate": 0.001},
    "512 hidden, adam, dropout 0.2, smoothing 0.1": {"hidden_units": 512, "dropout_rate": 0.2,
                                                     "optimizer": "adam", "learning_rate": 0.001,
                                                     "label_smoothing": 0.1},
    "--augment 10": {"augment": 10},
    "--augment 10, 512 hidden, adam, dropout 0.2": {"augment": 10, "hidden_units": 512, "dropout_rate": 0.2,
                                                    "optimizer": "adam", "learning_rate": 0.001},
    # head/fine_tune.py, with its defaults (Adam 1e-4, the --augment_* recipe on the fly)
    "--fine_tune (last 4 layers, 3 epochs)": {"fine_tune": True, "fine_tune_layers": "4"},
    "--fine_tune_layers all (3 epochs)": {"fine_tune": True, "fine_tune_layers": "all"},
}


def config(work: Path, images: Path, seed: int, settings: dict):
    from tensorguess.config import TrainConfig

    cfg = TrainConfig(image_dir=images, tfhub_module=str(common.MODULE), bottleneck_dir=work / "bottlenecks",
                      output_graph=work / "retrained_graph.pb", output_labels=work / "retrained_labels.txt",
                      saved_model_dir=work / "saved_model", train_log=work / "train_log.json",
                      report_dir=work / "report", random_seed=seed)
    cfg.recipe_mode = "fixed"  # each row is the recipe it names (bench/recipe_choice.py runs the choice)
    for name, value in settings.items():
        setattr(cfg, name, value)
    return cfg


def run_recipe(work: Path, images: Path, seed: int, settings: dict) -> dict:
    from tensorguess.retrain import retrain

    started = time.perf_counter()
    log = retrain(config(work, images, seed, settings), say=lambda line: None, warn=lambda line: None)
    seconds = time.perf_counter() - started
    report = json.loads((work / "report" / "report.json").read_text())
    return {"seconds": round(seconds, 2), "accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
            "ece": report["ece"], "test_n": report["n"], "log": log}


def summarise(runs: list[dict]) -> dict:
    def mean(key):
        return round(statistics.fmean(r[key] for r in runs), 4)

    def spread(key):
        return round(max(r[key] for r in runs) - min(r[key] for r in runs), 4)

    return {"accuracy": mean("accuracy"), "accuracy_spread": spread("accuracy"), "macro_f1": mean("macro_f1"),
            "ece": mean("ece"), "seconds": mean("seconds"), "test_n": runs[0]["test_n"],
            "per_seed": [{k: r[k] for k in ("accuracy", "macro_f1", "ece", "seconds")} for r in runs]}


def split_folders(work: Path, images: Path, log: dict) -> tuple[Path, Path]:
    """Symlink folders train/<label>/ and test/<label>/ holding our split's photos."""
    from tensorguess.data import dataset
    from tensorguess.data.images import content_hash

    image_set = dataset.discover(images)
    wanted = {name: set(log["split_digests"][name]) for name in ("training", "testing")}
    folders = {name: work / f"keras-{name}" for name in wanted}
    for folder in folders.values():
        shutil.rmtree(folder, ignore_errors=True)
        for label in image_set.labels:
            (folder / label).mkdir(parents=True)
    for label in image_set.labels:
        for path in image_set.files[label]:
            digest = content_hash(path)
            for name, digests in wanted.items():
                if digest in digests:
                    link = folders[name] / label / path.name
                    if not link.exists():
                        os.symlink(path, link)
    return folders["training"], folders["testing"]


def keras_baseline(train_dir: Path, test_dir: Path, epochs: int, target: float) -> dict:
    """Keras' transfer-learning tutorial on our split: no cache, the module every epoch."""
    import keras
    import tensorflow as tf

    size = 224
    options = {"image_size": (size, size), "batch_size": 32, "label_mode": "int", "seed": 1}
    train = keras.utils.image_dataset_from_directory(train_dir, shuffle=True, **options)
    test = keras.utils.image_dataset_from_directory(test_dir, shuffle=False, **options)
    classes = len(train.class_names)
    module = tf.saved_model.load(str(common.MODULE))

    class Module(keras.layers.Layer):  # the tutorial's hub.KerasLayer(trainable=False)
        def call(self, images):
            return module(images)

    model = keras.Sequential([keras.Input((size, size, 3)), keras.layers.Rescaling(1 / 255), Module(),
                              keras.layers.Dense(classes, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    per_epoch, reached, training = [], None, 0.0
    for epoch in range(1, epochs + 1):
        seconds, _ = common.timed(model.fit, train.prefetch(tf.data.AUTOTUNE), epochs=1, verbose=0)
        training += seconds  # scoring the test photos after each epoch is not the baseline's time
        _, accuracy = model.evaluate(test, verbose=0)
        per_epoch.append({"epoch": epoch, "seconds_training": round(training, 1),
                          "test_accuracy": round(accuracy, 4)})
        print(f"  keras epoch {epoch}: {per_epoch[-1]}", flush=True)
        if reached is None and accuracy >= target:
            reached = round(training, 1)
    return {"epochs": per_epoch, "seconds_to_reach_default_accuracy": reached, "target": target}


def test_time_augmentation(work: Path, test_dir: Path) -> dict:
    """The model in `work` on the test photos, plain and with --tta: accuracy, F1, ECE, time."""
    from tensorguess import metrics
    from tensorguess.data.images import list_files
    from tensorguess.score.predict import Classifier

    found = {}
    for name, tta in (("plain", False), ("tta", True)):
        with Classifier(work / "retrained_graph.pb", work / "retrained_labels.txt", tta=tta) as classifier:
            labels = classifier.labels
            paths = [p for label in sorted(os.listdir(test_dir)) for p in list_files(test_dir / label)]
            truth = [labels.index(p.parent.name.replace("_", " ")) for p in paths]
            seconds, scored = common.timed(lambda c=classifier, p=paths: list(c.score_files(p)))
        summary = metrics.summary([s.scores for s in scored], truth, labels)
        found[name] = {key: summary[key] for key in ("accuracy", "macro_f1", "ece")}
        found[name].update(seconds=round(seconds, 2), images_per_s=round(len(paths) / seconds, 1),
                           n=len(paths))
        print(f"  {name}: {found[name]}", flush=True)
    return found


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results["datasets"]), figsize=(6 * len(results["datasets"]), 4.2))
    axes = axes if hasattr(axes, "__len__") else [axes]
    for axis, (dataset, found) in zip(axes, results["datasets"].items(), strict=True):
        names = list(found["recipes"])  # those measured, in the order they ran
        accuracies = [found["recipes"][n]["accuracy"] * 100 for n in names]
        spreads = [found["recipes"][n]["accuracy_spread"] * 100 / 2 for n in names]
        axis.barh(range(len(names)), accuracies, xerr=spreads, color="#4c72b0")
        keras = found.get("keras")
        if keras:
            best = max(e["test_accuracy"] for e in keras["epochs"]) * 100
            axis.axvline(best, color="#dd8452", linestyle="--",
                         label=f"Keras tutorial, best of {len(keras['epochs'])} epochs")
            axis.legend(fontsize=8, loc="lower right")
        for k, name in enumerate(names):
            recipe = found["recipes"][name]
            label = f"{accuracies[k]:.1f}%  ({recipe['seconds']:.0f} s)"
            axis.text(accuracies[k] + spreads[k] + 0.15, k, label, va="center", fontsize=8)
        axis.set_yticks(range(len(names)), names, fontsize=8)
        axis.invert_yaxis()
        low = min(accuracies) - 3
        axis.set_xlim(low, 100.5)
        axis.set_xlabel("test accuracy, %")
        axis.set_title(f"{dataset} (test N={found['recipes'][names[0]]['test_n']})", fontsize=10)
    figure.suptitle("Recipes on MobileNet v1 bottlenecks (mean of seeds; bars: spread)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parse = common.parser(__doc__.splitlines()[0])
    parse.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parse.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parse.add_argument("--keras-epochs", type=int, default=5)
    parse.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=list(RECIPES),
                       help="run only these (the first is the default recipe, which Keras and TTA use)")
    parse.add_argument("--merge", action="store_true", help="keep the other recipes' figures in --out")
    parse.add_argument("--work", type=Path, default=Path("/work/scale/recipes"))
    parse.add_argument("--plot", type=Path, default=common.REPO / "docs" / "recipes.png")
    args = parse.parse_args()
    common.quiet_tensorflow()
    earlier = json.loads(args.out.read_text()) if args.merge and args.out and args.out.exists() else {}
    results = {"machine": common.machine(), "seeds": args.seeds, "recipes": RECIPES,
               "datasets": earlier.get("datasets", {})}
    default = next(iter(RECIPES))
    for dataset in args.datasets:
        images, work = DATASETS[dataset], args.work / dataset
        work.mkdir(parents=True, exist_ok=True)
        found: dict = results["datasets"].setdefault(dataset, {"recipes": {}, "first_run_seconds": {}})
        for name in args.recipes:
            settings = RECIPES[name]
            first = run_recipe(work, images, args.seeds[0], settings)  # fills the caches
            found["first_run_seconds"][name] = first["seconds"]
            # Fine-tuning caches nothing: its first run is its run for the first seed.
            later = args.seeds[1:] if settings.get("fine_tune") else args.seeds
            runs = ([first] if settings.get("fine_tune") else []) + [
                run_recipe(work, images, seed, settings) for seed in later]
            found["recipes"][name] = summarise(runs)
            shown = {k: v for k, v in found["recipes"][name].items() if k != "per_seed"}
            print(f"{dataset} {name}: {json.dumps(shown)}", flush=True)
            if name == default:
                default_log = runs[0]["log"]
        if args.keras_epochs and default in args.recipes:
            train_dir, test_dir = split_folders(work, images, default_log)
            target = found["recipes"][default]["accuracy"]
            found["keras"] = keras_baseline(train_dir, test_dir, args.keras_epochs, target)
            run_recipe(work, images, args.seeds[0], {})  # the default recipe's model again, for TTA
            found["test_time_augmentation"] = test_time_augmentation(work, test_dir)
        found["recipes"] = {name: found["recipes"][name] for name in RECIPES if name in found["recipes"]}
    plot(results, args.plot)
    common.finish(results, args.out)


if __name__ == "__main__":
    main()

"""One whole retraining run: images -> dataset -> bottlenecks -> train -> export -> log."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tensorguess import publish
from tensorguess.checks import data_checks
from tensorguess.config import TrainConfig
from tensorguess.data import dataset
from tensorguess.data.labels_csv import read_labels_csv
from tensorguess.export import frozen
from tensorguess.features import bottlenecks, modules
from tensorguess.features.shared_matrix import aligned_empty, gather_rows
from tensorguess.head import recipe_choice
from tensorguess.head.balance import TAU, balance, imbalance_warning, small_class_warning
from tensorguess.head.calibration import Calibration, calibrate
from tensorguess.head.train import EvalPoint, FinalLayer, Rows, Schedule, TrainingDiverged, train_head
from tensorguess.metrics import softmax
from tensorguess.model_dir import TrainLog
from tensorguess.report import document


def _say(line: str) -> None:
    print(line, flush=True)


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def retrain(cfg: TrainConfig, say: Callable[[str], None] = _say,
            warn: Callable[[str], None] = _warn) -> dict:
    """Train and export a classifier as `cfg` says; returns what train_log.json holds.

    The one training writing into the graph's folder (a second one there is refused), whose
    model and log are published together: a kill leaves all the old or all the new (publish.py).
    """
    cfg.check()
    folder = Path(cfg.output_graph).parent
    outputs = [Path(path).name for path in (cfg.output_graph, cfg.output_labels, cfg.saved_model_dir,
                                             cfg.train_log) if path]
    modules.check(cfg.tfhub_module, cfg.trust_graph)  # a refused module leaves DIR untouched
    folder.mkdir(parents=True, exist_ok=True)  # the lock lives in it; a first training makes it
    with publish.writing(folder, say, outputs), publish.Publication(folder) as publication:
        return _retrain(cfg, publication, say, warn)


def _retrain(cfg: TrainConfig, publication: publish.Publication, say: Callable[[str], None],
             warn: Callable[[str], None]) -> dict:
    started = time.perf_counter()
    # Refuse a report folder holding someone else's files now, not after the training.
    document.check_out_dir(cfg.report_dir)
    image_set = _image_set(cfg, say, warn)
    spec, loaded = _module(cfg, say, warn)
    cache = bottlenecks.BottleneckCache(cfg.bottleneck_dir, spec, warn=warn)
    extraction = _extract(cfg, image_set.all_files(), spec, loaded, cache, warn)
    say(extraction.summary())
    checks, parts = _checked_split(cfg, image_set, extraction, spec, cache, say, warn)
    seed = _seed(cfg)
    if cfg.random_seed is None:  # the test figure moves a photo or two with it (benchmarks, section 20)
        say(f"Seed: {seed}, drawn (the head's first weights and batches); --random_seed {seed} repeats "
            "this training")
    cfg, recipe = _recipe(cfg, image_set, parts, extraction, seed, say)  # on the training part only
    trained = _train(cfg, image_set, parts, extraction, spec, loaded, cache, seed, say, warn,
                     tau=recipe.get("tau"))
    tested = _test(cfg, image_set, parts, extraction, trained, seed, say)
    frozen.export(spec, loaded, trained.layer, image_set.labels, cfg.output_graph, cfg.output_labels,
                  cfg.saved_model_dir, cfg.final_tensor_name, publication)  # staged, published with the log
    log = train_log(cfg, seed, spec, image_set, parts, checks, extraction, trained, tested,
                    time.perf_counter() - started)
    log["recipe"] = recipe
    written = TrainLog.of_run(log)  # with the model's kind, and the folders it read
    written.stage(publication.write, Path(cfg.train_log), Path(cfg.output_graph).parent)
    publication.commit()
    say(f"Wrote {cfg.output_graph}, {cfg.output_labels}, {cfg.saved_model_dir} and {cfg.train_log}")
    document.write(cfg.report_dir, tested.evaluation, train_log=written, report=tested.summary)
    say(f"Wrote the test report {Path(cfg.report_dir) / 'report.html'}")
    return written.data


def _image_set(cfg: TrainConfig, say, warn) -> dataset.ImageSet:
    """The labelled photos (a folder per class, or a labels CSV), said and checked trainable."""
    if cfg.labels_csv:
        image_set = read_labels_csv(cfg.labels_csv, warn=warn)
    else:
        image_set = dataset.discover(cfg.image_dir, warn=warn)
    if image_set.origin:
        say(image_set.origin)
    say(f"Found {len(image_set.all_files())} files in {len(image_set.labels)} categories: "
        + ", ".join(f"{label} ({len(image_set.files[label])})" for label in image_set.labels))
    dataset.require_trainable(image_set, image_set.files)  # before the bottleneck pass
    return image_set


def _module(cfg: TrainConfig, say, warn):
    """The feature module, loaded: (its spec, the loaded module)."""
    say(f"Loading module {cfg.tfhub_module}")
    spec, loaded = modules.resolve(cfg.tfhub_module, cfg.input_size, cfg.input_range,
                                   trusted=cfg.trust_graph)
    say(f"Module input {spec.input_size}x{spec.input_size}, values in "
        f"[{spec.value_range[0]:g}, {spec.value_range[1]:g}]")
    not_features = bottlenecks.classification_warning(spec, loaded)
    if not_features:
        warn(not_features)
    return spec, loaded


def _checked_split(cfg: TrainConfig, image_set, extraction, spec, cache, say, warn):
    """The data checks and the split they shape (near-duplicates kept on one side), said."""
    readable = {
        label: [p for p in image_set.files[label] if extraction.readable(p)]
        for label in image_set.labels
    }
    checks = data_checks.duplicate_checks(image_set, readable, extraction, cfg.near_duplicate_threshold,
                                          cache.dir, warn)
    parts = dataset.split(image_set, readable, cfg.testing_percentage, cfg.validation_percentage,
                          groups=checks.groups)
    checks.split_notes = parts.notes
    checks.suspected_label_errors, checks.label_errors_found = data_checks.label_checks(
        image_set, readable, extraction, spec.identity, cache.dir, warn)
    for line in checks.console_lines(image_set):
        say(line)
    sizes = parts.sizes()
    say(f"Split: {sizes['training']} training, {sizes['validation']} validation, "
        f"{sizes['testing']} testing images")
    for note in parts.notes:
        say(f"Split: {note}")
    counts = {label: len(files) for label, files in readable.items()}
    for line in (small_class_warning(counts), imbalance_warning(counts, cfg.class_weights)):
        if line:
            warn(line)
    return checks, parts


def _seed(cfg: TrainConfig) -> int:
    """--random_seed; else an interrupted fine-tuning's (to resume it); else a fresh one."""
    seed = cfg.random_seed if cfg.random_seed is not None else random.SystemRandom().randrange(2**31)
    if cfg.random_seed is None and cfg.fine_tune:
        from tensorguess.head.fine_tune import saved_seed

        seed = saved_seed(Path(cfg.train_log).parent) or seed
    return seed


@dataclass
class Trained:
    """The head (fine-tuned with the module's last layers where asked), and what its training logs."""

    layer: FinalLayer
    history: list[EvalPoint]
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    augmentation: dict | None
    class_weights: np.ndarray | None
    summaries: Path | None  # the TensorBoard run folder
    seconds: float  # the head's training (not the fine-tuning)
    fine_tuned: dict | None
    calibration: Calibration
    logit_offsets: np.ndarray | None = None  # balance.py's, already in the layer's biases


def _train(cfg: TrainConfig, image_set, parts: dataset.Split, extraction, spec, loaded, cache, seed: int,
           say, warn, tau: float | None = None) -> Trained:
    """The head on the split's features (and their variants), then fine-tuning and calibration;
    `tau`: logit adjustment's strength as the recipe choice found it (None: balance.py's TAU)."""
    # The head reads its training rows from the extraction's matrix itself, through their
    # row numbers: no copy of four fifths of it (at 100k photos, 330 MB and 1.5 s).
    train_paths, train_y = parts.files("training")
    train_x, train_rows = extraction.features, extraction.row_of(train_paths)
    augmentation = None
    if cfg.variants():
        train_x, train_y, augmentation = _with_variants(cfg, train_paths, extraction,
                                                        spec, loaded, cache, train_rows, train_y, say, warn)
        train_rows = None
    val_x, val_y = parts.arrays("validation", extraction.matrix)
    test_x, test_y = parts.arrays("testing", extraction.matrix)
    # From here on the training set and the other parts' copies hold the features.
    extraction.features = np.zeros((0, extraction.features.shape[1]), np.float32)

    chosen = balance(cfg.class_weights, train_y, len(image_set.labels), TAU if tau is None else tau)
    weights = chosen.weights
    training_started = time.perf_counter()
    layer, history, summaries = _head(cfg, Rows(train_x, train_y, train_rows), Rows(val_x, val_y),
                                      len(image_set.labels), weights, seed, say, chosen.offsets)
    training_seconds = time.perf_counter() - training_started

    fine_tuned = None
    head_accuracy = (float(np.mean(layer.logits(val_x).argmax(axis=1) == val_y)) if len(val_y)
                     else float("nan"))
    if cfg.fine_tune:  # the module's last layers too, kept only where validation says they beat the head
        from tensorguess.head import fine_tune_choice

        layer, val_x, test_x, fine_tuned = fine_tune_choice.run(
            cfg, spec, loaded, layer, parts, extraction.digests, seed, say, warn,
            (head_accuracy, val_x, test_x), chosen.offsets)
    else:
        offer = recipe_choice.fine_tune_offer(head_accuracy, len(parts.files("training")[0]),
                                              cfg.fine_tune_epochs)
        if offer:
            say(offer)

    calibration = calibrate(layer.logits(val_x), val_y, cfg.calibrate)
    layer.temperature = calibration.temperature
    say(_calibration_line(calibration))
    return Trained(layer, history, val_x, val_y, test_x, test_y, augmentation, weights, summaries,
                   training_seconds, fine_tuned, calibration, logit_offsets=chosen.offsets)


def _recipe(cfg: TrainConfig, image_set, parts: dataset.Split, extraction, seed: int, say):
    """--recipe_mode auto's choice (or the recipe as given), said: (the config to train, its log)."""
    paths, truth = parts.files("training")
    choice = recipe_choice.choose(cfg, extraction.features, extraction.row_of(paths), truth,
                                  len(image_set.labels), seed)
    say(choice.line)
    return choice.cfg, choice.log


def _head(cfg: TrainConfig, training: Rows, validation: Rows, classes: int, weights, seed: int, say,
          offsets=None):
    """The head's training, each evaluation said (and written as TensorBoard summaries where asked):
    (the layer, the evaluations, the summaries' folder or None)."""
    summaries = _summary_writer(cfg)

    def on_eval(point: EvalPoint) -> None:
        say(f"{_stamp()}: Step {point.step}: Train accuracy = {point.train_accuracy * 100:.1f}%")
        say(f"{_stamp()}: Step {point.step}: Cross entropy = {point.cross_entropy:.6f}")
        say(f"{_stamp()}: Step {point.step}: Validation accuracy = "
            f"{point.validation_accuracy * 100:.1f}% (N={point.validation_n})")
        if summaries:
            summaries.write(point)

    schedule = Schedule(cfg.how_many_training_steps, cfg.learning_rate, cfg.train_batch_size,
                        cfg.validation_batch_size, cfg.eval_step_interval, seed)
    try:
        layer, history = train_head(training, validation, classes, schedule, cfg.head(), on_eval, weights,
                                    offsets)
    except TrainingDiverged as error:
        # Nothing has been written yet: the model already in place stays as it was.
        raise TrainingDiverged(f"{error}: nothing was written, {cfg.output_graph} is as it was; "
                               f"try a smaller --learning_rate than {cfg.learning_rate:g}",
                               error.step) from error
    finally:
        if summaries:
            summaries.close()
    if summaries:
        say(f"TensorBoard summaries in {summaries.folder}")
    return layer, history, summaries.folder if summaries else None


@dataclass
class Tested:
    """The trained head on the test split: the report's input and content, and the accuracy."""

    evaluation: document.Evaluation
    summary: dict  # document.build(evaluation)
    accuracy: float


def _test(cfg: TrainConfig, image_set, parts: dataset.Split, extraction, trained: Trained, seed: int,
          say) -> Tested:
    """The final test (on a sample of --test_batch_size where asked), its summary said."""
    layer, test_x, test_y = trained.layer, trained.test_x, trained.test_y
    test_paths = parts.files("testing")[0]
    if cfg.test_batch_size > 0 and len(test_y) > cfg.test_batch_size:
        chosen = np.random.default_rng(seed).choice(len(test_y), cfg.test_batch_size, replace=False)
        test_x, test_y = test_x[chosen], test_y[chosen]
        test_paths = [test_paths[i] for i in chosen]
    probabilities = layer.probabilities(test_x)
    predicted = probabilities.argmax(axis=1) if len(test_y) else test_y
    accuracy = float(np.mean(predicted == test_y)) if len(test_y) else float("nan")
    say(f"Final test accuracy = {accuracy * 100:.1f}% (N={len(test_y)})")
    evaluation = document.Evaluation(
        labels=image_set.labels, truth=test_y, probabilities=probabilities, paths=test_paths,
        root=image_set.root,
        source=f"test split of {image_set.root}", classifier=str(cfg.output_graph),
        unreadable=extraction.skipped,
        uncalibrated=softmax(layer.logits(test_x)) if layer.temperature != 1.0 else None,
        temperature=layer.temperature, calibration_fit=trained.calibration.as_json(),
    )
    summary = document.build(evaluation)
    for line in document.console_lines(summary):
        say(line)
    if cfg.print_misclassified_test_images:
        say("=== MISCLASSIFIED TEST IMAGES ===")
        for wrong in summary["misclassified"]:  # the most confident mistakes first
            say(f"{wrong['file']:>70}  {wrong['predicted']} (true: {wrong['true']})")
    return Tested(evaluation, summary, accuracy)


def train_log(cfg: TrainConfig, seed: int, spec, image_set, parts: dataset.Split, checks, extraction,
              trained: Trained, tested: Tested, total_seconds: float) -> dict:
    """What train_log.json holds: the run's settings, data, training and test, as plain JSON."""
    weights = trained.class_weights
    return {
        "flags": {**cfg.as_json(), "random_seed": seed},
        "module": spec.describe(),
        "labels": image_set.labels,
        "split_sizes": parts.sizes(),
        "split_sizes_per_class": parts.per_class_sizes(),
        "data_checks": checks.as_json(image_set),
        # Content hashes of each split: evaluate.sh counts the photos it is given that are these.
        "split_digests": {name: sorted({extraction.digests[p] for p in parts.files(name)[0]})
                          for name in dataset.SPLITS},
        "unreadable_files": [{"file": str(s.path), "reason": s.reason} for s in extraction.skipped],
        "bottlenecks": {"computed": extraction.computed, "from_cache": extraction.from_cache,
                        "seconds": round(extraction.seconds, 3)},
        "steps": [point.as_json() for point in trained.history],
        "head": cfg.head().describe(),
        "augmentation": trained.augmentation,
        "fine_tune": trained.fine_tuned,
        "class_weights": None if weights is None else dict(zip(image_set.labels, weights.tolist(),
                                                                strict=True)),
        "logit_adjustment": None if trained.logit_offsets is None else dict(
            zip(image_set.labels, trained.logit_offsets.tolist(), strict=True)),
        "calibration": trained.calibration.as_json(),
        "summaries": str(trained.summaries) if trained.summaries else None,
        "final_test_accuracy": tested.accuracy,
        "test_n": int(len(tested.evaluation.truth)),
        "misclassified_test_images": tested.summary["misclassified"],
        "training_seconds": round(trained.seconds, 3),
        "total_seconds": round(total_seconds, 3),
    }


def _with_variants(cfg: TrainConfig, paths: list[Path], extraction, spec, loaded, cache,
                   train_rows: np.ndarray, train_y: np.ndarray, say, warn):
    """The training arrays with every training photo's distorted variants added, and their log:
    the photos' rows of the extraction's matrix (`train_rows`), then their variants'."""
    recipe, count = cfg.recipe(), cfg.variants()
    say(f"Augmentation: {recipe.describe()}")
    variants = bottlenecks.extract_variants(extraction, paths, recipe, count, spec, loaded, cache,
                                            cfg.bottleneck_batch_size, warn=warn)
    say(variants.summary(len(paths)))
    rows = [variants.rows([extraction.digests[p]]) for p in paths]
    truth = np.concatenate([train_y] + [np.full(len(r), label, np.int64) for r, label in zip(rows, train_y,
                                                                                            strict=True)])
    # One aligned matrix, gathered straight into: the head's training reads it in place.
    features = aligned_empty((len(truth), extraction.features.shape[1]))
    gather_rows(extraction.features, train_rows, out=features[:len(train_rows)])
    if paths:
        gather_rows(variants.features, np.concatenate(rows), out=features[len(train_rows):])
    log = {"variants": count, "recipe": variants.recipe, "distortions": recipe.describe(),
           "computed": variants.computed, "from_cache": variants.from_cache,
           "seconds": round(variants.seconds, 3), "training_rows": int(len(truth)),
           "unreadable_now": [str(s.path) for s in variants.lost]}
    return features, truth, log


def _summary_writer(cfg: TrainConfig):
    if cfg.summaries_dir is None:
        return None
    from tensorguess.report.summaries import ScalarWriter, new_run_folder

    return ScalarWriter(new_run_folder(cfg.summaries_dir))


def _calibration_line(calibration) -> str:
    if not calibration.applied:
        return f"Calibration: {calibration.reason}"
    return (f"Calibration: temperature {calibration.temperature:.3f} fitted on "
            f"{calibration.validation_n} validation images (their NLL "
            f"{calibration.nll_before:.4f} -> {calibration.nll_after:.4f}, ECE "
            f"{calibration.ece_before:.4f} -> {calibration.ece_after:.4f})")


def _extract(cfg: TrainConfig, paths, spec, loaded, cache, warn) -> bottlenecks.Extraction:
    """The bottleneck pass on the chosen engine; the store is written here either way."""
    if cfg.engine != "ray":
        return bottlenecks.extract(paths, spec, loaded, cache, cfg.bottleneck_batch_size, warn=warn)
    from tensorguess.engine.choice import ray_address
    from tensorguess.engine.ray_engine import RayEngine

    with RayEngine(ray_address(cfg.ray_address), cfg.ray_photos, warn) as engine:
        return bottlenecks.extract(paths, spec, loaded, cache, cfg.bottleneck_batch_size, warn=warn,
                                   compute=engine.feature_batches(spec, cfg.bottleneck_batch_size,
                                                                  trusted=cfg.trust_graph))

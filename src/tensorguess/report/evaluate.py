"""Score a folder-per-class set of photos with a trained classifier, ours or a legacy one.

Folder names map to labels by the rule training uses (dataset.label_for: `Darth_Vader`
-> `darth vader`, `_猫_` -> `猫`), so the folders a classifier was trained from can be
evaluated as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from tensorguess.data.dataset import discover, label_for, legacy_label_for
from tensorguess.data.images import Skipped, is_hidden
from tensorguess.data.labels_csv import read_labels_csv
from tensorguess.errors import TensorGuessError
from tensorguess.metrics import softmax
from tensorguess.model_dir import TEMPERATURE, TRAIN_LOG, TrainLog
from tensorguess.report.document import Evaluation
from tensorguess.report.leaks import Leaks, content_hashes, find_leaks, reference_features
from tensorguess.score.predict import Classifier


class EvaluationError(TensorGuessError):
    """The labelled folder does not fit the classifier; the message names what to change."""


def label_index(labels: list[str]) -> dict[str, int]:
    """Label (by the label rule) -> position in the classifier's labels.

    Labels written by other tools (`Darth_Vader`) match under the same rule too,
    unless two of them would become one.
    """
    index: dict[str, int] = {}
    normalized = [label_for(label) for label in labels]
    for i, key in enumerate(normalized):
        if normalized.count(key) == 1:
            index[key] = i
    for i, label in enumerate(labels):
        index[label] = i
    return index


def labelled_files(folder: Path, labels: list[str], warn: Callable[[str], None] | None = None
                   ) -> tuple[list[Path], list[int], list[Path]]:
    """(files, index of each file's label, stray files outside any class folder).

    `folder` may be a labels CSV (labels_csv.py) instead: its test rows when it has a
    split column, else all its rows.
    """
    folder = Path(folder)
    if folder.is_file():
        image_set = read_labels_csv(folder, warn or print, only_split="testing")
        if image_set.origin and warn:
            warn(f"tensor-guess: {image_set.origin}")
    else:
        image_set = discover(folder, warn)
    if not image_set.labels:
        raise EvaluationError(
            f"{folder} has no class folders; put the photos of each label in {folder}/<label>/"
        )
    index = label_index(labels)
    position: dict[str, int] = {}  # the folder's label -> its class in the classifier
    unknown = []
    for name, label in zip(image_set.folders, image_set.labels, strict=True):
        if label in index:
            position[label] = index[label]
        elif legacy_label_for(name) in index and all(known.isascii() for known in labels):
            # A classifier trained before labels kept every script: `café` gave it `caf`.
            position[label] = index[legacy_label_for(name)]
            if warn:
                warn(f"tensor-guess: {name!r} of {folder} matched to the label "
                     f"{legacy_label_for(name)!r} by the old label rule (a-z and 0-9 only)")
        else:
            unknown.append(f"{name!r}" + (f" (label {label!r})" if label != name else ""))
    if unknown:
        raise EvaluationError(
            f"{len(unknown)} folder(s) of {folder} match no label of the classifier: "
            f"{', '.join(unknown)}; its labels are: {', '.join(labels)}"
        )
    files, truth = [], []
    for label in image_set.labels:
        files += image_set.files[label]
        truth += [position[label]] * len(image_set.files[label])
    stray = ([] if folder.is_file() else
             sorted(p for p in folder.iterdir() if p.is_file() and not is_hidden(p.name)))
    return files, truth, stray


def check_leaks(paths: list[Path], features: list, train_log: TrainLog, log_path: Path | None) -> Leaks:
    """Which scored photos are, or nearly are, photos the classifier trained on."""
    seen, seen_features, why = reference_features(train_log, log_path or Path(TRAIN_LOG))
    digests = content_hashes(paths)
    usable = features and all(f is not None for f in features)
    threshold = train_log.data_checks.get("near_duplicate_threshold")
    found = find_leaks(digests, np.stack(features) if usable else None, seen, seen_features, threshold)
    if not seen:
        found.note = f"{log_path} lists no training photos (written by an older tensor-guess)"
    elif not usable:
        found.note = ("the classifier gives no features (a graph not of ours, or a format that "
                      "returns scores only): identical photos only")
    elif why:
        found.note = f"{why}: identical photos only"
    return found


def graph_temperature(classifier: Classifier) -> float | None:
    """The temperature our exported graphs divide the logits by; None for other graphs.

    A SavedModel or TFLite classifier (score/models.py) brings the one its training logged.
    """
    classifier = getattr(classifier, "local", classifier)  # engine/ray_engine.RayClassifier's own
    if not isinstance(classifier, Classifier):
        return getattr(classifier, "temperature", None)
    try:
        tensor = classifier.graph.get_tensor_by_name(f"{TEMPERATURE}:0")
    except KeyError:
        return None
    return float(classifier.session.run(tensor))


def undo_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits) from softmax(logits / T): log p is logits / T up to a constant per row.

    Scores that underflowed to 0 are taken at float32's smallest, which only affects
    scores too small to matter.
    """
    logs = np.log(np.maximum(np.asarray(probabilities, np.float64), 1e-45))
    return softmax(logs * temperature)


def evaluate_folder(classifier: Classifier, folder: Path, classifier_name: str, batch_size: int = 32,
                    warn: Callable[[str], None] = print, show_progress: bool = True,
                    train_log: TrainLog | None = None, train_log_path: Path | None = None) -> Evaluation:
    """Score the labelled photos; with the classifier's `train_log`, also find those it has seen."""
    folder = Path(folder).resolve()
    files, truth, stray = labelled_files(folder, classifier.labels, warn)
    if stray:
        warn(f"tensor-guess: ignoring {len(stray)} file(s) directly in {folder} "
             f"(only files in class folders are scored), e.g. {stray[0].name}")
    scores, kept_truth, paths, skipped, features = [], [], [], [], []
    results = classifier.score_files(files, batch_size, show_progress=show_progress,
                                     with_features=train_log is not None)
    for result, label in zip(results, truth, strict=True):
        if isinstance(result, Skipped):
            warn(result.warning())
            skipped.append(result)
            continue
        scores.append(result.scores)
        kept_truth.append(label)
        paths.append(result.path)
        features.append(result.features)
    probabilities = (np.stack(scores) if scores else np.zeros((0, len(classifier.labels))))
    found_leaks = None
    if train_log is not None:
        found_leaks = check_leaks(paths, features, train_log, train_log_path)
    temperature = graph_temperature(classifier)
    return Evaluation(
        labels=list(classifier.labels),
        truth=np.asarray(kept_truth, np.int64),
        probabilities=probabilities,
        paths=paths,
        root=folder,
        source=f"evaluation of the labelled folder {folder.name}",
        classifier=classifier_name,
        unreadable=skipped,
        uncalibrated=(undo_temperature(probabilities, temperature)
                      if temperature not in (None, 1.0) else None),
        temperature=temperature,
        leaks=found_leaks,
    )

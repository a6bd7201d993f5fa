"""Score a folder-per-class set of photos with a trained classifier, ours or a legacy one.

Folder names map to labels by retrain.py's rule (`Darth_Vader` -> `darth vader`), so
the folders a classifier was trained from can be evaluated as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .dataset import discover, label_for
from .export import TEMPERATURE
from .images import Skipped, is_hidden
from .metrics import softmax
from .predict import Classifier
from .report import Evaluation


class EvaluationError(Exception):
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
    """(files, index of each file's label, stray files outside any class folder)."""
    folder = Path(folder)
    image_set = discover(folder, warn)
    if not image_set.labels:
        raise EvaluationError(
            f"{folder} has no class folders; put the photos of each label in {folder}/<label>/"
        )
    index = label_index(labels)
    unknown = [f"{name!r}" + (f" (label {label!r})" if label != name else "")
               for name, label in zip(image_set.folders, image_set.labels, strict=True)
               if label not in index]
    if unknown:
        raise EvaluationError(
            f"{len(unknown)} folder(s) of {folder} match no label of the classifier: "
            f"{', '.join(unknown)}; its labels are: {', '.join(labels)}"
        )
    files, truth = [], []
    for label in image_set.labels:
        files += image_set.files[label]
        truth += [index[label]] * len(image_set.files[label])
    stray = sorted(p for p in folder.iterdir() if p.is_file() and not is_hidden(p.name))
    return files, truth, stray


def graph_temperature(classifier: Classifier) -> float | None:
    """The temperature our exported graphs divide the logits by; None for other graphs."""
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
                    warn: Callable[[str], None] = print, show_progress: bool = True) -> Evaluation:
    folder = Path(folder).resolve()
    files, truth, stray = labelled_files(folder, classifier.labels, warn)
    if stray:
        warn(f"tensor-guess: ignoring {len(stray)} file(s) directly in {folder} "
             f"(only files in class folders are scored), e.g. {stray[0].name}")
    scores, kept_truth, paths, skipped = [], [], [], []
    results = classifier.score_files(files, batch_size, show_progress=show_progress)
    for result, label in zip(results, truth, strict=True):
        if isinstance(result, Skipped):
            warn(result.warning())
            skipped.append(result)
            continue
        scores.append(result.scores)
        kept_truth.append(label)
        paths.append(result.path)
    probabilities = (np.stack(scores) if scores else np.zeros((0, len(classifier.labels))))
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
    )

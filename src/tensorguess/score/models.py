"""Which classifier runs: one small factory over the formats export wrote into DIR.

guess, guessDir and evaluate (and the HTTP server) call `open_classifier`; every
classifier it returns has `labels`, `digest` (the sha1 of the file actually run),
`score_files`, `ranked` and `close`.
"""

from __future__ import annotations

from pathlib import Path

from tensorguess import publish
from tensorguess.export.formats import FILES
from tensorguess.model_dir import FINAL_TENSOR, GRAPH, LABELS, SCORED_FORMATS, TRAIN_LOG, TrainLog
from tensorguess.score.predict import Classifier, ClassifierError

# What --model accepts (model_dir.SCORED_FORMATS).
MODELS = SCORED_FORMATS


def model_path(folder: Path, model: str, graph: str = GRAPH) -> Path:
    """The file or folder in `folder` that `model` runs."""
    return Path(folder) / (graph if model == "pb" else FILES[model])


def open_classifier(folder: Path, model: str = "pb", graph: str = GRAPH,
                    labels: str = LABELS, final_tensor_name: str = FINAL_TENSOR,
                    trust_graph: bool = False, tta: bool = False):
    """The classifier of `folder` in the format `model` (one of MODELS); `tta`: test-time
    augmentation (score/tta.py), for the .pb and the .tflite models.

    Opened while no training publishes into `folder`, after finishing one a kill interrupted
    (publish.steady): the graph, its labels and its log are always of one model.
    """
    with publish.steady(Path(folder)) as where:
        return _open(Path(folder), where, model, graph, labels, final_tensor_name, trust_graph, tta)


def _open(folder: Path, where, model: str, graph: str, labels: str, final_tensor_name: str,
          trust_graph: bool, tta: bool):
    labels_path = where(folder / labels)
    if model == "pb":
        return Classifier(where(folder / graph), labels_path, final_tensor_name, trust_graph=trust_graph,
                          tta=tta)
    if model not in MODELS:
        raise ClassifierError(f"--model must be one of {', '.join(MODELS)}, not {model!r}")
    if tta and model == "saved_model":
        raise ClassifierError("--tta runs with --model pb, tflite or tflite-int8, not saved_model")
    path = where(model_path(folder, model))
    if not path.exists():
        flag = "" if model == "saved_model" else f" --format {model}"
        raise ClassifierError(f"{path} does not exist; write it with export.sh {folder}{flag}"
                              + (" (or train again)" if model == "saved_model" else ""))
    temperature = logged_temperature(where(folder / TRAIN_LOG))
    if model == "saved_model":
        from tensorguess.score.saved_model import SavedModelClassifier

        return SavedModelClassifier(path, labels_path, temperature, trust_graph=trust_graph)
    from tensorguess.score.lite import LiteClassifier

    return LiteClassifier(path, labels_path, temperature, tta=tta)


def logged_temperature(log_path: Path) -> float | None:
    """The calibration temperature train.sh recorded in DIR's log (None if none)."""
    log = TrainLog.read(log_path)
    return None if log is None else log.temperature

"""Which classifier runs: one small factory over the formats export wrote into DIR.

guess, guessDir and evaluate (and the HTTP server) call `open_classifier`; every
classifier it returns has `labels`, `digest` (the sha1 of the file actually run),
`score_files`, `ranked` and `close`.
"""

from __future__ import annotations

import json
from pathlib import Path

from tensorguess.export.formats import FILES
from tensorguess.serve.predict import Classifier, ClassifierError

# What --model accepts: every format that runs here (Core ML needs macOS).
MODELS = ("pb", "saved_model", "tflite", "tflite-int8")


def model_path(folder: Path, model: str, graph: str = "retrained_graph.pb") -> Path:
    """The file or folder in `folder` that `model` runs."""
    return Path(folder) / (graph if model == "pb" else FILES[model])


def open_classifier(folder: Path, model: str = "pb", graph: str = "retrained_graph.pb",
                    labels: str = "retrained_labels.txt", final_tensor_name: str = "final_result",
                    trust_graph: bool = False, tta: bool = False):
    """The classifier of `folder` in the format `model` (one of MODELS); `tta`: test-time
    augmentation (serve/tta.py), for the .pb and the .tflite models."""
    folder = Path(folder)
    labels_path = folder / labels
    if model == "pb":
        return Classifier(folder / graph, labels_path, final_tensor_name, trust_graph=trust_graph, tta=tta)
    if model not in MODELS:
        raise ClassifierError(f"--model must be one of {', '.join(MODELS)}, not {model!r}")
    if tta and model == "saved_model":
        raise ClassifierError("--tta runs with --model pb, tflite or tflite-int8, not saved_model")
    path = model_path(folder, model)
    if not path.exists():
        flag = "" if model == "saved_model" else f" --format {model}"
        raise ClassifierError(f"{path} does not exist; write it with export.sh {folder}{flag}"
                              + (" (or train again)" if model == "saved_model" else ""))
    temperature = logged_temperature(folder)
    if model == "saved_model":
        from tensorguess.serve.saved_model import SavedModelClassifier

        return SavedModelClassifier(path, labels_path, temperature, trust_graph=trust_graph)
    from tensorguess.serve.lite import LiteClassifier

    return LiteClassifier(path, labels_path, temperature, tta=tta)


def logged_temperature(folder: Path) -> float | None:
    """The calibration temperature train.sh recorded in folder/train_log.json (None if none)."""
    try:
        log = json.loads((Path(folder) / "train_log.json").read_text(encoding="utf-8"))
        value = (log.get("calibration") or {}).get("temperature")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None

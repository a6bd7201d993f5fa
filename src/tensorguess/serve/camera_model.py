"""Which model scores the camera's frames of a classes model: the TFLite float model export.sh wrote
from this very graph when DIR has one, else the graph serve runs.

On this 2-core AVX2 machine LiteRT (XNNPACK) runs MobileNet v1 on one 224 frame in about half the
graph's time (10.6 ms against 20.3, docs/benchmarks.md, the camera's section), and the graph was
most of a frame's time; so the camera is fast by default, with nothing to ask for, wherever the
model was exported. Photos (POST /predict, TF Serving's API) still go through --model's format, as
guess.sh scores them.

A .tflite is used only when it is this graph's: a training after the export leaves an older
network in DIR. The file keeps no record of the graph it came from (export.sh writes the same
metadata for any graph), so the check is what both compute: the same check frames through both,
their scores within SAME_SCORES of each other. Float TFLite agrees with its graph to about 1e-6;
two trainings differ by far more than 1e-3 on some frame (different heads, different scores).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tensorguess.export.formats import FILES
from tensorguess.model_dir import LABELS

SAME_SCORES = 1e-3  # the largest difference of a label's score on a check frame between the two


@dataclass
class CameraModel:
    """What runs the camera's frames: `run` (a float batch [N,S,S,3] in [0,1] -> scores [N, labels]),
    `said` (serve's start-up line), `digest` (the sha1 of the file run, /healthz's camera_model),
    and what to close with the server (`close`)."""

    run: Callable[[np.ndarray], np.ndarray]
    said: str
    digest: str | None = None
    close: Callable[[], None] = lambda: None


def check_frames(size: int) -> np.ndarray:
    """Frames both models score to tell whether they are one network: a grey one, and two of a
    fixed noise (seeded: the same frames at every start)."""
    noise = np.random.default_rng(24).random((2, size, size, 3), dtype=np.float32)
    return np.concatenate([np.full((1, size, size, 3), 0.5, np.float32), noise])


def camera_model(classifier, folder: Path, model: str, labels: str = LABELS) -> CameraModel | None:
    """The camera's model for `classifier` (opened from `folder` as --model `model`); None when the
    classifier takes no frames (an old graph fed JPEG bytes: the page sends photos)."""
    if not hasattr(classifier, "run") or getattr(classifier, "mode", "batch") != "batch":
        return None
    if model != "pb":  # the user chose a format: it runs everything, the camera included
        return CameraModel(classifier.run, f"Camera frames: {model} (--model)", classifier.digest)
    path = Path(folder) / FILES["tflite"]
    graph = CameraModel(classifier.run, "Camera frames: the graph ({why})", classifier.digest)
    if not path.is_file():
        graph.said = graph.said.format(why=f"no {path.name}; export.sh {folder} --format tflite "
                                           "runs the camera's model in about half the time")
        return graph
    from tensorguess.score.lite import LiteClassifier
    from tensorguess.score.predict import ClassifierError

    try:
        lite = LiteClassifier(path, Path(folder) / labels)
    except ClassifierError as problem:
        graph.said = graph.said.format(why=f"{problem}")
        return graph
    why = _differs(classifier, lite)
    if why:
        lite.close()
        graph.said = graph.said.format(why=f"{path} is not of this graph ({why}); export.sh {folder} "
                                           "--format tflite writes it again")
        return graph
    return CameraModel(lite.run, f"Camera frames: {path} (TFLite float, of this graph)", lite.digest,
                       lite.close)


def _differs(classifier, lite) -> str:
    """Why `lite` is not `classifier`'s network, or "" when it is."""
    if list(lite.labels) != list(classifier.labels):
        return "other labels"
    if lite.size != classifier.size:
        return f"{lite.size}-pixel input, not {classifier.size}"
    frames = check_frames(classifier.size)
    gap = float(np.abs(np.asarray(lite.run(frames)) - np.asarray(classifier.run(frames))).max())
    return f"its scores differ by up to {gap:.3g}" if gap > SAME_SCORES else ""

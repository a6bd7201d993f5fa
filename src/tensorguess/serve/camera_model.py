"""Which model scores the camera's frames: the TFLite float model export.sh wrote from this very graph
when DIR has one, else the graph serve runs. For a classes model the .tflite; for a points model its
float files (the points file, and the locate file of a model that locates first).

On this 2-core AVX2 machine LiteRT (XNNPACK) runs MobileNet v1 on one 224 frame in about half the
graph's time (10.6 ms against 20.3, docs/benchmarks.md, the camera's section), and the graph was
most of a frame's time; so the camera is fast by default, with nothing to ask for, wherever the
model was exported. A points model's tracked frame (the points stage alone, in the box the page
sends) is the same: the host's crop and the points file take 9 ms where the graph takes 15.
Photos (POST /predict, TF Serving's API) still go through --model's format, as guess.sh scores them.

A file is used only when it is this graph's: a training after the export leaves an older network
in DIR. The file keeps no record of the graph it came from (export.sh writes the same metadata for
any graph), so the check is what both compute: the same check frames through both, their scores
within SAME_SCORES of each other (points: within SAME_POINTS pixels). Float TFLite agrees with its
graph to about 1e-6 (points: 1e-4 px); two trainings differ by far more on some frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tensorguess.errors import UsageError
from tensorguess.export.formats import FILES
from tensorguess.model_dir import LABELS

SAME_SCORES = 1e-3  # the largest difference of a label's score on a check frame between the two
SAME_POINTS = 0.05  # the same of a point's place, in the check frame's pixels
POINTS_CHECK_FRAME = (320, 240)  # the page's frame (width, height)


@dataclass
class CameraModel:
    """What runs the camera's frames: `run` (classes: a float batch [N,S,S,3] in [0,1] -> scores
    [N, labels]) or `points` (a points model: a score.points.PointsScorer, whose run, run_in_boxes and
    crop_rule score the frames), `said` (serve's start-up line), `digest` (the sha1 of the files
    run, /healthz's camera_model), and what to close with the server (`close`)."""

    run: Callable[[np.ndarray], np.ndarray] | None
    said: str
    digest: str | None = None
    close: Callable[[], None] = lambda: None
    points: object | None = None


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
    from tensorguess.score.lite import LiteClassifier

    return _file_or_graph(CameraModel(classifier.run, "", classifier.digest), folder, "about half the time",
                          lambda path: LiteClassifier(path, Path(folder) / labels),
                          lambda lite: _differs(classifier, lite),
                          lambda lite, said: CameraModel(lite.run, said, lite.digest, lite.close))


def _file_or_graph(graph: CameraModel, folder: Path, faster: str, open_file, differs,
                   camera_of) -> CameraModel:
    """The camera's model of DIR's float .tflite (`open_file(path)`, made a CameraModel by `camera_of(lite,
    said)`) when there is one that opens and computes what the graph does (`differs(lite)` is ""),
    else `graph`, its line saying why not and what to do (`faster`: what the file would save)."""
    from tensorguess.score.predict import ClassifierError

    path = Path(folder) / FILES["tflite"]
    why = f"no {path.name}; export.sh {folder} --format tflite runs the camera's model in {faster}"
    if path.is_file():
        try:
            lite = open_file(path)
        except (ClassifierError, UsageError) as problem:
            why = f"{problem}"
        else:
            differs_by = differs(lite)
            if not differs_by:
                return camera_of(lite, f"Camera frames: {path} (TFLite float, of this graph)")
            lite.close()
            why = (f"{path} is not of this graph ({differs_by}); export.sh {folder} --format tflite "
                   "writes it again")
    graph.said = f"Camera frames: the graph ({why})"
    return graph


def _differs(classifier, lite) -> str:
    """Why `lite` is not `classifier`'s network, or "" when it is."""
    if list(lite.labels) != list(classifier.labels):
        return "other labels"
    if lite.size != classifier.size:
        return f"{lite.size}-pixel input, not {classifier.size}"
    frames = check_frames(classifier.size)
    gap = float(np.abs(np.asarray(lite.run(frames)) - np.asarray(classifier.run(frames))).max())
    return "" if gap <= SAME_SCORES else f"its scores differ by up to {gap:.3g}"  # nan differs too


def points_camera_model(scorer, folder: Path, model: str) -> CameraModel:
    """The camera's model for the points model `scorer` (opened from `folder` as --model `model`): its
    float TFLite files when export.sh wrote them from this graph, else the scorer itself."""
    graph = CameraModel(None, f"Camera frames: {model} (--model)", scorer.digest, points=scorer)
    if model != "pb":  # the user chose a format: it runs everything, the camera included
        return graph
    from tensorguess.score.points import open_points_model

    return _file_or_graph(graph, folder, "about two thirds of the time",
                          lambda path: open_points_model(folder, "tflite"),
                          lambda lite: _points_differ(scorer, lite),
                          lambda lite, said: CameraModel(None, said, lite.digest, lite.close, points=lite))


def _points_differ(graph, lite) -> str:
    """Why `lite` is not `graph`'s network, or "" when it is: the same points on the check frames,
    found in each whole frame, and, when both read a box they are given, read in the same box."""
    if list(lite.names) != list(graph.names):
        return "other points"
    if (graph.run_in_boxes is None) != (lite.run_in_boxes is None):
        return "one of them locates first, the other does not"
    width, height = POINTS_CHECK_FRAME
    frames = (check_frames(max(width, height))[:, :height, :width] * 255).astype(np.uint8)
    boxes = np.tile(np.array([[width / 4, height / 8, width * 3 / 4, height / 8 + width / 2]], np.float32),
                    (len(frames), 1))
    ways = [lambda scorer: scorer.run(frames)]
    if graph.run_in_boxes is not None:
        ways.append(lambda scorer: scorer.run_in_boxes(frames, boxes))
    gap = float(np.max([np.abs(np.asarray(way(lite)[0]) - np.asarray(way(graph)[0])).max() for way in ways]))
    return "" if gap <= SAME_POINTS else f"its points differ by up to {gap:.3g} px"  # nan differs too

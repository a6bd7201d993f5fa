"""What a model folder (DIR) holds: every file name, the graph's tensor names, and the training's log.

The one owner of DIR's layout: no other module spells one of these names or opens the log,
so a file renamed or a field added changes here alone. A leaf (it imports only
`strict_json`, itself a leaf), so every stage may use it.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

from tensorguess import strict_json

# ---- the files train writes into DIR, published together (publish.py)
GRAPH = "retrained_graph.pb"  # the frozen graph: decode, module, head (retrain.py's name)
LABELS = "retrained_labels.txt"  # one label a line, in the graph's class order
SAVED_MODEL = "saved_model"  # the same classifier as a SavedModel folder
TRAIN_LOG = "train_log.json"  # the training's settings, split and history (TrainLog)
MODEL_KIND = "model_kind"  # one line: the model's kind (kinds.py); absent: "classes"
# The folders the training read photos from, each path ended by a NUL byte (any path can be
# written, newlines included): what the wrappers let export read again, without parsing JSON.
TRAIN_INPUTS = ".train_inputs"
# A points model's files beside its graph (GRAPH) and SavedModel (SAVED_MODEL), which it names as
# the classes' do: the kind (MODEL_KIND) tells which model DIR holds.
POINT_NAMES = "point_names.txt"  # one point's name a line, in the graph's point order
POINTS_SKELETON = "points_skeleton.json"  # {"names", "skeleton", "flip_pairs"}: 0-based pairs of points
# ---- what export writes beside the graph, by --format name
EXPORTS = {"tflite": "retrained_graph.tflite", "tflite-int8": "retrained_graph_int8.tflite",
           "coreml": "retrained_graph.mlpackage"}
# A points model that locates first (two stages) exports each stage as its own file, since LiteRT and
# Core ML have no operation for the crop between them: EXPORTS' file holds the points stage (on the
# crop), these the locate stage (on the whole photo), and POINTS_CROP says how a host crops between.
LOCATE_EXPORTS = {"tflite": "retrained_graph_locate.tflite",
                  "tflite-int8": "retrained_graph_locate_int8.tflite",
                  "coreml": "retrained_graph_locate.mlpackage"}
POINTS_CROP = "points_crop.json"  # {"margin", "min_side", "locate_size", "points_size"}: crop_box's rule
# What guess, guessDir, evaluate and serve can score with (--model): the graph, the SavedModel
# and the TFLite exports (Core ML runs only on macOS).
SCORED_FORMATS = ("pb", "saved_model", "tflite", "tflite-int8")
# ---- folders inside DIR (train's defaults)
IMAGE_DIR = "data"  # category folders of photos
KEYPOINTS = "keypoints.json"  # labelled points: when DIR holds it, train learns points, not classes
BOTTLENECKS = "bottlenecks"  # the feature cache
REPORT = "report"  # the test split's report (and export's accuracy per format)
FINE_TUNE_CHECKPOINT = "fine_tune_checkpoint"  # an interrupted --fine_tune resumes from it
# Every name train and export publish into DIR (their leftovers are found by these names).
PUBLISHED = (GRAPH, LABELS, SAVED_MODEL, TRAIN_LOG, MODEL_KIND, TRAIN_INPUTS, POINT_NAMES, POINTS_SKELETON,
             *EXPORTS.values(), *LOCATE_EXPORTS.values(), POINTS_CROP)

# ---- the frozen graph's tensors (export/frozen.py builds them; guess, export and serve feed them)
INPUT_BYTES = "DecodeJpeg/contents"  # encoded photo bytes: label_image.py's input
IMAGE_BATCH = "image_batch"  # [N,S,S,3] floats in [0,1]: what tensor-guess feeds
BOTTLENECK = "bottleneck"  # the module's features
TEMPERATURE = "final_training_ops/temperature"  # the calibration the softmax divides by
FINAL_TENSOR = "final_result"  # the scores (retrained_graph.pb's output, retrain.py's name)
# A points graph (export/points_graph.py) reads INPUT_BYTES too; coordinates are the photo's
# continuous pixels, x right and y down, (0, 0) the top-left pixel's top-left corner.
PHOTOS = "photos"  # uint8 [N,H,W,3], photos of one size: what tensor-guess feeds (defaults to the bytes')
POINTS_TENSOR = "points"  # [N,K,2] (x, y) in the photo's pixels
CONFIDENCE_TENSOR = "confidence"  # [N,K] in [0,1]; nan for a head that gives none (direct regression)
BOX_TENSOR = "box"  # [N,4] x0, y0, x1, y1: the square the points stage read (the photo's own square
# for a one-stage model); it may reach past the photo, whose outside reads as black
POINT_NAMES_TENSOR = "point_names"  # [K] strings, a constant: the points' names in the graph's order

# ---- the kind a model of an older tensor-guess, or a graph of retrain.py, is (kinds.py has them all)
CLASSES = "classes"  # one score per label (a softmax)
POINTS = "points"  # named points (keypoints) on one object a photo, and the box they were read in

LOG_LIMIT = 1 << 30  # bytes: a log lists each photo's hash, some 50 bytes a photo


def _read_regular(path: Path, limit: int) -> bytes:
    """`path`'s bytes, only if it is a regular file of at most `limit` bytes (a FIFO never blocks)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            raise OSError(f"{path} is not a regular file of at most {limit} bytes")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(limit + 1)
    finally:
        os.close(fd)


class TrainLog:
    """DIR/train_log.json: the document retrain builds, read and written here alone.

    `data` is the JSON object as written; the properties read the fields commands act on,
    each with the value a log of an older tensor-guess (which lacks the field) stands for.
    """

    def __init__(self, data: dict):
        self.data = data

    @classmethod
    def of_run(cls, data: dict, kind: str = CLASSES) -> TrainLog:
        """The log of a training just run: its fields, its kind first."""
        return cls({"kind": kind, **data})

    @classmethod
    def read(cls, path: Path) -> TrainLog | None:
        """The log at `path`; None if it is missing, unreadable or not a JSON object."""
        try:
            data = json.loads(_read_regular(Path(path), LOG_LIMIT).decode("utf-8"))
        except (OSError, ValueError):
            return None
        return cls(data) if isinstance(data, dict) else None

    def to_bytes(self) -> bytes:
        """Strict JSON (no NaN), indented by one space a level, one field a line at the top."""
        return (strict_json.dumps(self.data, indent=1) + "\n").encode()

    def stage(self, write: Callable[[Path, bytes], None], path: Path, model_folder: Path) -> None:
        """write() the log to `path`, and the kind and the inputs read into `model_folder`
        (the graph's), as one publication's files: they are the model's, replaced with it."""
        write(Path(path), self.to_bytes())
        write(Path(model_folder) / MODEL_KIND, f"{self.kind}\n".encode())
        write(Path(model_folder) / TRAIN_INPUTS, b"".join(os.fsencode(p) + b"\0" for p in self.inputs))

    @property
    def kind(self) -> str:
        return self._field("kind", str, CLASSES)

    @property
    def flags(self) -> dict:
        """The settings the training ran with, as TrainConfig's fields."""
        return self._field("flags", dict, {})

    @property
    def labels_csv(self) -> Path | None:
        """The labels CSV the training read (--labels_csv), None if it read the image folder."""
        value = self.flags.get("labels_csv")
        return Path(value) if value else None

    @property
    def image_dir(self) -> Path:
        return Path(self.flags.get("image_dir") or IMAGE_DIR)

    @property
    def bottleneck_dir(self) -> Path | None:
        """The feature cache the training filled, None if the log does not name one."""
        value = self.flags.get("bottleneck_dir")
        return Path(value) if value else None

    @property
    def inputs(self) -> list[str]:
        """The folders the training read photos from: the labels CSV's folder, else the image folder."""
        if self.labels_csv is not None:
            return [os.path.dirname(str(self.labels_csv)) or "."]
        return [str(self.image_dir)]

    def _field(self, name: str, kind: type, empty):
        """The field `name` if it holds a `kind`, else `empty` (an older log lacks it)."""
        value = self.data.get(name)
        return value if isinstance(value, kind) else empty

    @property
    def labels(self) -> list[str]:
        """The classes in the graph's order ([] in a log that does not list them)."""
        return self._field("labels", list, [])

    @property
    def module(self) -> dict:
        """The module's settings (ModuleSpec's fields), {} if none were logged."""
        return self._field("module", dict, {})

    @property
    def split_digests(self) -> dict[str, list[str]]:
        """Split name -> the content hashes of its photos ({} in a log of an older tensor-guess)."""
        return self._field("split_digests", dict, {})

    @property
    def point_names(self) -> list[str]:
        """A points model's names in its graph's order ([] for classes, or a log that lacks them)."""
        return self._field("names", list, [])

    @property
    def skeleton(self) -> list[list[int]]:
        """A points model's bones, 0-based pairs in its names' order ([] where none were logged)."""
        return self._field("skeleton", list, [])

    @property
    def locate(self) -> dict:
        """A points model's locate stage: `on`, and its crop's `margin` and `min_side` ({} if unlogged)."""
        return self._field("locate", dict, {})

    @property
    def split_sizes(self) -> dict[str, int]:
        return self._field("split_sizes", dict, {})

    @property
    def steps(self) -> list[dict]:
        """The head's evaluation steps: step, train and validation accuracy and cross-entropy."""
        return self._field("steps", list, [])

    @property
    def fine_tune(self) -> dict | None:
        """What --fine_tune did (its history and the epoch kept), None if it did not run."""
        return self._field("fine_tune", dict, None) or None

    @property
    def recipe(self) -> dict | None:
        """What --recipe_mode chose (candidates, chosen, runner-up, its line); None before it existed."""
        return self._field("recipe", dict, None) or None

    @property
    def data_checks(self) -> dict:
        """The data checks' findings (duplicates, near-duplicate groups, suspects, threshold)."""
        return self._field("data_checks", dict, {})

    @property
    def calibration(self) -> dict | None:
        return self._field("calibration", dict, None)

    @property
    def temperature(self) -> float | None:
        """The calibration temperature the scores were divided by (None if none was recorded)."""
        value = (self.calibration or {}).get("temperature")
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def read_kind(path: Path) -> str:
    """The kind a MODEL_KIND file at `path` names, or "classes" where there is none (a model of
    an older tensor-guess, or a graph of retrain.py). OSError if it cannot be read."""
    try:
        text = _read_regular(Path(path), 4096).decode("utf-8", "replace")
    except FileNotFoundError:
        return CLASSES
    return text.strip()

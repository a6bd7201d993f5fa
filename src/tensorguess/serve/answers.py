"""What serve answers for each kind of model: a classes model's labels and scores, a points model's
box and named points, as guess --json gives them; their TF Serving shapes; and camera frames
(raw pixels from the page) scored straight through the graph.

A camera frame skips what a photo file needs (the temporary file, the format sniffing, the
decoding threads): the page draws the video into a canvas of the model's input size and sends
its pixels as they are, RGBA, 4 bytes a pixel. That is the lean path the camera's speed comes
from (docs/benchmarks.md, section on the camera).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tensorguess.data.images import Skipped
from tensorguess.model_dir import BOX_TENSOR, CONFIDENCE_TENSOR, FINAL_TENSOR, INPUT_BYTES, POINTS_TENSOR
from tensorguess.score.points_guess import document as points_document

# Frames the page may send: no side larger (a 640x480 camera's frame fits whole).
MAX_FRAME_SIDE = 1280
# TF Serving's signature every request may name; the SavedModel's other ones take tensors.
SERVING_DEFAULT = "serving_default"


@dataclass(frozen=True)
class Frame:
    """A camera frame: uint8 pixels [H, W, 3], as the page drew them; for a two-stage points model,
    the `box` (x0, y0, x1, y1 in the frame's pixels) to read the points in, skipping the locate stage:
    the previous answer's `next_box`, which the page echoes (the server keeps no state)."""

    pixels: np.ndarray
    box: tuple[float, float, float, float] | None = None


# A box smaller than this a side is no crop to read points in (the points stage's input is 224).
MIN_BOX_SIDE = 8


class FrameRefused(Exception):
    """A frame this model cannot take (its size); the message says which it takes."""


def frame_of(body: bytes, width: int, height: int, box: tuple[float, ...] | None = None) -> Frame:
    """The pixels of a frame body: RGBA (a canvas's ImageData, 4 bytes a pixel) or RGB (3)."""
    channels, left = divmod(len(body), width * height) if width * height else (0, 1)
    if left or channels not in (3, 4):
        raise FrameRefused(f"the frame body has {len(body)} bytes; a {width}x{height} frame is "
                           f"{width * height * 4} (RGBA) or {width * height * 3} (RGB)")
    pixels = np.frombuffer(body, np.uint8).reshape(height, width, channels)
    return Frame(np.ascontiguousarray(pixels[:, :, :3]), box)


class ClassesAnswers:
    """A classes model (predict.Classifier's interface): {"label", "score", "scores"}, best first."""

    kind = "classes"

    def __init__(self, classifier, frames_run=None):
        self.classifier = classifier
        self.labels = list(classifier.labels)
        # What scores a frame: camera_model's choice (the TFLite float model of this graph, when
        # DIR has one), else the classifier itself.
        self.frames_run = frames_run or getattr(classifier, "run", None)
        # Graphs fed decoded batches take frames at their input size (squashed, as the pipeline
        # resizes a photo); an old graph fed JPEG bytes takes photos only (the page sends JPEGs).
        batch_fed = getattr(classifier, "mode", "batch") == "batch" and hasattr(classifier, "run")
        self.frame_size = (classifier.size, classifier.size) if batch_fed else None

    def answer(self, result) -> dict:
        ranked = self.classifier.ranked(result.scores)
        return {"label": ranked[0][0], "score": ranked[0][1], "scores": dict(ranked)}

    def check_frame(self, frame: Frame) -> None:
        if frame.box is not None:
            raise FrameRefused("box= is for a points model with a locate stage; a classes model's frame "
                               "takes none")
        if self.frame_size is None:
            raise FrameRefused("this model's graph takes photos, not frames: POST the photo to /predict")
        width, height = self.frame_size
        if frame.pixels.shape[:2] != (height, width):
            raise FrameRefused(f"this model takes {width}x{height} frames (its input), not "
                               f"{frame.pixels.shape[1]}x{frame.pixels.shape[0]}")

    def score_frames(self, frames: list[Frame]) -> list[dict]:
        pixels = np.stack([frame.pixels for frame in frames]).astype(np.float32) * np.float32(1 / 255)
        scores = np.asarray(self.frames_run(pixels), np.float64).reshape(len(frames), -1)
        return [{"label": label, "score": score, "scores": dict(ranked)}
                for ranked in map(self.classifier.ranked, scores) for label, score in ranked[:1]]

    def prediction(self, answer: dict) -> list[float]:
        """TF Serving's prediction: the output tensor's row, one score per label in file order."""
        return [answer["scores"][label] for label in self.labels]

    def classification(self, answer: dict) -> list[list]:
        """TF Serving's classify result for one example: [label, score] pairs."""
        return [[label, score] for label, score in answer["scores"].items()]

    def outputs(self) -> dict:
        return {"scores": _tensor("DT_FLOAT", -1, len(self.labels), name=f"{FINAL_TENSOR}:0")}

    def page_info(self) -> dict:
        return {"kind": self.kind, "labels": self.labels, "frame": _size(self.frame_size)}


class PointsAnswers:
    """A points model (score.points.PointsScorer): {"box", "score", "keypoints"} as guess --json's."""

    kind = "points"
    frame_size = None  # any size: the graph reads the photo at its own size

    def __init__(self, scorer, frames_scorer=None):
        self.scorer = scorer
        self.labels = list(scorer.names)
        # What scores a frame: camera_model's choice (the TFLite float files of this graph, when DIR
        # has them), else the scorer itself; with its own run_in_boxes and crop_rule.
        self.frames = frames_scorer or scorer

    def answer(self, result) -> dict:
        return points_document(result, self.scorer.names)

    def check_frame(self, frame: Frame) -> None:
        height, width = frame.pixels.shape[:2]
        if min(width, height) < 32:
            raise FrameRefused(f"a {width}x{height} frame is too small to find points in; send 32 "
                               "pixels a side at least")
        if frame.box is None:
            return
        if getattr(self.frames, "run_in_boxes", None) is None:
            raise FrameRefused("this model reads the whole frame (one stage, or --model saved_model): "
                               "send no box=")
        x0, y0, x1, y1 = frame.box
        if not (x1 - x0 >= MIN_BOX_SIDE and y1 - y0 >= MIN_BOX_SIDE and x0 < width and y0 < height
                and x1 > 0 and y1 > 0):
            raise FrameRefused(f"box={x0:g},{y0:g},{x1:g},{y1:g} is not a box over this {width}x{height} "
                               f"frame (x0,y0,x1,y1 in its pixels, {MIN_BOX_SIDE} a side at least); send "
                               "the last answer's next_box, or none")

    def score_frames(self, frames: list[Frame]) -> list[dict | Skipped]:
        from tensorguess.score.points import runs

        answers: list[dict | Skipped] = [None] * len(frames)  # type: ignore[list-item]
        located = [index for index, frame in enumerate(frames) if frame.box is None]
        # Frames of one size run together (the graph's batches are of one size), in order.
        for run in runs(((index, frames[index].pixels) for index in located), len(located)):
            outputs = self.frames.run(np.stack([pixels for _, pixels in run]))
            for row, (index, pixels) in enumerate(run):
                answers[index] = self._answer(pixels, *(output[row] for output in outputs))
        for index, frame in enumerate(frames):  # tracked: the points stage alone, in the box given
            if frame.box is not None:
                outputs = self.frames.run_in_boxes(frame.pixels[None], np.asarray([frame.box], np.float32))
                answers[index] = self._answer(frame.pixels, *(output[0] for output in outputs))
        return answers

    def _answer(self, pixels: np.ndarray, points, confidence, box) -> dict | Skipped:
        from tensorguess.head.points_model import crop_box
        from tensorguess.score.points import PointsResult

        result = PointsResult(Path("frame"), points, confidence, box)
        if not (np.isfinite(points).all() and np.isfinite(box).all()):
            return Skipped(result.path, "the graph gave no usable points (NaN or infinite); the model is "
                           "broken: train it again")
        answer = self.answer(result)
        rule = getattr(self.frames, "crop_rule", None)
        if rule is not None:  # the box the next frame's points are read in: the model's own crop rule
            height, width = pixels.shape[:2]
            corners = crop_box(points, np.ones(len(points), bool), width, height, *rule)
            answer["next_box"] = [round(float(value), 2) for value in corners]
        return answer

    def prediction(self, answer) -> dict:
        """TF Serving's prediction for one photo: one value per output of the graph."""
        return {"points": [[point["x"], point["y"]] for point in answer["keypoints"]],
                "confidence": [point["score"] for point in answer["keypoints"]],
                "box": _corners(answer["box"])}

    def classification(self, answer) -> None:
        return None  # a points model classifies nothing: :classify answers 501

    def outputs(self) -> dict:
        count = len(self.labels)
        return {"points": _tensor("DT_FLOAT", -1, count, 2, name=f"{POINTS_TENSOR}:0"),
                "confidence": _tensor("DT_FLOAT", -1, count, name=f"{CONFIDENCE_TENSOR}:0"),
                "box": _tensor("DT_FLOAT", -1, 4, name=f"{BOX_TENSOR}:0")}

    def page_info(self) -> dict:
        bones = [list(bone) for bone in self.scorer.skeleton.bones]
        return {"kind": self.kind, "labels": self.labels, "frame": None, "skeleton": bones}


def answers_for(model, camera=None) -> ClassesAnswers | PointsAnswers:
    """The answers of the model serve was given: a points scorer has point names, a classifier labels
    (`camera`: serve.camera_model.CameraModel, what scores the camera's frames, when not the model)."""
    if hasattr(model, "names") and hasattr(model, "skeleton"):
        return PointsAnswers(model, camera.points if camera is not None else None)
    return ClassesAnswers(model, camera.run if camera is not None else None)


def signature_def(answers: ClassesAnswers | PointsAnswers) -> dict:
    """TF Serving's metadata.signature_def for the signature this server answers (serving_default:
    the SavedModel's, a photo's encoded bytes in)."""
    return {"signature_def": {SERVING_DEFAULT: {
        "inputs": {"image_bytes": _tensor("DT_STRING", -1, name=f"{INPUT_BYTES}:0")},
        "outputs": answers.outputs(),
        "method_name": "tensorflow/serving/predict"}}}


def _corners(box_xywh: list[float]) -> list[float]:
    x, y, width, height = box_xywh
    return [x, y, x + width, y + height]


def _size(size: tuple[int, int] | None) -> dict | None:
    return None if size is None else {"width": size[0], "height": size[1]}


def _tensor(dtype: str, *dims: int, name: str) -> dict:
    """A TensorInfo as TF Serving writes it in JSON (sizes as strings: they are int64)."""
    return {"dtype": dtype, "tensor_shape": {"dim": [{"size": str(size), "name": ""} for size in dims],
                                             "unknown_rank": False}, "name": name}

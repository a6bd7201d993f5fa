"""A points model's TFLite files (float or int8) run by LiteRT, with what the .pb does around them done
on the host: guess, guessDir and evaluate's `--model tflite` / `tflite-int8` for a points model.

The whole-photo file takes the photo squashed as guess squashes it (features/modules.resize_image,
the graph's own resize). A model that locates first has two files (model_dir.LOCATE_EXPORTS, then
EXPORTS): the locate file's points give the crop square by head/points_model.crop_box (the margin
and min side export wrote into model_dir.POINTS_CROP), `crop_square` resamples it from the full-size
photo as the graph's crop_squares does (bilinear, black outside the photo), and the points file reads
the crop; its points map back as x0 + x side.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from tensorguess.errors import UsageError
from tensorguess.head.points_model import crop_box
from tensorguess.model_dir import EXPORTS, LOCATE_EXPORTS, POINTS_CROP
from tensorguess.score.predict import ClassifierError


def axis_taps(start: float, side: float, size: int, length: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Output pixel i of the crop along one axis as a mix of two of the photo's pixels: ((index [size],
    weight [size]) of the lower neighbour, the same of the upper). Pixel i reads the photo at
    start + (i + 0.5) side / size - 0.5 (points_model.crop_transforms), linearly between its two
    neighbours; a neighbour outside the photo adds nothing (black), as ImageProjectiveTransformV3's
    constant fill: its weight is 0 (its index is clipped into the photo only to be readable)."""
    where = start + (np.arange(size) + 0.5) * side / size - 0.5
    low = np.floor(where).astype(np.int64)
    share = (where - low).astype(np.float32)
    return tuple((np.clip(index, 0, length - 1), np.where((index >= 0) & (index < length), weight, 0)
                  .astype(np.float32))
                 for index, weight in ((low, 1 - share), (low + 1, share)))


def crop_square(photo: np.ndarray, box, size: int) -> np.ndarray:
    """photo [H,W,3] -> its square box (x0, y0, x1, y1 in pixels) at [size,size,3], float32 in the
    photo's own scale (uint8 pixels give 0-255: divide by 255 after, it is linear).

    Gathers and weighted sums, no matrix product: NumPy hands a float32 product to OpenBLAS, whose
    threads then spin for a while after it on the cores LiteRT's threads need for the points file
    right after (a camera frame's crop and points file: 15.5 ms that way, 9.0 ms this way, on 2
    cores; docs/benchmarks.md section 18). Only the columns the box reads are gathered."""
    height, width = photo.shape[:2]
    side = float(box[2] - box[0])
    (left_index, left_weight), (right_index, right_weight) = axis_taps(float(box[0]), side, size, width)
    (top_index, top_weight), (bottom_index, bottom_weight) = axis_taps(float(box[1]), side, size, height)
    first, last = int(left_index.min()), int(right_index.max()) + 1
    part = photo[:, first:last]
    rows = part[top_index].astype(np.float32) * top_weight[:, None, None]  # [size, columns, 3]
    rows += part[bottom_index] * bottom_weight[:, None, None]
    crop = rows[:, left_index - first] * left_weight[None, :, None]
    crop += rows[:, right_index - first] * right_weight[None, :, None]
    return crop


def whole_square(width: float, height: float) -> np.ndarray:
    longer = max(width, height)
    return np.array([width - longer, height - longer, width + longer, height + longer], np.float32) / 2


class LiteStage:
    """One .tflite file's signature runner: float [S,S,3] in [0,1] -> (points [K,2], confidence [K])."""

    def __init__(self, path: Path):
        from tensorguess.export.litert import open_interpreter
        from tensorguess.score.lite import prepare

        try:
            interpreter = open_interpreter(Path(path).read_bytes())
        except (OSError, ValueError, RuntimeError) as error:
            raise ClassifierError(f"{path} is not a TFLite model LiteRT can load ({str(error)[:200]}); "
                                  "write it again with export.sh") from error
        prepare(interpreter, path)  # as the classes' files: builtin ops only, said in one line
        try:
            self.runner = interpreter.get_signature_runner()
            self.detail = self.runner.get_input_details()["image"]
        except (ValueError, KeyError) as error:
            raise ClassifierError(f"{path} has no serving signature taking `image` (not written by "
                                  "export.sh for a points model); write it again with export.sh") from error
        self.size = int(self.detail["shape"][1])

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from tensorguess.export.litert import quantized

        out = self.runner(image=quantized(image[None], self.detail))
        return out["points"][0], out["confidence"][0]


class LiteRun:
    """score/points.py's Run over the TFLite files: uint8 photos [N,H,W,3] of one size -> (points
    [N,K,2] and box [N,4] in the photos' pixels, confidence [N,K])."""

    def __init__(self, points: LiteStage, locate: LiteStage | None = None, rule: dict | None = None):
        self.points, self.locate, self.rule = points, locate, rule or {}

    def one(self, photo: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from tensorguess.features.modules import resize_image

        height, width = photo.shape[:2]
        first = self.locate or self.points
        found, confidence = first(resize_image(photo, first.size).numpy())
        found = found * [width, height]
        if self.locate is None:
            return found, confidence, whole_square(width, height)
        box = np.array(crop_box(found, np.ones(len(found), bool), width, height, self.rule["margin"],
                                self.rule["min_side"]), np.float32)
        return self.in_box(photo, box)

    def in_box(self, photo: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The points stage alone on the photo's square `box` (x0, y0, x1, y1 in its pixels)."""
        crop = crop_square(photo, box, self.points.size)
        if photo.dtype == np.uint8:
            crop *= np.float32(1 / 255)
        normalised, confidence = self.points(crop)
        return box[:2] + normalised * (box[2] - box[0]), confidence, np.asarray(box, np.float32)

    def __call__(self, photos: np.ndarray):
        return _stacked(self.one(photo) for photo in photos)

    @property
    def in_boxes(self):
        """(photos, boxes [N,4]) -> the outputs read in those boxes, the locate file not run: the
        camera's tracking (PointsScorer.run_in_boxes); None for a one-stage model's file."""
        if self.locate is None:
            return None
        return lambda photos, boxes: _stacked(self.in_box(photo, box) for photo, box in zip(photos, boxes,
                                                                                               strict=True))

    @property
    def crop_rule(self) -> tuple[float, float] | None:
        return None if self.locate is None else (self.rule["margin"], self.rule["min_side"])


def _stacked(outputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    points, confidence, boxes = zip(*outputs, strict=True)
    return np.stack(points), np.stack(confidence), np.stack(boxes)


def open_lite_run(folder: Path, model: str, where=lambda path: path) -> tuple[LiteRun, str]:
    """(the run, the sha1 of the files run) of `folder`'s `model` ("tflite" or "tflite-int8"): one
    file, or with a locate file beside it, two and POINTS_CROP."""
    from tensorguess.export.points_lite import CROP_MODEL_NAME
    from tensorguess.export.tflite_metadata import read_metadata

    path = Path(where(folder / EXPORTS[model]))
    locate_path = Path(where(folder / LOCATE_EXPORTS[model]))
    if not path.is_file():
        raise UsageError(f"{path} does not exist: write it with export.sh {folder} --format {model}")
    data = path.read_bytes()
    digest = hashlib.sha1(data)
    # The file says which stage it holds (a locate file left from an earlier two-stage model beside
    # a one-stage model's file is not run).
    if CROP_MODEL_NAME.encode() not in (read_metadata(data) or b""):
        return LiteRun(LiteStage(path)), digest.hexdigest()
    if not locate_path.is_file():
        raise UsageError(f"{path} reads the crop the locate stage finds, and {locate_path} does not "
                         f"exist: write both with export.sh {folder} --format {model}")
    rule_path = Path(where(folder / POINTS_CROP))
    try:
        rule = json.loads(rule_path.read_text())
        rule = {"margin": float(rule["margin"]), "min_side": float(rule["min_side"])}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ClassifierError(f"{rule_path} cannot be read ({error!s:.80}): export.sh writes it beside "
                              f"{locate_path.name}; run export.sh {folder} --format {model} again") from error
    digest.update(locate_path.read_bytes())
    return LiteRun(LiteStage(path), LiteStage(locate_path), rule), digest.hexdigest()

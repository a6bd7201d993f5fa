"""Score images with an exported .tflite classifier (float or int8), on every core through XNNPACK.

The same interface as predict.Classifier (labels, digest, score_files, ranked), so guess,
guessDir and evaluate run either. Photos are decoded and resized by the same pipeline
(features/pipeline.py) that feeds the frozen graph's `image_batch:0`, so a photo meets the
same pixels in every format; an int8 model's uint8 input gets them quantized by the input
tensor's own scale and zero point (1/255 and 0 for ours: the pixel values).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from tensorguess import stderr_noise
from tensorguess.export.litert import open_interpreter, quantized
from tensorguess.export.tflite import packed_labels
from tensorguess.score import tta as test_time
from tensorguess.score.pixel_batches import PixelBatchClassifier
from tensorguess.score.predict import ClassifierError, read_labels

# The largest input side run: train.sh's --input_size bound, so every model it makes fits,
# and more than 6x the largest image module's (EfficientNet B7 takes 600). Photos are
# resized to the model's side, so each photo costs side**2 * 12 bytes in floats: 201 MB at
# 4096, where a side of 30000 would take 10.8 GB before the first photo is scored.
MAX_INPUT_SIDE = 4096


class LiteClassifier(PixelBatchClassifier):
    """A .tflite classifier with its labels; `temperature` is the calibration its log records."""

    def __init__(self, model_path: Path, labels_path: Path, temperature: float | None = None,
                 threads: int | None = None, tta: bool = False):
        self.tta = tta  # score each photo as the mean over test_time.VIEWS views of it
        try:
            data = Path(model_path).read_bytes()
        except OSError as error:
            raise ClassifierError(
                f"cannot read {model_path} ({error.strerror}); write it with export.sh DIR"
            ) from error
        # The labels packed inside are those of the model this file is, even when DIR's labels
        # file is already a newer training's.
        packed = [label.strip() for label in packed_labels(data) or [] if label.strip()]
        self.labels = packed or read_labels(labels_path)
        self.digest = hashlib.sha1(data).hexdigest()  # the file actually run, as guessDir records
        self.temperature = temperature
        try:
            # A flatbuffer is data, not a program: the interpreter runs only its builtin ops.
            with stderr_noise.filtered():  # LiteRT's delegate notice
                self.interpreter = open_interpreter(data, threads)
        except (ValueError, RuntimeError) as error:
            raise ClassifierError(f"{model_path} is not a TFLite model LiteRT can load "
                                  f"({str(error).strip().splitlines()[0][:200]})") from error
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        # Shapes as the file declares them: nothing is allocated until allocate_tensors.
        if len(inputs) != 1 or len(inputs[0]["shape"]) != 4 or inputs[0]["shape"][3] != 3:
            raise ClassifierError(f"{model_path} does not take one batch of RGB images; "
                                  "export it again with export.sh")
        self.input, self.output = inputs[0], outputs[0]
        self.size = int(self.input["shape"][1])
        height, width = int(self.input["shape"][1]), int(self.input["shape"][2])
        if height != width or not 1 <= height <= MAX_INPUT_SIDE:
            raise ClassifierError(
                f"{model_path} takes {height}x{width}-pixel images, where every model train.sh makes "
                f"takes square ones of at most {MAX_INPUT_SIDE} pixels a side (the most --input_size "
                "allows); export it again with export.sh")
        if int(self.output["shape"][-1]) != len(self.labels):
            raise ClassifierError(
                f"{labels_path} has {len(self.labels)} labels but {model_path} scores "
                f"{int(self.output['shape'][-1])} classes; use the labels file written with it"
            )
        with stderr_noise.filtered():
            prepare(self.interpreter, model_path)
        self._batch = int(self.input["shape"][0])  # the batch size the tensors are allocated for

    def close(self) -> None:
        self.interpreter = None

    def run(self, pixels: np.ndarray) -> np.ndarray:
        """Scores [N, labels] for a float batch [N, S, S, 3] in [0, 1], as fed to image_batch:0."""
        if self.tta:
            return test_time.mean_over_views(self._run(test_time.views(pixels)), len(pixels))
        return self._run(pixels)

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        if self._batch != len(pixels):
            self.interpreter.resize_tensor_input(self.input["index"], [len(pixels), self.size,
                                                                       self.size, 3])
            self.interpreter.allocate_tensors()
            self._batch = len(pixels)
        self.interpreter.set_tensor(self.input["index"], self._quantized(pixels))
        self.interpreter.invoke()
        scores = self.interpreter.get_tensor(self.output["index"])
        if self.output["dtype"] != np.float32:
            scale, zero = self.output["quantization"]
            scores = (scores.astype(np.float32) - zero) * scale
        return np.asarray(scores, np.float64).reshape(-1, len(self.labels))


    def _quantized(self, pixels: np.ndarray) -> np.ndarray:
        """litert.quantized's numbers, computed in place in one float buffer: a batch of 32 photos
        is 19 MB of floats, and each of its four steps would allocate (and fault in) a new one."""
        if self.input["dtype"] == np.float32 or pixels.dtype != np.float32:
            return quantized(pixels, self.input)
        scale, zero = self.input["quantization"]
        info = np.iinfo(self.input["dtype"])
        buffer = np.divide(pixels, scale, dtype=np.float32)
        buffer += zero
        np.round(buffer, out=buffer)
        np.clip(buffer, info.min, info.max, out=buffer)
        return buffer.astype(self.input["dtype"])


def prepare(interpreter, model_path: Path) -> None:
    """Allocate the tensors at the file's own shapes, which checks every op is one LiteRT runs.

    A model converted with SELECT_TF_OPS (Flex) needs TensorFlow's kernels linked into
    the runtime, one with allow_custom_ops needs its maker's kernels: LiteRT has neither.
    """
    try:
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as error:
        text = " ".join(str(error).split())
        found = re.search(r"\(([^()]+)\) failed to prepare", text)
        op = found.group(1) if found else None
        if op and op.startswith("Flex"):
            raise ClassifierError(
                f"{model_path} needs TensorFlow's own operations ({op[4:]}, converted with "
                "SELECT_TF_OPS), which this TFLite runtime does not have; export it again with "
                "export.sh (builtin operations only) or use --model pb") from error
        if op and "custom op" in text:
            raise ClassifierError(
                f"{model_path} holds a custom operation ({op}) that this TFLite runtime does not "
                "have; export it again with export.sh (builtin operations only) or use --model pb") from error
        raise ClassifierError(f"{model_path} cannot be prepared to run ({text[:200]}); export it "
                              "again with export.sh") from error

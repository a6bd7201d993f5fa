"""Running a .tflite in LiteRT: its interpreter, and a float batch as a model's input tensor takes it.

Here, in export/, because both the int8 bias correction (export/bias_correction.py) and the
TFLite classifier (score/lite.py) run models: score/ imports export/, never the reverse.
"""

from __future__ import annotations

import os

import numpy as np


def interpreter_class():
    """LiteRT's interpreter (ai-edge-litert), which TF 2.21's tf.lite.Interpreter defers to."""
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter


def open_interpreter(model_content: bytes, threads: int | None = None, **options):
    """LiteRT's interpreter of a model's bytes, on `threads` threads, every core by default: LiteRT's
    own default is one thread (a points file: 12.0 ms a 224 crop on one, 7.5 on two)."""
    return interpreter_class()(model_content=model_content, num_threads=threads or os.cpu_count() or 1,
                               **options)


def quantized(pixels: np.ndarray, detail: dict) -> np.ndarray:
    """The float batch as the input tensor wants it: as it is, or round(x / scale + zero)."""
    if detail["dtype"] == np.float32:
        return np.ascontiguousarray(pixels, np.float32)
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(pixels / scale + zero), info.min, info.max).astype(detail["dtype"])

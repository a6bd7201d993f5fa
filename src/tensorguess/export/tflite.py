"""TFLite models of the frozen classifier: float32, and full-integer int8 with a uint8 image input.

Both are converted from `retrained_graph.pb` itself, cut at `image_batch:0` (the float batch
[N,S,S,3] in [0,1] that guess and guessDir feed after decoding and resizing) and ending at the
calibrated softmax, so whatever trained the classifier (a head, a fine-tuned network) is what
is exported; decoding and resizing stay outside, as they do for the .pb's batch input.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterable

import numpy as np

from tensorguess.export.frozen import IMAGE_BATCH

LABELS_NAME = "retrained_labels.txt"  # the associated file packed inside the .tflite


def classifier_function(graph_def, final_tensor_name: str = "final_result"):
    """(concrete function image_batch -> scores, the object that keeps it alive), from the GraphDef."""
    import tensorflow as tf

    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    graph = wrapped.graph
    # Pruning at the batch drops the decode ops before it: only the network is exported.
    pruned = wrapped.prune(feeds=graph.get_tensor_by_name(f"{IMAGE_BATCH}:0"),
                           fetches=graph.get_tensor_by_name(f"{final_tensor_name}:0"))
    return pruned, wrapped


def float_model(graph_def, final_tensor_name: str = "final_result") -> bytes:
    import tensorflow as tf

    function, keep = classifier_function(graph_def, final_tensor_name)
    return tf.lite.TFLiteConverter.from_concrete_functions([function], keep).convert()


def int8_model(graph_def, calibration: Callable[[], Iterable[np.ndarray]],
               final_tensor_name: str = "final_result") -> bytes:
    """Every op in int8 (post-training full-integer quantization), calibrated on `calibration()`:
    float images [S,S,3] in [0,1]. The input is uint8 (scale 1/255, zero point 0 when the
    calibration photos span black to white: the pixel values themselves); the scores come out
    dequantized to float32, in steps of 1/256 (the int8 softmax's)."""
    import tensorflow as tf

    function, keep = classifier_function(graph_def, final_tensor_name)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], keep)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    # Clipped to [0, 1] (a box average can round a hair above 1), so that the input's scale is
    # 1/255 exactly and a caller may feed the uint8 pixels as they are.
    converter.representative_dataset = lambda: ([np.clip(image[np.newaxis], 0, 1).astype(np.float32)]
                                                for image in calibration())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.float32
    return converter.convert()


def with_labels(model: bytes, labels: list[str]) -> bytes:
    """The model with the labels file packed inside, as TFLite metadata packs associated files:
    a zip archive appended to the flatbuffer, which the interpreter ignores and any zip reader
    (`unzip -l model.tflite`) lists."""
    buffer = io.BytesIO(model)
    buffer.seek(0, io.SEEK_END)
    with zipfile.ZipFile(buffer, "a", zipfile.ZIP_STORED) as archive:
        archive.writestr(LABELS_NAME, "".join(f"{label}\n" for label in labels))
    return buffer.getvalue()


def packed_labels(model: bytes) -> list[str] | None:
    """The labels packed inside a .tflite by with_labels, or None."""
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as archive:
            return archive.read(LABELS_NAME).decode("utf-8").splitlines()
    except (zipfile.BadZipFile, KeyError):
        return None

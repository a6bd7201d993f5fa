"""TFLite (float and int8) and Core ML of a points model: the whole-photo stage's network, cut out of
`retrained_graph.pb`.

Both take the photo squashed to the stage's size S x S (as the graph squashes it: area-averaged
down, bilinear up; decoding and resizing stay outside, as for the classes' files), RGB in [0,1]
(float), as uint8 pixels (int8) or as an image (Core ML), and return, for one photo:
- `points` [1,K,2]: each point as (x / W, y / H) of the photo (multiply by its width and height);
- `confidence` [1,K]: the heatmap's peak per point (NaN for a direct head, which has none);
- `box` [1,4]: x0, y0, x1, y1 of the part of the photo the points were read from, in the same
  coordinates: the whole photo, [0, 0, 1, 1].
A model that locates first (two stages) crops the full-size photo between them, which LiteRT's and
Core ML's built-in operations do not do; its TFLite and Core ML files are refused in one line (the
.pb and the SavedModel hold both stages).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from tensorguess import stderr_noise
from tensorguess.errors import TensorGuessError
from tensorguess.export import tflite_metadata
from tensorguess.export.points_graph import WHOLE_CONFIDENCE, WHOLE_INPUT, WHOLE_POINTS

OUTPUTS = ("points", "confidence", "box")


class PointsLiteError(TensorGuessError):
    """The points model cannot be written as TFLite or Core ML; the message says why and what to do."""


def stage_size(graph_def, graph_path: Path) -> int:
    """The side S of the whole-photo stage's input, or PointsLiteError (an older graph, two stages)."""
    nodes = {node.name: node for node in graph_def.node}
    if WHOLE_INPUT not in nodes:
        raise PointsLiteError(f"{graph_path} has no {WHOLE_INPUT} (written by an older tensor-guess): "
                              "train again to export TFLite or Core ML")
    if any(node.op == "ImageProjectiveTransformV3" for node in graph_def.node):
        raise PointsLiteError(f"{graph_path} locates the object, then crops the full-size photo for its "
                              "points stage, which TFLite and Core ML have no built-in operation for: "
                              "use its SavedModel (DIR/saved_model), or train without --locate")
    function, _keep = stage_function(graph_def)
    return int(function.inputs[0].shape[1])


def stage_function(graph_def, batch: int | None = None):
    """(concrete function image [batch,S,S,3] in [0,1] -> {points, confidence, box}, what keeps it alive)."""
    import tensorflow as tf

    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    graph = wrapped.graph
    source = graph.get_tensor_by_name(f"{WHOLE_INPUT}:0")
    pruned = wrapped.prune(feeds=source, fetches=[graph.get_tensor_by_name(f"{WHOLE_POINTS}:0"),
                                                  graph.get_tensor_by_name(f"{WHOLE_CONFIDENCE}:0")])
    size = int(source.shape[1])

    @tf.function(input_signature=[tf.TensorSpec([batch, size, size, 3], tf.float32, name="image")])
    def stage(image):
        points, confidence = pruned(image)
        # The whole photo, as the points' coordinates put it: one row a photo, computed from the points
        # (times 0) so that no converter folds it into a constant and drops it from the outputs.
        box = 0.0 * points[:, 0, :1] + tf.constant([[0.0, 0.0, 1.0, 1.0]])
        return {"points": points, "confidence": confidence, "box": box}

    return stage.get_concrete_function(), (wrapped, pruned, stage)


def float_model(graph_def) -> bytes:
    import tensorflow as tf

    function, keep = stage_function(graph_def, batch=1)
    with stderr_noise.filtered():
        return named(tf.lite.TFLiteConverter.from_concrete_functions([function], keep).convert(), function)


def named(model: bytes, function) -> bytes:
    """The converted model with its outputs named as the function returns them (the converter names
    them Identity, Identity_1, ...) and one signature, `serving_default`, image -> OUTPUTS, so that
    LiteRT's signature runner returns them by name."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    keys = {tensor.name.split(":")[0]: key for key, tensor in function.structured_outputs.items()}
    tree = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    graph = tree.subgraphs[0]

    def tensor_map(name: str, index: int):
        entry = schema.TensorMapT()
        entry.name, entry.tensorIndex = name, index
        return entry

    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = "serving_default", 0
    signature.inputs = [tensor_map("image", graph.inputs[0])]
    signature.outputs = []
    for index in graph.outputs:
        old = graph.tensors[index].name
        key = keys[old.decode() if isinstance(old, bytes) else old]
        graph.tensors[index].name = key
        signature.outputs.append(tensor_map(key, index))
    tree.signatureDefs = [signature]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))


def output_order(model: bytes) -> list[str]:
    """The names of the model's outputs, in its order (the metadata lists them so)."""
    from ai_edge_litert import schema_py_generated as schema

    graph = schema.Model.GetRootAs(model, 0).Subgraphs(0)
    return [graph.Tensors(graph.Outputs(i)).Name().decode() for i in range(graph.OutputsLength())]


def int8_model(graph_def, calibration: Callable[[], Iterable[np.ndarray]]) -> bytes:
    """Post-training quantization calibrated on `calibration()` (float [S,S,3] in [0,1]): uint8 input
    (scale 1/255, zero point 0: the pixels as they are), float outputs, and all in int8 but the
    module's input scaling and first FLOAT_CONVOLUTIONS, the classes' recipe (tflite.int8_model).
    Keeping the head (its soft-argmax) in float as well moved the points as far (docs/benchmarks.md,
    section 19), so it is not."""
    import tensorflow as tf
    from tensorflow.lite.python import convert

    from tensorguess.export.tflite import _uint8_in_float_out, first_convolutions, int8_converter

    function, keep = stage_function(graph_def, batch=1)
    with stderr_noise.filtered():
        converter = int8_converter(function, keep, calibration)
        converter._experimental_calibrate_only = True  # as tflite.int8_model: calibrate, then choose
        calibrated = converter.convert()
        ops, nodes = first_convolutions()(calibrated)
        model = _uint8_in_float_out(convert.mlir_quantize(
            calibrated, fully_quantize=True, input_data_type=tf.uint8, output_data_type=tf.float32,
            denylisted_ops=ops, denylisted_nodes=nodes))
    return named(model, function)


NAMES_FILE = "point_names.txt"  # the point names packed in the .tflite, as the classes' labels


def points_metadata(size: int, names: list[str], int8: bool, order: list[str]) -> bytes:
    """TFLITE_METADATA of a points model: the RGB input and its normalisation as the classes' files
    say it, the outputs in the model's `order`, the point names as the labels of the points' axis."""
    outputs = {
        "points": tflite_metadata.Output(
            "points", "Each point's (x / width, y / height) of the photo, in the names' order.",
            labels_file=NAMES_FILE, labels_description="The name of each point, one a line."),
        "confidence": tflite_metadata.Output(
            "confidence", "Each point's heatmap peak (NaN for a direct head).", value_range=(0.0, 1.0)),
        "box": tflite_metadata.Output(
            "box", "x0, y0, x1, y1 of the part of the photo read, as the points: [0, 0, 1, 1]."),
    }
    kind = "int8 (uint8 input, float outputs)" if int8 else "float32"
    return tflite_metadata.metadata_bytes(tflite_metadata.ImageModel(
        name="tensor-guess points model",
        description=f"Keypoint model, {kind}, {len(names)} points, on a {size}x{size} RGB photo (the whole "
                    "photo squashed): each point as (x / width, y / height) of the photo.",
        version="1", size=size, mean=0.0, std=255.0,
        input_description=f"RGB photo squashed to {size}x{size}, pixels / 255",
        outputs=[outputs[name] for name in order]))


def write_points_tflite(graph_def, names: list[str], path: Path, size: int,
                        calibration: Callable | None, write: Callable[[Path, bytes], None]) -> None:
    """Convert, add the metadata, pack the point names inside (as the classes' labels) and write."""
    from tensorguess.export.tflite import with_packed_file

    model = float_model(graph_def) if calibration is None else int8_model(graph_def, calibration)
    metadata = points_metadata(size, names, calibration is not None, output_order(model))
    model = tflite_metadata.with_metadata(model, metadata)
    write(Path(path), with_packed_file(model, NAMES_FILE, names))

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
Core ML's built-in operations do not do: each stage is its own file (model_dir.LOCATE_EXPORTS: the
locate stage, as above; EXPORTS: the points stage on the crop, its points as (x, y) of the crop and
its box [0, 0, 1, 1] the crop), and `crop_rule` (written to model_dir.POINTS_CROP and into the files'
description) tells the host how to crop between them (score/points_lite.py does it in numpy).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from tensorguess import stderr_noise
from tensorguess.errors import TensorGuessError
from tensorguess.export import tflite_metadata
from tensorguess.export.points_graph import (
    CROP_CONFIDENCE,
    CROP_INPUT,
    CROP_MARGIN,
    CROP_MIN_SIDE,
    CROP_POINTS,
    WHOLE_CONFIDENCE,
    WHOLE_INPUT,
    WHOLE_POINTS,
)

OUTPUTS = ("points", "confidence", "box")
# A stage's tensors in the graph: its input, its normalised points and their confidence.
STAGES = {"whole": (WHOLE_INPUT, WHOLE_POINTS, WHOLE_CONFIDENCE),
          "crop": (CROP_INPUT, CROP_POINTS, CROP_CONFIDENCE)}


class PointsLiteError(TensorGuessError):
    """The points model cannot be written as TFLite or Core ML; the message says why and what to do."""


def stage_size(graph_def, graph_path: Path) -> int:
    """The side S of the whole-photo stage's input, or PointsLiteError (an older graph, two stages)."""
    nodes = {node.name: node for node in graph_def.node}
    if WHOLE_INPUT not in nodes:
        raise PointsLiteError(f"{graph_path} has no {WHOLE_INPUT} (written by an older tensor-guess): "
                              "train again to export TFLite or Core ML")
    if two_stage(graph_def) and CROP_INPUT not in nodes:
        raise PointsLiteError(f"{graph_path} locates the object, then crops, but names no {CROP_INPUT} "
                              "(written by an older tensor-guess): train again to export TFLite or Core ML")
    function, _keep = stage_function(graph_def)
    return int(function.inputs[0].shape[1])


def two_stage(graph_def) -> bool:
    """Whether the model locates first, then crops the photo for its points stage."""
    return any(node.op == "ImageProjectiveTransformV3" for node in graph_def.node)


def crop_rule(graph_def) -> dict:
    """What a host needs to crop between a two-stage model's files: points_model.crop_box's margin and
    min_side, and each stage's input side."""
    constants = {node.name: node.attr["value"].tensor.float_val[0] for node in graph_def.node
                 if node.name in (CROP_MARGIN, CROP_MIN_SIDE)}
    return {"margin": float(constants[CROP_MARGIN]), "min_side": float(constants[CROP_MIN_SIDE]),
            "locate_size": stage_side(graph_def, "whole"), "points_size": stage_side(graph_def, "crop")}


def stage_side(graph_def, stage: str) -> int:
    function, _keep = stage_function(graph_def, stage=stage)
    return int(function.inputs[0].shape[1])


def stage_function(graph_def, batch: int | None = None, stage: str = "whole"):
    """(concrete function image [batch,S,S,3] in [0,1] -> {points, confidence, box}, what keeps it alive):
    the `stage` ("whole": on the squashed photo; "crop": a two-stage model's points stage on its crop)."""
    import tensorflow as tf

    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    graph = wrapped.graph
    source_name, points_name, confidence_name = STAGES[stage]
    source = graph.get_tensor_by_name(f"{source_name}:0")
    pruned = wrapped.prune(feeds=source, fetches=[graph.get_tensor_by_name(f"{points_name}:0"),
                                                  graph.get_tensor_by_name(f"{confidence_name}:0")])
    size = int(source.shape[1])

    @tf.function(input_signature=[tf.TensorSpec([batch, size, size, 3], tf.float32, name="image")])
    def stage(image):
        points, confidence = pruned(image)
        # The whole input, as the points' coordinates put it: one row a photo, computed from the points
        # (times 0) so that no converter folds it into a constant and drops it from the outputs.
        box = 0.0 * points[:, 0, :1] + tf.constant([[0.0, 0.0, 1.0, 1.0]])
        return {"points": points, "confidence": confidence, "box": box}

    return stage.get_concrete_function(), (wrapped, pruned, stage)


def float_model(graph_def, stage: str = "whole") -> bytes:
    import tensorflow as tf

    function, keep = stage_function(graph_def, batch=1, stage=stage)
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


def int8_model(graph_def, calibration: Callable[[], Iterable[np.ndarray]], stage: str = "whole") -> bytes:
    """Post-training quantization calibrated on `calibration()` (float [S,S,3] in [0,1]): uint8 input
    (scale 1/255, zero point 0: the pixels as they are), float outputs, and all in int8 but the
    module's input scaling and first FLOAT_CONVOLUTIONS (the classes' recipe, tflite.int8_model) and
    the heatmap head's soft-argmax (`soft_argmax_nodes`): the heatmap's logits come out in int8, their
    softmax and its weighted sums run in float. In int8 the softmax's output has steps of 1/256,
    and a map of 28 x 28 cells whose mass is spread (a little-trained head, an unsure point) has
    most cells below one step: they round to 0 and the point collapses towards the map's corner
    (docs/benchmarks.md, section 19)."""
    import tensorflow as tf
    from tensorflow.lite.python import convert

    from tensorguess.export.tflite import _uint8_in_float_out, first_convolutions, int8_converter

    function, keep = stage_function(graph_def, batch=1, stage=stage)
    with stderr_noise.filtered():
        converter = int8_converter(function, keep, calibration)
        converter._experimental_calibrate_only = True  # as tflite.int8_model: calibrate, then choose
        calibrated = converter.convert()
        ops, nodes = first_convolutions()(calibrated)
        model = _uint8_in_float_out(convert.mlir_quantize(
            calibrated, fully_quantize=True, input_data_type=tf.uint8, output_data_type=tf.float32,
            denylisted_ops=ops, denylisted_nodes=[*nodes, *soft_argmax_nodes(calibrated)]))
    return named(without_round_trips(model), function)


def without_round_trips(model: bytes) -> bytes:
    """The model with each float -> int8 -> float round trip between two float ops taken out: the
    quantizer still rounds a denylisted SOFTMAX's output to its fixed int8 grid (steps of 1/256) and
    back, which is the very loss the float soft-argmax is there to avoid."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    tree = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    graph = tree.subgraphs[0]
    code = [flatbuffer_utils.get_builtin_code_from_operator_code(op) for op in tree.operatorCodes]
    producer = {out: op for op in graph.operators for out in op.outputs}
    float_type = schema.TensorType.FLOAT32
    replaced, dropped = {}, []
    for op in graph.operators:
        if code[op.opcodeIndex] != schema.BuiltinOperator.DEQUANTIZE:
            continue
        quantize = producer.get(op.inputs[0])
        if (quantize is None or code[quantize.opcodeIndex] != schema.BuiltinOperator.QUANTIZE
                or graph.tensors[quantize.inputs[0]].type != float_type
                or op.outputs[0] in graph.outputs):
            continue
        replaced[op.outputs[0]] = quantize.inputs[0]
        dropped.append(op)
    if not dropped:
        return model
    for op in graph.operators:
        op.inputs = [replaced.get(index, index) for index in op.inputs]
    graph.operators = [op for op in graph.operators if not any(op is gone for gone in dropped)]
    used = {index for op in graph.operators for index in op.inputs}
    graph.operators = [op for op in graph.operators
                       if not (code[op.opcodeIndex] == schema.BuiltinOperator.QUANTIZE
                               and not (set(op.outputs) & (used | set(graph.outputs))))]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))


def soft_argmax_nodes(calibrated: bytes) -> list[str]:
    """The output names of the ops from the first SOFTMAX on (a heatmap head's soft-argmax and its
    confidence), in a calibrated (still float) model; none for a direct head."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    from tensorguess.export.tflite import tensor_name

    tree = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated))
    graph = tree.subgraphs[0]
    nodes, found = [], False
    for op in graph.operators:
        code = flatbuffer_utils.get_builtin_code_from_operator_code(tree.operatorCodes[op.opcodeIndex])
        found = found or code == schema.BuiltinOperator.SOFTMAX
        if found:
            nodes.extend(tensor_name(graph, i) for i in op.outputs)
    return list(dict.fromkeys(nodes))


NAMES_FILE = "point_names.txt"  # the point names packed in the .tflite, as the classes' labels


# What each file's input is, in its metadata: the whole photo squashed, or a two-stage model's crop.
INPUT_WORDS = {
    "whole": ("RGB photo squashed to {size}x{size}", "the whole photo squashed",
              "each point as (x / width, y / height) of the photo"),
    "crop": ("RGB crop of the photo resampled to {size}x{size}",
             "the square the locate file's points give by crop_box {rule} in {crop_file}, bilinear, black "
             "outside the photo",
             "each point as (x, y) / side of the crop: x0 + x side, y0 + y side in the photo"),
}


def points_metadata(size: int, names: list[str], int8: bool, order: list[str], stage: str = "whole",
                    rule: dict | None = None) -> bytes:
    """TFLITE_METADATA of a points model: the RGB input and its normalisation as the classes' files
    say it, the outputs in the model's `order`, the point names as the labels of the points' axis."""
    from tensorguess.model_dir import POINTS_CROP

    source, read, meaning = (words.format(size=size, rule=rule, crop_file=POINTS_CROP)
                             for words in INPUT_WORDS[stage])
    outputs = {
        "points": tflite_metadata.Output(
            "points", f"{meaning[0].upper()}{meaning[1:]}, in the names' order.",
            labels_file=NAMES_FILE, labels_description="The name of each point, one a line."),
        "confidence": tflite_metadata.Output(
            "confidence", "Each point's heatmap peak (NaN for a direct head).", value_range=(0.0, 1.0)),
        "box": tflite_metadata.Output(
            "box", "x0, y0, x1, y1 of the part of the input read, as the points: [0, 0, 1, 1]."),
    }
    kind = "int8 (uint8 input, float outputs)" if int8 else "float32"
    return tflite_metadata.metadata_bytes(tflite_metadata.ImageModel(
        name=CROP_MODEL_NAME if stage == "crop" else "tensor-guess points model",
        description=f"Keypoint model, {kind}, {len(names)} points, on a {size}x{size} RGB photo ({read}): "
                    f"{meaning}.",
        version="1", size=size, mean=0.0, std=255.0,
        input_description=f"{source}, pixels / 255",
        outputs=[outputs[name] for name in order]))


def write_points_tflite(graph_def, names: list[str], path: Path, size: int,
                        calibration: Callable | None, write: Callable[[Path, bytes], None],
                        stage: str = "whole", rule: dict | None = None) -> None:
    """Convert `stage`, add the metadata, pack the point names inside (as the classes' labels), write."""
    from tensorguess.export.tflite import with_packed_file

    model = (float_model(graph_def, stage) if calibration is None
             else int8_model(graph_def, calibration, stage))
    metadata = points_metadata(size, names, calibration is not None, output_order(model), stage, rule)
    model = tflite_metadata.with_metadata(model, metadata)
    write(Path(path), with_packed_file(model, NAMES_FILE, names))


# The metadata's name of a two-stage model's points stage (on the crop), by which score/points_lite
# knows the file needs the locate file and the crop before it.
CROP_MODEL_NAME = "tensor-guess points model, points stage on the crop"

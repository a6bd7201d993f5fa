"""TFLite models of the classifier: float32, and int8 (its first layers in float) with uint8 input.

Both are converted from `retrained_graph.pb` itself, cut at `image_batch:0` (the float batch
[N,S,S,3] in [0,1] that guess and guessDir feed after decoding and resizing) and ending at the
calibrated softmax, so whatever trained the classifier (a head, a fine-tuned network) is what
is exported; decoding and resizing stay outside, as they do for the .pb's batch input.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from tensorguess import stderr_noise
from tensorguess.atomic_write import write_atomically
from tensorguess.export import bias_correction, tflite_metadata, weight_grid
from tensorguess.model_dir import FINAL_TENSOR, IMAGE_BATCH, LABELS

LABELS_NAME = LABELS  # the associated file packed inside the .tflite


def classifier_function(graph_def, final_tensor_name: str = FINAL_TENSOR):
    """(concrete function image_batch -> scores, the object that keeps it alive), from the GraphDef."""
    import tensorflow as tf

    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    graph = wrapped.graph
    # Pruning at the batch drops the decode ops before it: only the network is exported.
    pruned = wrapped.prune(feeds=graph.get_tensor_by_name(f"{IMAGE_BATCH}:0"),
                           fetches=graph.get_tensor_by_name(f"{final_tensor_name}:0"))
    return pruned, wrapped


def float_model(graph_def, final_tensor_name: str = FINAL_TENSOR) -> bytes:
    import tensorflow as tf

    function, keep = classifier_function(graph_def, final_tensor_name)
    with stderr_noise.filtered():
        return tf.lite.TFLiteConverter.from_concrete_functions([function], keep).convert()


FLOAT_CONVOLUTIONS = 3  # the first convolutions (and the input scaling before them) kept in float

# What stays in float in an int8 model: given the calibrated (still float) model, the TFLite
# op names and the tensor names whose ops are not quantized.
FloatPart = Callable[[bytes], tuple[list[str], list[str]]]


def first_convolutions(count: int = FLOAT_CONVOLUTIONS) -> FloatPart:
    """The ops up to the `count`-th convolution in float (the input's scaling included)."""
    return lambda calibrated: ([], leading_nodes(calibrated, count))


EXPORTED_FLOAT_PART = first_convolutions()  # export.sh's


def int8_model(graph_def, calibration: Callable[[], Iterable[np.ndarray]],
               final_tensor_name: str = FINAL_TENSOR, snap: bool = True,
               correct_bias: bool = True, float_part: FloatPart | None = EXPORTED_FLOAT_PART) -> bytes:
    """Full-integer post-training quantization, calibrated on `calibration()` (float images
    [S,S,3] in [0,1]), but for `float_part` (None: everything int8). The input is uint8 (scale
    1/255, zero point 0 when the calibration photos span black to white: the pixel values
    themselves); the scores come out dequantized to float32, in steps of 1/256 (the int8
    softmax's).

    Two things drift the int8 features from the float ones, and a third is their steady part;
    all three are undone here (measured by bench/int8_agreement.py, figures in
    docs/benchmarks.md, "The int8 recipe" and "Bias correction"):
    - the input's scaling (the module's x * 255 - 128) and the first convolutions, at
      112x112, quantized, move some photos' features far: the ops up to the
      FLOAT_CONVOLUTIONS-th convolution stay in float (`float_part`), with int8 from there on;
    - TFLite puts each weight channel on a grid of its own, rounding the module's weights a
      second time: with `snap`, those on a uint8 grid of their own (the shared modules') are
      put back on it (weight_grid.py);
    - what is left is mostly a steady offset per channel, layer upon layer (the activations'
      rounding does not average out): with `correct_bias`, each convolution's bias is moved by
      its channels' mean error against the float model on calibration photos
      (bias_correction.py).
    bench/int8_agreement.py's recipes pass a `float_part` of their own."""
    with stderr_noise.filtered():  # the converter's and LiteRT's own lines
        function, keep = classifier_function(graph_def, final_tensor_name)
        converter = int8_converter(function, keep, calibration)
        if float_part is None:
            model = converter.convert()
        else:
            import tensorflow as tf
            from tensorflow.lite.python import convert

            # What QuantizationDebugger's selective quantization runs (its get_nondebug_quantized_model):
            # calibrate, then quantize all but the denylisted ops, keeping our uint8 input and
            # float output.
            converter._experimental_calibrate_only = True
            calibrated = converter.convert()
            ops, nodes = float_part(calibrated)
            # mlir_quantize leaves an int8 input and an int8 output: made uint8 and float32 below,
            # as the converter's own path makes them.
            model = _uint8_in_float_out(convert.mlir_quantize(
                calibrated, fully_quantize=True, input_data_type=tf.uint8,
                output_data_type=tf.float32, denylisted_ops=list(ops), denylisted_nodes=list(nodes)))
        if snap:
            model, _ = weight_grid.snap(model, graph_def)
        if correct_bias:
            model, _ = bias_correction.correct(model, float_model(graph_def, final_tensor_name),
                                               calibration())
        return model


def _uint8_in_float_out(model: bytes) -> bytes:
    """The model with its int8 input (read by DEQUANTIZE ops alone, the float layers') made
    uint8, the same values with the zero point moved by 128, which DEQUANTIZE takes as well;
    and each int8 output (the scores) dequantized to float32 by one more DEQUANTIZE op at the end."""
    import copy

    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    tree = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    graph = tree.subgraphs[0]
    codes = [flatbuffer_utils.get_builtin_code_from_operator_code(code) for code in tree.operatorCodes]
    dequantize = codes.index(schema.BuiltinOperator.DEQUANTIZE) if \
        schema.BuiltinOperator.DEQUANTIZE in codes else None
    source = graph.tensors[graph.inputs[0]]
    readers = [codes[op.opcodeIndex] for op in graph.operators if graph.inputs[0] in op.inputs]
    if source.type != schema.TensorType.INT8 or dequantize is None or \
            set(readers) != {schema.BuiltinOperator.DEQUANTIZE}:
        raise ValueError("the int8 model's input is not read by DEQUANTIZE alone; cannot make it uint8")
    source.type = schema.TensorType.UINT8
    source.quantization.zeroPoint = [int(zero) + 128 for zero in source.quantization.zeroPoint]
    outputs = list(graph.outputs)
    for place, scores_index in enumerate(outputs):  # the classifier's scores; a points model's three
        scores = graph.tensors[scores_index]
        if scores.type == schema.TensorType.FLOAT32:
            continue
        floats = copy.deepcopy(scores)
        floats.type, floats.quantization, floats.buffer = schema.TensorType.FLOAT32, None, 0
        scores.name = (scores.name.decode() if isinstance(scores.name, bytes) else scores.name) + "_int8"
        graph.tensors.append(floats)
        step = schema.OperatorT()
        step.opcodeIndex, step.inputs, step.outputs = dequantize, [scores_index], [len(graph.tensors) - 1]
        graph.operators.append(step)
        outputs[place] = len(graph.tensors) - 1
        for signature in tree.signatureDefs or []:
            for output in signature.outputs or []:
                if output.tensorIndex == scores_index:
                    output.tensorIndex = len(graph.tensors) - 1
    graph.outputs = outputs
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))


def tensor_name(graph, index: int) -> str:
    value = graph.tensors[index].name
    return value.decode() if isinstance(value, bytes) else value


def leading_nodes(calibrated: bytes, convolutions: int) -> list[str]:
    """The output names of the ops before and up to the `convolutions`-th convolution of a
    calibrated (still float) model."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    tree = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated))
    graph = tree.subgraphs[0]
    kinds = {schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.DEPTHWISE_CONV_2D}
    nodes, seen = [], 0
    for op in graph.operators:
        if seen >= convolutions:
            break
        nodes.extend(tensor_name(graph, i) for i in op.outputs)
        seen += flatbuffer_utils.get_builtin_code_from_operator_code(
            tree.operatorCodes[op.opcodeIndex]) in kinds
    return list(dict.fromkeys(nodes))


def int8_converter(function, keep, calibration: Callable[[], Iterable[np.ndarray]]):
    """The converter int8_model runs (QuantizationDebugger takes one too)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], keep)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    # Clipped to [0, 1] (a box average can round a hair above 1), so that the input's scale is
    # 1/255 exactly and a caller may feed the uint8 pixels as they are.
    converter.representative_dataset = lambda: ([np.clip(image[np.newaxis], 0, 1).astype(np.float32)]
                                                for image in calibration())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.float32
    return converter


def with_labels(model: bytes, labels: list[str]) -> bytes:
    """The model with the labels file packed inside (with_packed_file)."""
    return with_packed_file(model, LABELS_NAME, labels)


def with_packed_file(model: bytes, name: str, lines: list[str]) -> bytes:
    """The model with a text file of `lines` packed inside, as TFLite metadata packs associated files:
    a zip archive appended to the flatbuffer, uncompressed (MediaPipe reads stored files only), which
    the interpreter ignores and any zip reader (`unzip -l model.tflite`) lists."""
    buffer = io.BytesIO(model)
    buffer.seek(0, io.SEEK_END)
    with zipfile.ZipFile(buffer, "a", zipfile.ZIP_STORED) as archive:
        archive.writestr(name, "".join(f"{line}\n" for line in lines))
    return buffer.getvalue()


def packed_labels(model: bytes) -> list[str] | None:
    """The labels packed inside a .tflite by with_labels, or None."""
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as archive:
            return archive.read(LABELS_NAME).decode("utf-8").splitlines()
    except (zipfile.BadZipFile, KeyError):
        return None


def classifier_metadata(model: bytes, labels: list[str], int8: bool) -> bytes:
    """TFLITE_METADATA of a classifier: what MediaPipe's ImageClassifier and the task libraries
    read (tflite_metadata.py). Both models take [0,1] RGB: the float one as floats, so
    (pixel - 0) / 255; the int8 one as uint8 pixels with scale 1/255, so the pixels as they are."""
    from ai_edge_litert import schema_py_generated as schema

    root = schema.Model.GetRootAs(model, 0)
    graph = root.Subgraphs(0)
    size = int(graph.Tensors(graph.Inputs(0)).Shape(1))
    kind = "int8 (uint8 input, float scores)" if int8 else "float32"
    return tflite_metadata.metadata_bytes(tflite_metadata.ImageModel(
        name="tensor-guess image classifier",
        description=f"Retrained image classifier, {kind}, {len(labels)} labels: scores every label of "
                    f"a {size}x{size} RGB photo (the softmax of the calibrated logits; they sum to 1).",
        version="1", size=size, mean=0.0, std=255.0,
        input_description=f"RGB photo resized to {size}x{size}, pixels / 255",
        outputs=[tflite_metadata.Output(
            name="probability", description="The score of each label, in the labels file's order.",
            value_range=(0.0, 1.0), labels_file=LABELS_NAME)]))


def write_tflite(graph_def, labels: list[str], path: Path, final_tensor_name: str,
                 calibration: Callable | None = None,
                 write: Callable[[Path, bytes], None] = write_atomically) -> None:
    """Convert, add the metadata, pack the labels inside and write(path, bytes) (export passes its
    publication's)."""
    model = (float_model(graph_def, final_tensor_name) if calibration is None
             else int8_model(graph_def, calibration, final_tensor_name))
    model = tflite_metadata.with_metadata(model, classifier_metadata(model, labels, calibration is not None))
    write(Path(path), with_labels(model, labels))

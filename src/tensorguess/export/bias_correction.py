"""Empirical bias correction of an int8 model: each convolution's int32 bias is moved by the
mean error its output channel makes against the float model, measured on calibration photos.

Why: with the weights exactly the module's (weight_grid.py), much of what still separates
the int8 features from the float ones is not noise but an offset that is the same on every
output of a channel: the rounding of the activations to their uint8 steps does not average out
to zero channel by channel, and each layer passes its offsets on, summed over its input
channels, to the next (at the pooled bottleneck the head reads, the per-channel mean is most
of the error). Moving each bias by the mean error of its channel is the empirical bias
correction of Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias
Correction", 2019, section 4.2. What it gains on MobileNet v1 and v2 (bench/int8_agreement.py):
docs/benchmarks.md, section 9, "Bias correction".

How: the float model runs once on each photo, and for each convolution keeps where its output
lies inside the fused activation's linear range (a clamped output says nothing of the offset
before the clamp: one bit an output, packed) and the sum of those outputs per channel. Then,
layer after layer from the input on, the int8 model runs on the same photos and the layer's
bias is moved by its channels' mean error over those outputs. Layer by layer, because
correcting one changes what every later one sees: correcting all at once from one
measurement counts each inherited offset twice (the features fall apart). Only the
int32 biases change: the arithmetic and the speed are the converter's. Any module gains:
where the weights are on no grid of their own, their rounding adds offsets of its own, which
this removes as well.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from tensorguess.export.formats import evenly_chosen
from tensorguess.export.litert import open_interpreter, quantized


def _convolutions(tree) -> list:
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    kinds = {schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.DEPTHWISE_CONV_2D}
    return [op for op in tree.subgraphs[0].operators
            if flatbuffer_utils.get_builtin_code_from_operator_code(tree.operatorCodes[op.opcodeIndex])
            in kinds]


def _linear_range(op) -> tuple[float, float]:
    """Where the op's fused activation passes its input through unchanged."""
    from ai_edge_litert import schema_py_generated as schema

    activation = getattr(op.builtinOptions, "fusedActivationFunction", schema.ActivationFunctionType.NONE)
    return {schema.ActivationFunctionType.RELU: (0.0, np.inf),
            schema.ActivationFunctionType.RELU6: (0.0, 6.0),
            schema.ActivationFunctionType.RELU_N1_TO_1: (-1.0, 1.0)}.get(activation, (-np.inf, np.inf))


class _Runner:
    """One interpreter that keeps every tensor, fed one photo at a time (least memory), on every
    core, with the default delegate (XNNPACK) that guess, guessDir, evaluate and serve run: so
    the offsets corrected are those of the arithmetic the model is run with here. TFLite's own
    kernels round some outputs one step the other way: a correction measured with them fits the
    model less well, and takes longer (docs/benchmarks.md, section 9, "Bias correction")."""

    def __init__(self, model: bytes):
        self.interpreter = open_interpreter(model, experimental_preserve_all_tensors=True)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.details = {detail["index"]: detail for detail in self.interpreter.get_tensor_details()}

    def run(self, image: np.ndarray) -> None:
        batch = image[np.newaxis].astype(np.float32)
        self.interpreter.set_tensor(self.input["index"], quantized(batch, self.input)
                                    if self.input["dtype"] != np.float32 else batch)
        self.interpreter.invoke()

    def value(self, index: int) -> np.ndarray:
        """The tensor in real numbers."""
        raw = self.interpreter.get_tensor(index)
        if raw.dtype == np.float32:
            return raw
        scale, zero = self.details[index]["quantization"]
        return (raw.astype(np.float32) - zero) * scale


RUNS = 1600  # layers x photos: 64 photos for MobileNet v1's 24 int8 convolutions, 16 at most 100
MOST_PHOTOS, FEWEST_PHOTOS = 64, 16


def photo_count(layers: int) -> int:
    """How many calibration photos correct `layers` convolutions: the cost is one int8 run of a
    photo per layer. 16 photos already give about the 64's features (docs/benchmarks.md,
    section 9, "Bias correction"); fewer would leave the last layers' few outputs noisy."""
    return max(FEWEST_PHOTOS, min(MOST_PHOTOS, RUNS // max(layers, 1)))


def evenly_spread(items: Iterable, count: int) -> list:
    """`count` of the items spread evenly over all of them, in one pass and without holding more
    than 2 * count: the calibration photos come in label order, so the first ones would be of a
    few classes only."""
    kept, stride = [], 1
    for position, item in enumerate(items):
        if position % stride == 0:
            kept.append(item)
            if len(kept) == 2 * count:  # keep every other one, and take every 2 stride-th from now
                kept, stride = kept[::2], stride * 2
    return evenly_chosen(kept, count)


class _FloatSide:
    """What the float model does on the photos, once: per int8 convolution, each photo's packed
    "inside the linear range" bits, and the sum and count of those outputs per channel."""

    def __init__(self, float_model: bytes, references: list, images: list[np.ndarray]):
        reference = _Runner(float_model)
        self.inside_bits: list[list[np.ndarray]] = [[] for _ in references]
        self.sums: list[np.ndarray] = [0.0] * len(references)  # arrays from the first photo on
        self.counts: list[np.ndarray] = [0] * len(references)
        for image in images:
            reference.run(image)
            for i, ref in enumerate(references):
                low, high = _linear_range(ref)
                expected = reference.value(ref.outputs[0])
                inside = (expected > low) & (expected < high)
                channels = expected.shape[-1]
                self.inside_bits[i].append(np.packbits(inside))
                inside_values = (expected * inside).reshape(-1, channels)
                self.sums[i] = self.sums[i] + inside_values.sum(0, dtype=np.float64)
                self.counts[i] = self.counts[i] + inside.reshape(-1, channels).sum(0)

    def offsets(self, model: bytes, ops: list, which: list[int], images: list[np.ndarray]) -> dict:
        """Layer -> the mean error per channel of `model`'s convolution `ops[layer]`, for each
        layer in `which`, in one run of the model over the photos."""
        runner = _Runner(model)
        totals = {i: np.zeros_like(self.sums[i], dtype=np.float64) for i in which}
        for photo, image in enumerate(images):
            runner.run(image)
            for i in which:
                value = runner.value(ops[i].outputs[0])
                inside = np.unpackbits(self.inside_bits[i][photo], count=value.size).reshape(value.shape)
                totals[i] += (value * inside).reshape(-1, value.shape[-1]).sum(0)
        return {i: (totals[i] - self.sums[i]) / np.maximum(self.counts[i], 1) for i in which}


def _rms(offset: np.ndarray) -> float:
    return round(float(np.sqrt(np.mean(offset ** 2))), 5)


def _layers(model: bytes, float_model: bytes):
    """(tree, the int8 convolutions, their float counterparts), or None if they do not match."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    tree = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    graph = tree.subgraphs[0]
    reference_tree = flatbuffer_utils.read_model_from_bytearray(bytearray(float_model))
    ops, references = _convolutions(tree), _convolutions(reference_tree)
    if len(ops) != len(references) or any(
            tuple(graph.tensors[op.outputs[0]].shape[1:]) !=
            tuple(reference_tree.subgraphs[0].tensors[ref.outputs[0]].shape[1:])
            for op, ref in zip(ops, references, strict=True)):
        return None
    pairs = [(op, ref) for op, ref in zip(ops, references, strict=True)
             if graph.tensors[op.inputs[2]].type == schema.TensorType.INT32]  # the int8 ones
    return tree, [op for op, _ in pairs], [ref for _, ref in pairs]


def _prepared(model: bytes, float_model: bytes, images: Iterable[np.ndarray]):
    """(tree, the int8 convolutions, the photos used, the float side on them), or None if the
    models do not match: what measure() and correct() both start from."""
    layers = _layers(model, float_model)
    if layers is None:
        return None
    tree, ops, references = layers
    images = [np.clip(image, 0, 1) for image in evenly_spread(images, photo_count(len(ops)))]
    return tree, ops, images, _FloatSide(float_model, references, images)


def measure(model: bytes, float_model: bytes, images: Iterable[np.ndarray]) -> list[float] | None:
    """Each int8 convolution's offsets (the root mean square over its channels) as the model
    stands, in one run; None if the models do not match. What correct() leaves is this."""
    prepared = _prepared(model, float_model, images)
    if prepared is None:
        return None
    _, ops, images, float_side = prepared
    offsets = float_side.offsets(model, ops, list(range(len(ops))), images)
    return [_rms(offsets[i]) for i in range(len(ops))]


def correct(model: bytes, float_model: bytes, images: Iterable[np.ndarray]) -> tuple[bytes, dict]:
    """The int8 `model` with its convolutions' biases corrected against `float_model` (the same
    network in float) on `images` (float [S,S,3] in [0,1], training photos only; photo_count
    of them, spread over all); and facts: each layer's offsets as found (after the layers
    before it were corrected) and as left. A model whose convolutions do not follow the float
    model's comes back as it was."""
    from ai_edge_litert.tools import flatbuffer_utils

    prepared = _prepared(model, float_model, images)
    if prepared is None:
        return model, {"skipped": "the int8 convolutions do not follow the float model's"}
    tree, ops, images, float_side = prepared
    graph = tree.subgraphs[0]
    found = []
    for i, op in enumerate(ops):
        offset = float_side.offsets(model, ops, [i], images)[i]
        found.append(_rms(offset))
        bias = graph.tensors[op.inputs[2]]
        steps = np.asarray(bias.quantization.scale, np.float64)
        data = tree.buffers[bias.buffer].data.view(np.int32).astype(np.int64)
        data = np.clip(data - np.round(offset / steps).astype(np.int64), -2**31, 2**31 - 1)
        tree.buffers[bias.buffer].data = data.astype(np.int32).view(np.uint8).ravel()
        model = bytes(flatbuffer_utils.convert_object_to_bytearray(tree))
    left = float_side.offsets(model, ops, list(range(len(ops))), images)
    return model, {"photos": len(images), "layers": len(ops), "offset_rms_found": found,
                   "offset_rms_left": [_rms(left[i]) for i in range(len(ops))]}

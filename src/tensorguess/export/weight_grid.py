"""Put an int8 model's convolution weights back on the grid the module's own weights lie on.

The shared MobileNets were rebuilt in float from Coral's quantized models: every convolution's
float weights are s * (q - z) for one step s per tensor and whole q in 0..255, the uint8
per-tensor grid of the original. TFLite's full-integer quantizer then puts each output channel
on a grid of its own (symmetric int8, scale max|w| / 127), which is not a multiple of s: every
weight is rounded a second time, by up to half the new step, and 27 layers of that drift the
features away from the float ones (a cosine of about 0.95). Where a channel's weights fit in
-127..127 steps of s, scale s represents them exactly; this rewrites those channels (their int8
values and the bias's int32 scale, in_scale * weight_scale) in the converted flatbuffer and
leaves every other channel, and every tensor not on such a grid (the trained head), as the
converter made it. The arithmetic is the one the kernels run anyway: per-channel int8 weights,
zero point 0, as XNNPACK wants.
"""

from __future__ import annotations

import numpy as np

CONVOLUTIONS = {"Conv2D": "CONV_2D", "DepthwiseConv2dNative": "DEPTHWISE_CONV_2D"}
ON_GRID = 1e-3  # |w / s - round(w / s)| below this, in steps, for the whole tensor


def grid_step(weights: np.ndarray) -> float | None:
    """The step s with weights == s * whole numbers (zero on the grid), or None if there is none."""
    values = np.unique(weights.astype(np.float64))
    if len(values) < 2 or len(values) > 256:
        return None
    step = float(np.diff(values).min())
    if step <= 0:
        return None
    ratio = weights.astype(np.float64) / step
    return step if float(np.abs(ratio - np.round(ratio)).max()) < ON_GRID else None


def module_filters(graph_def) -> list[tuple[str, np.ndarray]]:
    """(op type, float filter as the TFLite tensor lays it out) of each convolution, in graph order."""
    import tensorflow as tf

    nodes = {node.name: node for node in graph_def.node}
    filters = []
    for node in graph_def.node:
        if node.op not in CONVOLUTIONS:
            continue
        source = nodes.get(node.input[1].split(":")[0])
        while source is not None and source.op == "Identity":  # freezing leaves reads as Identity
            source = nodes.get(source.input[0].split(":")[0])
        if source is None or source.op != "Const":
            continue
        value = tf.make_ndarray(source.attr["value"].tensor)  # HWIO, or HWC1 for depthwise
        layout = (value.transpose(3, 0, 1, 2) if node.op == "Conv2D"  # OHWI
                  else value.transpose(3, 0, 1, 2).reshape(1, *value.shape[:2], -1))  # 1HWC
        filters.append((CONVOLUTIONS[node.op], layout))
    return filters


def snap(model: bytes, graph_def) -> tuple[bytes, dict]:
    """The model with each convolution channel that fits put on its module's grid; and counts.
    A model whose convolutions cannot be matched to the graph's comes back as it was."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    names = {value: name for name, value in vars(schema.BuiltinOperator).items()
             if not name.startswith("_")}
    tree = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    graph = tree.subgraphs[0]
    floats = iter(module_filters(graph_def))
    counts = {"layers": 0, "channels": 0, "snapped": 0}
    for op in graph.operators:
        kind = names.get(flatbuffer_utils.get_builtin_code_from_operator_code(
            tree.operatorCodes[op.opcodeIndex]))
        if kind not in CONVOLUTIONS.values():
            continue
        expected_kind, weights = next(floats, (None, None))
        source, weight, bias = (graph.tensors[i] for i in op.inputs[:3])
        if expected_kind != kind or tuple(weight.shape) != weights.shape:
            return model, {"skipped": "the converted convolutions do not follow the graph's"}
        step = grid_step(weights)
        counts["layers"] += 1
        if step is None or weight.type != schema.TensorType.INT8:  # not on a grid, or kept in float
            continue
        axis = weight.quantization.quantizedDimension
        scales = np.array(weight.quantization.scale, np.float64)
        data = tree.buffers[weight.buffer].data.view(np.int8).reshape(weights.shape).copy()
        bias_data = tree.buffers[bias.buffer].data.view(np.int32).copy()
        input_scale = float(source.quantization.scale[0])
        whole = np.round(np.moveaxis(weights, axis, 0).astype(np.float64) / step)
        moved = np.moveaxis(data, axis, 0)
        converted = moved.reshape(len(scales), -1) * scales[:, np.newaxis]
        exact = whole.reshape(len(scales), -1) * step
        # The converter may have folded a power of two into the weights (the first layer's
        # input scaling, 1/128 for the shared MobileNets): the grid is then that factor * s.
        fitted = float((converted * exact).sum() / (exact * exact).sum())
        factor = 2.0 ** round(np.log2(fitted)) if fitted > 0 else 0.0
        if not factor or abs(fitted / factor - 1) > 1e-3 or \
                np.abs(converted - factor * exact).max() > 0.51 * scales.max() + 1e-9:
            counts["unmatched"] = counts.get("unmatched", 0) + 1
            continue
        step *= factor
        for channel in range(len(scales)):
            counts["channels"] += 1
            if np.abs(whole[channel]).max() > 127:
                continue
            moved[channel] = whole[channel].astype(np.int8)
            real_bias = bias_data[channel] * input_scale * scales[channel]
            bias_data[channel] = int(np.round(real_bias / (input_scale * step)))
            scales[channel] = step
            counts["snapped"] += 1
        tree.buffers[weight.buffer].data = np.moveaxis(moved, 0, axis).astype(np.int8).view(np.uint8).ravel()
        tree.buffers[bias.buffer].data = bias_data.view(np.uint8).ravel()
        weight.quantization.scale = scales.astype(np.float32).tolist()
        bias.quantization.scale = (scales * input_scale).astype(np.float32).tolist()
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree)), counts

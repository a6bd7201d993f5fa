"""A module's spatial feature map (stride 16 by default) instead of its pooled vector.

The map is tapped by shape, not by name, so any image module works: of the nodes computed
from the image, the deepest whose output is [N, side, side, C] with side = ceil(S / stride)
(SAME padding rounds up) is the tap. In MobileNet v1 at 224 that is Conv2d_11_pw's ReLU6,
14x14x512; in v2, block 13's expansion, 14x14x576 (the layer SSDLite taps).

The tap runs on the loaded SavedModel's own graph, pruned to the tapped node and imported
into a tf.function whose variable reads are the module's live variables: nothing is frozen
or copied, and only the layers up to the tap run. The same rule (`find_tap`) finds the node
in any GraphDef of the module, the frozen one of export/frozen.py included (its node names
carry a `StatefulPartitionedCall/...` prefix there), so an exported points graph can prune
itself at the same node by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tensorguess.features.modules import ModuleError, ModuleSpec, to_value_range

STRIDE = 16  # the head's map: 14x14 at 224, 10x10 at 160
# Ops that carry values into the graph rather than compute features from the image.
NOT_FEATURES = frozenset({"Placeholder", "Const", "ReadVariableOp", "VarHandleOp", "Shape"})
CALLS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})


@dataclass(frozen=True)
class Tap:
    node: str  # the tapped node's name in the graph it was found in (output 0 is the map)
    stride: int
    side: int  # the map's height and width at the input size of the graph it was found in
    channels: int


def stride_of(size: int, side: int) -> int:
    """The power of two a map of `side` is to an input of `size`, rounded in log scale: 16 for
    14 of 224 (SAME padding), and for 17 of 299 too (Inception's VALID padding loses a few)."""
    return 2 ** round(math.log2(size / side))


def find_tap(graph, input_name: str, stride: int = STRIDE) -> Tap:
    """The deepest node computed from `input_name` whose output is a square map at `stride`.

    `graph` is a tf.Graph whose input has a static [N,S,S,3] shape (a module's traced function
    graph, or a GraphDef imported as it is) so every node's shape is known. Depth is the longest
    path from the input: in a network with branches the last stage of that stride wins, not a
    branch that happens to be listed later. The node found is the same at any input size.
    """
    image = graph.get_tensor_by_name(input_name)
    size = image.shape[1]
    if image.shape.rank != 4 or not size or image.shape[2] != size:
        raise ModuleError(f"the module's input {input_name} is not a square image batch: {image.shape}")
    depth = {image.op.name: 0}
    best = None
    for op in graph.get_operations():  # a graph lists its ops in topological order: inputs first
        reached = [depth[t.op.name] for t in op.inputs if t.op.name in depth]
        if not reached or op.type in NOT_FEATURES:
            continue
        depth[op.name] = max(reached) + 1
        shape = op.outputs[0].shape if op.outputs else None
        if (shape is not None and shape.rank == 4 and op.outputs[0].dtype.is_floating
                and shape[1] and shape[1] == shape[2] and shape[3]
                and stride_of(size, shape[1]) == stride
                and (best is None or depth[op.name] >= best[0])):
            best = (depth[op.name], op)
    if best is None:
        raise ModuleError(f"the module has no feature map at stride {stride} (input {size}x{size}): "
                          "it cannot give the points head its map")
    op = best[1]
    return Tap(op.name, stride, int(op.outputs[0].shape[1]), int(op.outputs[0].shape[3]))


def imported(graph_def):
    """A GraphDef (a frozen module's) as a tf.Graph with its node names kept, for `find_tap`."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    return graph


def module_function(loaded):
    """The loaded module's concrete function on a float image batch (its __call__'s, else its
    serving signature's) and the name of its image input in that function's graph."""
    import tensorflow as tf

    functions = list(getattr(loaded.__call__, "concrete_functions", None) or []) if callable(loaded) else []
    functions += [loaded.signatures["serving_default"]] if "serving_default" in getattr(
        loaded, "signatures", {}) else []
    for function in functions:
        specs = [s for s in tf.nest.flatten(function.structured_input_signature)
                 if isinstance(s, tf.TensorSpec)]
        if len(specs) == 1 and specs[0].shape.rank == 4 and specs[0].dtype == tf.float32:
            image_inputs = len(function.inputs) - len(function.graph.captures)
            if image_inputs == 1:
                return function, function.inputs[0].name
    raise ModuleError("the module has no function taking one float image batch [N,S,S,3]")


class SpatialTrunk:
    """images [N,S,S,3] in [0,1] -> the module's map at `stride`, [N, side, side, C] float32.

    `size` defaults to the module's input size; the convolutions run at any size, so a trunk at
    160 px on 100 px photos costs half of one at 224. The trunk is frozen: its variables are read,
    never trained (the head's gradients stop at the map).
    """

    def __init__(self, spec: ModuleSpec, loaded, size: int | None = None, stride: int = STRIDE):
        import tensorflow as tf

        self.spec, self.loaded = spec, loaded  # `loaded` holds the variables the graph reads
        self.size = size or spec.input_size
        function, input_name = module_function(loaded)
        graph_def = function.graph.as_graph_def()
        if any(node.op in CALLS for node in graph_def.node):
            # A module whose graph calls nested functions (Keras-saved ones) hides its layers
            # inside them: tapping it needs the graph flattened, which freezing does.
            raise ModuleError("the module's graph nests its layers in function calls; the spatial "
                              "map needs a flat graph (a frozen one)")
        self.tap = find_tap(function.graph, input_name, stride)
        self.graph_def = tf.compat.v1.graph_util.extract_sub_graph(graph_def, [self.tap.node])
        kept = {node.name for node in self.graph_def.node}
        # The graph reads its variables through captured resource handles: each kept one is fed
        # the module's own handle, so the map is computed from the live weights.
        handles = {inner.name: outer for outer, inner in function.graph.captures
                   if inner.op.name in kept}
        fed, tapped = input_name, f"{self.tap.node}:0"
        value_range = spec.value_range

        @tf.function(input_signature=[tf.TensorSpec([None, self.size, self.size, 3], tf.float32)])
        def spatial_map(images):
            feeds = {name: tf.identity(handle) for name, handle in handles.items()}
            feeds[fed] = to_value_range(images, value_range)
            (output,) = tf.graph_util.import_graph_def(self.graph_def, input_map=feeds,
                                                       return_elements=[tapped], name="trunk")
            output.set_shape([None, None, None, channels])  # the variables' shapes are not traced
            return tf.stop_gradient(output)

        channels = self.tap.channels
        self.spatial_map = spatial_map
        side = spatial_map.get_concrete_function().structured_outputs.shape[1]
        self.shape: tuple[int, int, int] = (int(side), int(side), channels)  # at `size`

    def __call__(self, images):
        return self.spatial_map(images)

    def maps(self, images, batch_size: int = 32):
        """numpy [N,S,S,3] -> numpy float32 maps, `batch_size` images a call."""
        import numpy as np

        out = [self.spatial_map(images[i:i + batch_size]).numpy() for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, *self.shape), np.float32)

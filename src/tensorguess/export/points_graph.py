"""Write a trained points model: one frozen graph (photo bytes -> box and points in the photo's pixels),
its SavedModel, the point names and the skeleton.

The graph computes what training's Python path computes (head/points_model.py's geometry):
- the whole-photo stage squashes the photo to its size x size as features/modules.resize_image
  does (box average along each side longer than that, then bilinear, no antialiasing), runs the
  module up to the stage's tap and the head, and maps a normalised point to (x W, y H);
- with `locate`, the crop is points_model.crop_box of the located points (all of them), cut by
  points_model.crop_squares (bilinear, black outside the photo) at the points stage's size,
  and its points map back to x0 + x side.
The photo's bytes decode as the classes' graph decodes them (export/frozen.decode_to_rgb: no EXIF
turn); tensor-guess itself feeds `photos` (model_dir.PHOTOS) decoded upright by EXIF, as the
training photos and their labels are.

The module is export/frozen.frozen_module's constant graph, pruned at each stage's tap (found by
name: the tap's node under the frozen call's prefix) and wrapped in one graph function that both
stages call: the module's weights are stored once (docs/benchmarks.md, section 14).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from tensorguess.errors import TensorGuessError
from tensorguess.export.frozen import decode_to_rgb, frozen_module, labels_bytes, write_signatures
from tensorguess.features.modules import ModuleSpec, enlarge
from tensorguess.head.points_model import PointsModel, PointsStage, crop_squares
from tensorguess.model_dir import (
    BOX_TENSOR,
    CONFIDENCE_TENSOR,
    INPUT_BYTES,
    PHOTOS,
    POINT_NAMES_TENSOR,
    POINTS_SKELETON,
    POINTS_TENSOR,
)
from tensorguess.publish import Publication

# What the SavedModel's signatures return: key -> the graph's tensor.
OUTPUTS = {"points": POINTS_TENSOR, "confidence": CONFIDENCE_TENSOR, "box": BOX_TENSOR,
           "names": POINT_NAMES_TENSOR}


# The whole-photo stage's own tensors, named so that export.sh can cut the network out of the graph
# (export/points_lite.py: TFLite and Core ML take the photo squashed to the stage's size, as the
# graph squashes it): its input [N,S,S,3] in [0,1], its points [N,K,2] normalised to that input
# (x / W, y / H of the photo) and their confidence [N,K].
WHOLE_INPUT = "whole_stage_input"
WHOLE_POINTS = "whole_stage_points"
WHOLE_CONFIDENCE = "whole_stage_confidence"
# With `locate`, the points stage's own tensors likewise (its input the crop [N,S,S,3] in [0,1], its
# points normalised to the crop) and the crop rule's numbers as constants, so that export.sh can write
# each stage as its own TFLite/Core ML file and tell a host how to crop between them.
CROP_INPUT = "crop_stage_input"
CROP_POINTS = "crop_stage_points"
CROP_CONFIDENCE = "crop_stage_confidence"
CROP_MARGIN = "crop_margin"
CROP_MIN_SIDE = "crop_min_side"

# One graph function a tap, called by every stage that reads it: the module's weights stored once.
# False imports the pruned module into the graph at each call, once a stage (bench/points_export.py's
# baseline).
share_trunk = True


class PointsExportError(TensorGuessError):
    """The model cannot be written as a graph (its tap is not in the module's frozen graph)."""


def frozen_node(graph_def, tap: str) -> str:
    """The node of the frozen module's graph that is the module's node `tap`: the same name, or it
    under the call's prefix (`StatefulPartitionedCall/StatefulPartitionedCall/Relu6_22`)."""
    found = [node.name for node in graph_def.node if node.name == tap or node.name.endswith("/" + tap)]
    if len(found) != 1:
        raise PointsExportError(f"the module's frozen graph has {len(found)} nodes named {tap!r} (one "
                                "expected): the points model was trained on another module; train again")
    return found[0]


def constant_head(head):
    """A copy of a trained head whose variables are their values (numpy arrays, which become
    constants where an op reads them), made eagerly: its own predict() then builds the frozen
    graph, so the graph computes what the head computes."""
    import tensorflow as tf

    frozen = copy.copy(head)
    for name, value in vars(head).items():
        if isinstance(value, tf.Variable):
            setattr(frozen, name, value.numpy())
        elif isinstance(value, list) and any(isinstance(item, tf.Variable) for item in value):
            setattr(frozen, name, [item.numpy() for item in value])
    return frozen


def squashed(photos, size: int):
    """float photos [N,H,W,3] of one size -> [N,size,size,3] as modules.resize_image does one photo:
    area-averaged along each side longer than `size` (shrink_to_fit), then bilinear (enlarge)."""
    import tensorflow as tf

    sides = tf.shape(photos)[1:3]
    shrunk = tf.cond(tf.reduce_any(sides > size),
                     lambda: tf.image.resize(photos, tf.minimum(sides, size), method="area"),
                     lambda: photos)
    return enlarge(shrunk, size)


def crop_boxes(points, width, height, margin: float, min_side: float):
    """points_model.crop_box for a batch: points [N,K,2] in photo pixels (all labelled) -> [N,4]."""
    import tensorflow as tf

    finite = tf.reduce_all(tf.math.is_finite(points), axis=-1)[..., None]
    low = tf.reduce_min(tf.where(finite, points, float("inf")), axis=1)
    high = tf.reduce_max(tf.where(finite, points, float("-inf")), axis=1)
    longer = tf.maximum(width, height)
    extent = tf.reduce_max(high - low, axis=-1)
    side = tf.maximum(tf.maximum(extent * (1 + 2 * margin), min_side * longer), 1.0)
    centre = (low + high) / 2
    half = side[:, None] / 2
    found = tf.concat([centre - half, centre + half], axis=-1)
    return tf.where(tf.reduce_any(finite[..., 0], axis=1)[:, None], found,
                    whole_square(width, height, tf.shape(points)[0]))


def whole_square(width, height, count):
    """The photo's own square [count,4] (crop_box with no point): centred, of its longer side."""
    import tensorflow as tf

    longer = tf.maximum(width, height)
    box = tf.stack([width - longer, height - longer, width + longer, height + longer]) / 2
    return tf.tile(box[None], [count, 1])


def trunk_functions(graph_def, input_name: str, stages: list[PointsStage]) -> dict:
    """tap -> a graph function: float images [N,S,S,3] in [0,1] -> the module's map at that tap,
    from the frozen module (`graph_def`, its input `input_name`) pruned there (one function a tap:
    stages that share a tap share it)."""
    import tensorflow as tf

    functions = {}
    for tap in dict.fromkeys(stage.tap for stage in stages):
        spatial_map = pruned_at(graph_def, input_name, frozen_node(graph_def, tap))
        if share_trunk:
            spatial_map = tf.function(spatial_map, autograph=False,
                                      input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        functions[tap] = spatial_map
    return functions


def pruned_at(graph_def, input_name: str, node: str):
    """images -> the output of `node` of `graph_def` fed `images` at `input_name`, only the nodes
    it needs imported."""
    import tensorflow as tf

    pruned = tf.compat.v1.graph_util.extract_sub_graph(graph_def, [node])

    def spatial_map(images):
        (output,) = tf.graph_util.import_graph_def(pruned, input_map={input_name: images},
                                                   return_elements=[f"{node}:0"], name="module")
        return output

    return spatial_map


def stage_points(head, trunk, images):
    """A stage's constant head on its input [N,size,size,3]: (points [N,K,2] normalised to the
    input, confidence [N,K])."""
    prediction = head.predict(trunk(images))
    return prediction.points, prediction.confidence


def points_graph(spec: ModuleSpec, loaded, model: PointsModel):
    """The points model as one frozen GraphDef (model_dir's INPUT_BYTES, PHOTOS and the outputs)."""
    import tensorflow as tf

    stages = [stage for stage in (model.locate, model.points) if stage is not None]
    graph_def, input_name, _ = frozen_module(spec, loaded)  # eagerly: it reads the live variables
    heads = {id(stage): constant_head(stage.head) for stage in stages}
    graph = tf.Graph()
    with graph.as_default():
        trunks = trunk_functions(graph_def, input_name, stages)
        contents = tf.compat.v1.placeholder(tf.string, shape=[], name=INPUT_BYTES)
        one = tf.expand_dims(decode_to_rgb(contents), 0)
        photos = tf.compat.v1.placeholder_with_default(one, [None, None, None, 3], name=PHOTOS)
        pixels = tf.image.convert_image_dtype(photos, tf.float32)  # as resize_image converts
        shape = tf.shape(pixels)
        height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        whole = model.locate or model.points
        whole_input = tf.identity(squashed(pixels, whole.size), name=WHOLE_INPUT)
        found, confidence = stage_points(heads[id(whole)], trunks[whole.tap], whole_input)
        found = tf.identity(found, name=WHOLE_POINTS)
        confidence = tf.identity(confidence, name=WHOLE_CONFIDENCE)
        found = found * tf.stack([width, height])
        if model.locate is None:
            box = whole_square(width, height, shape[0])
            points = found
        else:
            box = crop_boxes(found, width, height, model.margin, model.min_side)
            crop = tf.identity(crop_squares(pixels, box, model.points.size), name=CROP_INPUT)
            normalised, confidence = stage_points(heads[id(model.points)], trunks[model.points.tap], crop)
            normalised = tf.identity(normalised, name=CROP_POINTS)
            confidence = tf.identity(confidence, name=CROP_CONFIDENCE)
            tf.constant(float(model.margin), tf.float32, name=CROP_MARGIN)
            tf.constant(float(model.min_side), tf.float32, name=CROP_MIN_SIDE)
            points = box[:, None, :2] + normalised * (box[:, 2] - box[:, 0])[:, None, None]
        tf.identity(points, name=POINTS_TENSOR)
        tf.identity(confidence, name=CONFIDENCE_TENSOR)
        tf.identity(box, name=BOX_TENSOR)
        tf.constant(model.names, tf.string, name=POINT_NAMES_TENSOR)
    return graph.as_graph_def()


def write_points_saved_model(graph_def, directory: Path) -> None:
    """The SavedModel of the points graph: `serving_default` takes `image_bytes` (a scalar string),
    `photos` takes `photos` (uint8 [N,H,W,3], photos of one size); both return OUTPUTS."""
    write_signatures(graph_def, directory, {"serving_default": ({"image_bytes": INPUT_BYTES}, OUTPUTS),
                                            "photos": ({"photos": PHOTOS}, OUTPUTS)})


def skeleton_bytes(model: PointsModel) -> bytes:
    """POINTS_SKELETON's content: the names, and the bones and flip pairs as 0-based index pairs."""
    document = {"names": list(model.names), "skeleton": [list(map(int, b)) for b in model.skeleton],
                "flip_pairs": [list(map(int, p)) for p in model.flip_pairs]}
    return (json.dumps(document, indent=1) + "\n").encode()


def export_points_model(spec: ModuleSpec, loaded, model: PointsModel, graph_path: Path, names_path: Path,
                        saved_model_dir: Path | None, publication: Publication | None = None) -> None:
    """Stage the graph, the point names, the skeleton (beside the graph) and the SavedModel in
    `publication`, which publishes them with whatever else the run adds; without one, at once."""
    if publication is None:
        with Publication(Path(graph_path).parent) as alone:
            export_points_model(spec, loaded, model, graph_path, names_path, saved_model_dir, alone)
        return
    graph_def = points_graph(spec, loaded, model)
    publication.write(Path(graph_path), graph_def.SerializeToString())
    publication.write(Path(names_path), labels_bytes(model.names))
    publication.write(Path(graph_path).parent / POINTS_SKELETON, skeleton_bytes(model))
    if saved_model_dir:
        write_points_saved_model(graph_def, publication.new_folder(Path(saved_model_dir)))

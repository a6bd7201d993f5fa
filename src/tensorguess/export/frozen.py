"""Write the trained classifier: a frozen graph.pb, the labels file and a SavedModel.

The frozen graph holds decode + resize + module + final layer. Its input is
`DecodeJpeg/contents:0` (encoded bytes of a JPEG, PNG, GIF, BMP or WebP) and its
output `final_result:0`, so the classic label_image.py recipe runs it. It also
has `image_batch:0`, a [N,S,S,3] float batch in [0,1] that defaults to the
decoded image, which tensor-guess feeds to score many photos per run.
"""

from __future__ import annotations

from pathlib import Path

from tensorguess.export.canonical import canonical
from tensorguess.features.modules import ModuleSpec, feature_function, resize_image, to_value_range
from tensorguess.head.train import FinalLayer
from tensorguess.model_dir import BOTTLENECK, IMAGE_BATCH, INPUT_BYTES
from tensorguess.publish import Publication


def frozen_module(spec: ModuleSpec, loaded):
    """The module as a constant GraphDef: (graph_def, input tensor name, output tensor name)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    features = feature_function(loaded)
    size = spec.input_size
    function = tf.function(lambda images: features(to_value_range(images, spec.value_range)))
    concrete = function.get_concrete_function(tf.TensorSpec([None, size, size, 3], tf.float32))
    frozen = convert_variables_to_constants_v2(concrete)
    graph_def = frozen.graph.as_graph_def()
    # Function inlining leaves control edges that only ordered variable reads. Once
    # frozen they mean nothing, but grappler can rewire them onto `image_batch` itself,
    # which would then demand the bytes input even when a batch is fed.
    for node in graph_def.node:
        data_inputs = [name for name in node.input if not name.startswith("^")]
        del node.input[:]
        node.input.extend(data_inputs)
    output = frozen.outputs[0].name
    graph_def = tf.compat.v1.graph_util.extract_sub_graph(graph_def, [output.split(":")[0]])
    return graph_def, frozen.inputs[0].name, output


def decode_to_rgb(contents):
    """Graph ops: encoded bytes of any supported format -> uint8 [H,W,3] RGB.

    JPEGs (CMYK ones too) and BMPs decode straight to RGB; other formats keep their channels
    so grey becomes RGB and alpha is laid over white, as images.decode_bytes does. No EXIF
    turn: a photo's bytes decode as stored (images.decode_bytes turns it upright).
    """
    import tensorflow as tf

    def jpeg():
        # The accurate integer DCT is libjpeg's default, which Pillow (images.decode_bytes) uses: the
        # same pixels as training's; TensorFlow's own default, the fast one, is up to 12 levels off.
        return tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE")

    def three_channels():
        # A 32-bit BMP's 4th byte is padding, not alpha.
        return tf.io.decode_image(contents, channels=3, expand_animations=False)

    def other():
        image = tf.io.decode_image(contents, channels=0, expand_animations=False)
        pixels = tf.cast(image, tf.float32)
        channels = tf.shape(pixels)[-1]
        has_alpha = tf.logical_or(tf.equal(channels, 2), tf.equal(channels, 4))
        color_channels = channels - tf.cast(has_alpha, tf.int32)
        color = pixels[..., :color_channels]
        color = tf.tile(color, [1, 1, 3 // color_channels])
        alpha = tf.cond(has_alpha, lambda: pixels[..., -1:] / 255.0,
                        lambda: tf.ones_like(pixels[..., :1]))
        composed = color * alpha + 255.0 * (1.0 - alpha)
        return tf.cast(tf.round(composed), tf.uint8)

    is_jpeg = tf.equal(tf.strings.substr(contents, 0, 3), b"\xff\xd8\xff")
    is_bmp = tf.equal(tf.strings.substr(contents, 0, 2), b"BM")
    # TF 2.21's WebP decoder aborts the whole process on some animated WebPs: refuse them.
    is_extended_webp = tf.logical_and(tf.equal(tf.strings.substr(contents, 8, 4), b"WEBP"),
                                      tf.equal(tf.strings.substr(contents, 12, 4), b"VP8X"))
    flags = tf.cond(is_extended_webp,
                    lambda: tf.io.decode_raw(tf.strings.substr(contents, 20, 1), tf.uint8)[0],
                    lambda: tf.constant(0, tf.uint8))
    animated = tf.not_equal(tf.bitwise.bitwise_and(flags, 2), 0)
    check = tf.debugging.Assert(tf.logical_not(animated), ["animated WebP is not supported"])
    with tf.control_dependencies([check]):
        contents = tf.identity(contents)
    image = tf.cond(is_jpeg, jpeg, lambda: tf.cond(is_bmp, three_channels, other))
    image.set_shape([None, None, 3])
    return image


def classifier_graph(spec: ModuleSpec, loaded, layer: FinalLayer, final_tensor_name: str):
    """The whole classifier as one frozen GraphDef."""
    import tensorflow as tf

    module_graph, module_input, module_output = frozen_module(spec, loaded)
    size = spec.input_size
    graph = tf.Graph()
    with graph.as_default():
        contents = tf.compat.v1.placeholder(tf.string, shape=[], name=INPUT_BYTES)
        one = tf.expand_dims(resize_image(decode_to_rgb(contents), size), 0)
        batch = tf.compat.v1.placeholder_with_default(one, [None, size, size, 3], name=IMAGE_BATCH)
        (features,) = tf.compat.v1.import_graph_def(
            module_graph, input_map={module_input: batch}, return_elements=[module_output],
            name="module",
        )
        bottleneck = tf.identity(features, name=BOTTLENECK)
        with tf.name_scope("final_training_ops"):
            if layer.hidden_weights is not None:
                hidden = tf.matmul(bottleneck, tf.constant(layer.hidden_weights, name="hidden_weights"))
                hidden = tf.add(hidden, tf.constant(layer.hidden_biases, name="hidden_biases"))
                bottleneck = tf.nn.relu(hidden, name="hidden")
            logits = tf.matmul(bottleneck, tf.constant(layer.weights, name="weights"))
            logits = tf.add(logits, tf.constant(layer.biases, name="biases"), name="logits")
            # Temperature scaling (calibration.py); 1.0 when the run did not calibrate.
            logits = tf.divide(logits, tf.constant(layer.temperature, tf.float32, name="temperature"),
                               name="calibrated_logits")
        tf.nn.softmax(logits, name=final_tensor_name)
    return canonical(graph.as_graph_def())  # the same model, the same bytes, whatever ran before


def labels_bytes(labels: list[str]) -> bytes:
    """retrained_labels.txt's content: one label a line, in the graph's class order."""
    return "".join(f"{label}\n" for label in labels).encode("utf-8")


def write_saved_model(graph_def, directory: Path, final_tensor_name: str) -> None:
    """A TF1-style SavedModel over the same frozen graph, so both give identical scores, built
    into `directory` (empty or absent: the publication's temp, swapped in with the others).

    Signatures: `serving_default` takes `image_bytes` (a scalar string), `images`
    takes `images` (float [N,S,S,3] in [0,1]); both return `scores`.
    """
    scores = {"scores": final_tensor_name}
    write_signatures(graph_def, directory, {"serving_default": ({"image_bytes": INPUT_BYTES}, scores),
                                            "images": ({"images": IMAGE_BATCH}, scores)})


def write_signatures(graph_def, directory: Path, signatures: dict[str, tuple[dict, dict]]) -> None:
    """A TF1-style SavedModel of the frozen `graph_def` (no variables) into `directory`, with one
    signature a name: (inputs, outputs), each a dict of the signature's key -> the graph's tensor
    name (output 0 of that node)."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        tf.compat.v1.import_graph_def(graph_def, name="")
        info = tf.compat.v1.saved_model.utils.build_tensor_info

        def tensors(names: dict) -> dict:
            return {key: info(graph.get_tensor_by_name(f"{name}:0")) for key, name in names.items()}

        builder = tf.compat.v1.saved_model.Builder(str(directory))
        builder.add_meta_graph_and_variables(
            session,
            [tf.compat.v1.saved_model.tag_constants.SERVING],
            signature_def_map={
                name: tf.compat.v1.saved_model.signature_def_utils.build_signature_def(
                    tensors(inputs), tensors(outputs), "tensorflow/serving/predict")
                for name, (inputs, outputs) in signatures.items()
            },
        )
        builder.save()


def export(spec: ModuleSpec, loaded, layer: FinalLayer, labels: list[str], graph_path: Path,
           labels_path: Path, saved_model_dir: Path | None, final_tensor_name: str,
           publication: Publication | None = None) -> None:
    """Stage the graph, its labels and the SavedModel in `publication`, which publishes them
    together with whatever else the run adds to it; without one, publish them at once."""
    if publication is None:
        with Publication(Path(graph_path).parent) as alone:
            export(spec, loaded, layer, labels, graph_path, labels_path, saved_model_dir,
                   final_tensor_name, alone)
        return
    graph_def = classifier_graph(spec, loaded, layer, final_tensor_name)
    publication.write(Path(graph_path), graph_def.SerializeToString(deterministic=True))  # attrs in order
    publication.write(Path(labels_path), labels_bytes(labels))
    if saved_model_dir:
        write_saved_model(graph_def, publication.new_folder(Path(saved_model_dir)), final_tensor_name)

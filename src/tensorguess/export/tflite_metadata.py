"""TFLite model metadata: the "TFLITE_METADATA" FlatBuffer that MediaPipe Tasks, the Android and web
task libraries read to know what an image model takes and returns.

Written with the `flatbuffers` package (already a TensorFlow dependency) straight from the
published schema, because tflite-support (its metadata writers) needs a protobuf that TF 2.21's
clashes with, and MediaPipe's writers need mediapipe, whose pins clash with ours too. The schema is
tflite-support's tensorflow_lite_support/metadata/metadata_schema.fbs (MediaPipe ships the same
file), version 1.5.0; every field written here exists since 1.0.0, so the file says
min_parser_version 1.0.0, as the schema asks (the largest version among the fields used), and any
reader since 2020 understands all of it. Field slots below are the fields' order in that schema (a
union takes two: its type, then its value); the schema's file identifier is "M001".

What is written, per the schema's comments and what MediaPipe's ImageClassifier checks:
- the model's name, description and version, and min_parser_version;
- the input: ImageProperties (RGB, default size S x S) and NormalizationOptions mean/std such that
  (pixel - mean) / std is what the network takes ([0,1]: mean 0, std 255); a uint8 input takes
  the pixels as they are, and the options say so to a reader that normalises them first;
- each output: FeatureProperties, Stats (the range of its values), and its labels as a
  TENSOR_AXIS_LABELS associated file (one label a line, in the output's order), which the task
  libraries read from the zip archive appended to the model (tflite.with_labels packs it there).
"""

from __future__ import annotations

from dataclasses import dataclass, field

METADATA_NAME = "TFLITE_METADATA"  # the name of the model's metadata entry readers look for
FILE_IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"

# Enum values of the schema.
TENSOR_AXIS_LABELS = 2  # AssociatedFileType
RGB = 1  # ColorSpaceType
FEATURE_PROPERTIES, IMAGE_PROPERTIES = 1, 2  # ContentProperties union
NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions union


@dataclass
class Output:
    """One output tensor: what it is, the range of its values, and its labels' associated file."""

    name: str
    description: str
    value_range: tuple[float, float] | None = None
    labels_file: str | None = None  # the file's name in the zip appended to the model
    labels_description: str = "The label of each entry of the output, one a line, in its order."


@dataclass
class ImageModel:
    """An image model's metadata: an RGB input of size x size, normalised by (pixel - mean) / std."""

    name: str
    description: str
    version: str
    size: int
    mean: float = 0.0
    std: float = 255.0
    input_description: str = "RGB photo resized to the input's size"
    outputs: list[Output] = field(default_factory=list)
    author: str = "tensor-guess"


def metadata_bytes(model: ImageModel) -> bytes:
    """The ModelMetadata FlatBuffer of `model` (file identifier M001)."""
    import flatbuffers

    builder = flatbuffers.Builder(1024)

    def text(value: str):
        return builder.CreateString(value)

    def vector_of_tables(offsets: list[int]) -> int:
        builder.StartVector(4, len(offsets), 4)
        for offset in reversed(offsets):
            builder.PrependUOffsetTRelative(offset)
        return builder.EndVector()

    def vector_of_floats(values: list[float]) -> int:
        builder.StartVector(4, len(values), 4)
        for value in reversed(values):
            builder.PrependFloat32(value)
        return builder.EndVector()

    def associated_file(name: str, description: str) -> int:
        name_at, description_at = text(name), text(description)
        builder.StartObject(5)  # name, description, type, locale, version
        builder.PrependUOffsetTRelativeSlot(0, name_at, 0)
        builder.PrependUOffsetTRelativeSlot(1, description_at, 0)
        builder.PrependInt8Slot(2, TENSOR_AXIS_LABELS, 0)
        return builder.EndObject()

    def content(kind: int, properties: int) -> int:
        builder.StartObject(3)  # content_properties_type, content_properties, range
        builder.PrependUint8Slot(0, kind, 0)
        builder.PrependUOffsetTRelativeSlot(1, properties, 0)
        return builder.EndObject()

    def stats(low: float, high: float) -> int:
        high_at, low_at = vector_of_floats([high]), vector_of_floats([low])
        builder.StartObject(2)  # max, min
        builder.PrependUOffsetTRelativeSlot(0, high_at, 0)
        builder.PrependUOffsetTRelativeSlot(1, low_at, 0)
        return builder.EndObject()

    def tensor(name: str, description: str, content_at: int, units: int | None = None,
               stats_at: int | None = None, files: int | None = None) -> int:
        name_at, description_at = text(name), text(description)
        builder.StartObject(7)  # name, description, dimension_names, content, process_units, stats, files
        builder.PrependUOffsetTRelativeSlot(0, name_at, 0)
        builder.PrependUOffsetTRelativeSlot(1, description_at, 0)
        builder.PrependUOffsetTRelativeSlot(3, content_at, 0)
        if units is not None:
            builder.PrependUOffsetTRelativeSlot(4, units, 0)
        if stats_at is not None:
            builder.PrependUOffsetTRelativeSlot(5, stats_at, 0)
        if files is not None:
            builder.PrependUOffsetTRelativeSlot(6, files, 0)
        return builder.EndObject()

    # The input: an RGB image of size x size, its normalisation, the range the network takes.
    builder.StartObject(2)  # ImageSize: width, height
    builder.PrependUint32Slot(0, model.size, 0)
    builder.PrependUint32Slot(1, model.size, 0)
    image_size = builder.EndObject()
    builder.StartObject(2)  # ImageProperties: color_space, default_size
    builder.PrependInt8Slot(0, RGB, 0)
    builder.PrependUOffsetTRelativeSlot(1, image_size, 0)
    image_properties = builder.EndObject()
    image_content = content(IMAGE_PROPERTIES, image_properties)
    mean_at, std_at = vector_of_floats([model.mean] * 3), vector_of_floats([model.std] * 3)
    builder.StartObject(2)  # NormalizationOptions: mean, std
    builder.PrependUOffsetTRelativeSlot(0, mean_at, 0)
    builder.PrependUOffsetTRelativeSlot(1, std_at, 0)
    normalization = builder.EndObject()
    builder.StartObject(2)  # ProcessUnit: options_type, options
    builder.PrependUint8Slot(0, NORMALIZATION_OPTIONS, 0)
    builder.PrependUOffsetTRelativeSlot(1, normalization, 0)
    unit = builder.EndObject()
    units = vector_of_tables([unit])
    low, high = (0 - model.mean) / model.std, (255 - model.mean) / model.std
    input_at = tensor("image", model.input_description, image_content, units=units,
                      stats_at=stats(low, high))

    outputs = []
    for output in model.outputs:
        builder.StartObject(0)  # FeatureProperties
        feature = builder.EndObject()
        output_content = content(FEATURE_PROPERTIES, feature)
        files = None
        if output.labels_file is not None:
            files = vector_of_tables([associated_file(output.labels_file, output.labels_description)])
        stats_at = stats(*output.value_range) if output.value_range is not None else None
        outputs.append(tensor(output.name, output.description, output_content, stats_at=stats_at,
                              files=files))

    inputs_at, outputs_at = vector_of_tables([input_at]), vector_of_tables(outputs)
    builder.StartObject(10)  # SubGraphMetadata (the fields after the output tensors are left out)
    builder.PrependUOffsetTRelativeSlot(2, inputs_at, 0)
    builder.PrependUOffsetTRelativeSlot(3, outputs_at, 0)
    subgraph = builder.EndObject()
    subgraphs = vector_of_tables([subgraph])
    name_at, description_at, version_at = text(model.name), text(model.description), text(model.version)
    author_at, parser_at = text(model.author), text(MIN_PARSER_VERSION)
    builder.StartObject(8)  # ModelMetadata
    builder.PrependUOffsetTRelativeSlot(0, name_at, 0)
    builder.PrependUOffsetTRelativeSlot(1, description_at, 0)
    builder.PrependUOffsetTRelativeSlot(2, version_at, 0)
    builder.PrependUOffsetTRelativeSlot(3, subgraphs, 0)
    builder.PrependUOffsetTRelativeSlot(4, author_at, 0)
    builder.PrependUOffsetTRelativeSlot(7, parser_at, 0)
    builder.Finish(builder.EndObject(), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def with_metadata(model: bytes, metadata: bytes) -> bytes:
    """The .tflite `model` (a bare FlatBuffer, nothing appended yet) with `metadata` as its
    TFLITE_METADATA entry: a buffer of the model that the entry names (one replaced if there was)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    tree = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    entries = [entry for entry in tree.metadata or []
               if (entry.name.decode() if isinstance(entry.name, bytes) else entry.name) != METADATA_NAME]
    buffer = schema.BufferT()
    buffer.data = list(metadata)
    tree.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(tree.buffers) - 1
    tree.metadata = [*entries, entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(tree))


def read_metadata(model: bytes) -> bytes | None:
    """The TFLITE_METADATA FlatBuffer inside the .tflite `model`, or None."""
    from ai_edge_litert import schema_py_generated as schema

    root = schema.Model.GetRootAs(model, 0)
    for i in range(root.MetadataLength()):
        entry = root.Metadata(i)
        if entry.Name() == METADATA_NAME.encode():
            return root.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    return None

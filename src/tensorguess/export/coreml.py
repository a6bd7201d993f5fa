"""Core ML of the frozen classifier (coremltools): an image input, a classifier carrying the labels.

Converted from the same cut of `retrained_graph.pb` as the TFLite models (image batch ->
calibrated softmax). The input `image` is an RGB image of the module's size that Core ML
scales by 1/255 (bias 0) into the [0,1] the network takes; the outputs are `classLabel` (the
best label) and `classLabelProbs` (label -> score), the names Create ML's image classifiers
use, so Xcode shows the model's inputs, outputs and labels as for any image classifier.
An ML program (`.mlpackage`, iOS 15 / macOS 12 and later), computing in float16 as Core ML
does by default. Running it needs macOS; on Linux the spec is read back and checked.
"""

from __future__ import annotations

import os
from pathlib import Path

from tensorguess.errors import TensorGuessError
from tensorguess.export.tflite import classifier_function
from tensorguess.model_dir import FINAL_TENSOR, IMAGE_BATCH

INPUT = "image"
LABEL_OUTPUT = "classLabel"
SCORES_OUTPUT = "classLabelProbs"
SCALE = 1 / 255


class CoreMLCheckError(TensorGuessError):
    """The written .mlpackage does not read back as it should; the message says what differs."""


def write_mlpackage(graph_def, labels: list[str], size: int, path: Path,
                    final_tensor_name: str = FINAL_TENSOR) -> None:
    """Convert and write the package `path` (a folder that must not exist yet: export builds it in a
    scratch folder, and publish.py swaps it in for the old one, whose place it never touches)."""
    import coremltools as ct

    function, _keep = classifier_function(graph_def, final_tensor_name)
    model = ct.convert(
        [function], source="tensorflow", convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS15,
        inputs=[ct.ImageType(name=IMAGE_BATCH, shape=(1, size, size, 3), scale=SCALE,
                             bias=[0.0, 0.0, 0.0], color_layout=ct.colorlayout.RGB)],
        classifier_config=ct.ClassifierConfig(list(labels)),
    )
    spec = model.get_spec()
    # The converter names the input after the graph's placeholder and the scores after the
    # label output: renamed to the names an app expects.
    ct.utils.rename_feature(spec, IMAGE_BATCH, INPUT)
    ct.utils.rename_feature(spec, spec.description.predictedProbabilitiesName, SCORES_OUTPUT)
    model = ct.models.MLModel(spec, weights_dir=model.weights_dir, skip_model_load=True)
    model.short_description = "tensor-guess image classifier"
    model.input_description[INPUT] = f"RGB photo resized to {size}x{size} (see the README)"
    model.output_description[LABEL_OUTPUT] = "the most likely label"
    model.output_description[SCORES_OUTPUT] = "the calibrated score of every label"
    if os.path.lexists(path):  # coremltools would rmtree it (through a link, even)
        raise FileExistsError(f"{path} exists: write_mlpackage writes only new packages")
    model.save(str(path))


def read_spec(path: Path) -> dict:
    """What the written model declares: input name, size, colour space, scale and bias; labels;
    output names. Read from the spec alone (no Core ML runtime needed)."""
    import coremltools as ct

    spec = ct.utils.load_spec(str(path))
    image = spec.description.input[0]
    program = spec.mlProgram.functions["main"]
    operations = list(program.block_specializations[program.opset].operations)
    consts = {op.outputs[0].name: op.attributes["val"].immediateValue.tensor for op in operations
              if op.type == "const"}

    def constant(op, name):
        argument = op.inputs[name].arguments[0]
        tensor = consts.get(argument.name)
        values = list(tensor.floats.values) if tensor is not None else []
        return values[0] if len(values) == 1 else values

    # The preprocessing the converter put in the program: x * scale (+ bias, left out when 0).
    scale, bias, current = 1.0, 0.0, image.name
    for op in operations:
        uses = [argument.name for argument in op.inputs["x"].arguments] if "x" in op.inputs else []
        if current in uses and op.type in ("mul", "add"):
            if op.type == "mul":
                scale = constant(op, "y")
            else:
                bias = constant(op, "y")
            current = op.outputs[0].name
    classifier_labels = _class_labels(operations)
    return {
        "input": image.name,
        "width": image.type.imageType.width,
        "height": image.type.imageType.height,
        "color_space": ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(
            image.type.imageType.colorSpace),
        "scale": float(scale),
        "bias": bias,
        "labels": classifier_labels,
        "outputs": [output.name for output in spec.description.output],
        "predicted_feature": spec.description.predictedFeatureName,
        "predicted_probabilities": spec.description.predictedProbabilitiesName,
    }


def _class_labels(operations) -> list[str]:
    """The labels of the program's `classify` op (an ML program keeps them there), in order."""
    for op in operations:
        if op.type != "classify":
            continue
        for argument in op.inputs["classes"].arguments:
            if argument.HasField("value"):
                return [item.immediateValue.tensor.strings.values[0]
                        for item in argument.value.immediateValue.list.values]
    return []


def check(path: Path, labels: list[str], size: int) -> dict:
    """Read `path` back and raise CoreMLCheckError unless it is what write_mlpackage meant."""
    found = read_spec(path)
    wanted = {"input": INPUT, "width": size, "height": size, "color_space": "RGB",
              "labels": list(labels), "outputs": [LABEL_OUTPUT, SCORES_OUTPUT],
              "predicted_feature": LABEL_OUTPUT, "predicted_probabilities": SCORES_OUTPUT}
    wrong = [f"{key} is {found[key]!r}, not {value!r}" for key, value in wanted.items()
             if found[key] != value]
    if abs(found["scale"] - SCALE) > 1e-7:
        wrong.append(f"scale is {found['scale']}, not 1/255")
    if found["bias"] not in (0.0, [0.0, 0.0, 0.0]):
        wrong.append(f"bias is {found['bias']}, not 0")
    if wrong:
        raise CoreMLCheckError(f"{path} does not read back as written: {'; '.join(wrong)}")
    return found

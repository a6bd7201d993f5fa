"""Core ML of a points model (coremltools): an image input, the points, their confidence and the box as
outputs, the point names and the skeleton in the model's metadata.

The same network as the TFLite files (export/points_lite.py: the whole-photo stage on the photo
squashed to S x S), with the input an RGB image of that size that Core ML scales by 1/255, as the
classes' package (export/coreml.py). Its outputs are multi-arrays: `points` [1,K,2] as
(x / width, y / height) of the photo, `confidence` [1,K], `box` [1,4] ([0, 0, 1, 1]: the whole
photo). The metadata's `point_names` and `skeleton` are JSON (the names in the points' order, the
bones as 0-based index pairs), where Xcode shows them beside the description. Running it needs
macOS; on Linux the spec is read back and checked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tensorguess.export.coreml import INPUT, SCALE, CoreMLCheckError
from tensorguess.export.points_lite import OUTPUTS, stage_function

NAMES_KEY, SKELETON_KEY = "point_names", "skeleton"


def write_points_mlpackage(graph_def, names: list[str], skeleton: list[list[int]], size: int,
                           path: Path, stage: str = "whole") -> None:
    """Convert `stage` (points_lite.STAGES: a two-stage model's locate and points stages are a package
    each) and write the package `path` (a folder that must not exist yet, as coreml's)."""
    import coremltools as ct

    function, _keep = stage_function(graph_def, batch=1, stage=stage)
    source = function.inputs[0].name.split(":")[0]
    model = ct.convert([function], source="tensorflow", convert_to="mlprogram",
                       minimum_deployment_target=ct.target.iOS15,
                       inputs=[ct.ImageType(name=source, shape=(1, size, size, 3), scale=SCALE,
                                            bias=[0.0, 0.0, 0.0], color_layout=ct.colorlayout.RGB)])
    spec = model.get_spec()
    ct.utils.rename_feature(spec, source, INPUT)
    # The converter names the outputs after the function's tensors (Identity, Identity_1, ...):
    # renamed to the keys the function returns them under.
    keys = {tensor.name.split(":")[0]: key for key, tensor in function.structured_outputs.items()}
    for output in list(spec.description.output):
        ct.utils.rename_feature(spec, output.name, keys[output.name])
    model = ct.models.MLModel(spec, weights_dir=model.weights_dir, skip_model_load=True)
    model.short_description = f"tensor-guess points model: {len(names)} points on a {size}x{size} photo"
    whole = stage == "whole"
    model.input_description[INPUT] = (f"RGB photo squashed to {size}x{size}" if whole else
                                      f"RGB crop of the photo (crop_box of the locate package's points, "
                                      f"see points_crop.json) resampled to {size}x{size}")
    meaning = "(x / width, y / height) of the photo" if whole else "(x, y) / side of the crop"
    model.output_description["points"] = f"each point's {meaning}, in point_names' order"
    model.output_description["confidence"] = "each point's heatmap peak (NaN for a direct head)"
    model.output_description["box"] = "x0, y0, x1, y1 of the part of the input read: all of it"
    model.user_defined_metadata[NAMES_KEY] = json.dumps(list(names))
    model.user_defined_metadata[SKELETON_KEY] = json.dumps([list(map(int, bone)) for bone in skeleton])
    if os.path.lexists(path):  # coremltools would rmtree it (through a link, even)
        raise FileExistsError(f"{path} exists: write_points_mlpackage writes only new packages")
    model.save(str(path))


def check(path: Path, names: list[str], size: int) -> dict:
    """Read `path` back (the spec alone) and raise CoreMLCheckError unless it is what was meant."""
    import coremltools as ct

    spec = ct.utils.load_spec(str(path))
    image = spec.description.input[0]
    found = {"input": image.name, "width": image.type.imageType.width, "height": image.type.imageType.height,
             "outputs": sorted(output.name for output in spec.description.output),
             "names": json.loads(spec.description.metadata.userDefined.get(NAMES_KEY, "null"))}
    wanted = {"input": INPUT, "width": size, "height": size, "outputs": sorted(OUTPUTS), "names": list(names)}
    wrong = [f"{key} is {found[key]!r}, not {value!r}" for key, value in wanted.items()
             if found[key] != value]
    if wrong:
        raise CoreMLCheckError(f"{path} does not read back as written: {'; '.join(wrong)}")
    return found

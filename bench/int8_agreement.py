"""int8 TFLite against the .pb on a test split (sign-digits), one int8 recipe after another.

    python bench/int8_agreement.py [--out bench/results/int8_agreement.json] [--seed 1 | --like-test]
        [--module SAVEDMODEL] [--photos DIR] [--work /tmp/tg-int8-agreement] [--recipes NAME,...]
        [--debug]

Trains once (`python -m tensorguess train`, 1000 steps, the seed given) into
WORK/PHOTOS-MODULE-seed-N (sign-digits and MobileNet v1 unless --photos and --module say
otherwise), or as tests/python/test_export.py trains (--like-test) into WORK/test-head, kept
there for later runs. Then, in one process: the test split (found again from train_log.json,
as export.sh finds it) is decoded once by the inference pipeline and run through the .pb
(scores and bottleneck features); each recipe converts the int8 model, and is scored on the
same pixels: top-1 agreement with the .pb, test accuracy, the cosine of its bottleneck
features to the .pb's (read from the interpreter with every tensor kept), and the network's
speed at batch 32 against the .pb's (the better of 2 rounds each, alternated, same pixels;
the whole guessDir is timed by bench/deploy.py). Calibration photos come from the training
split only. --debug also runs TFLite's QuantizationDebugger on the all-int8 recipe over 64
validation photos and prints the layers with the largest error relative to their scale.
The recipe "export" is what export.sh writes (tflite.int8_model's defaults).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import common

HEAD_OPS = ["FULLY_CONNECTED", "MUL", "SOFTMAX"]  # the trained head after the bottleneck
FIRST = ["mul", "sub", "Relu6", "Relu6_1", "Relu6_2"]  # input scaling, conv 0, depthwise 1, pointwise 1
RECIPES = {
    # name: (calibration photos or None for all training photos, snap weights to the module's
    # grid, layers or TFLite ops (upper case) kept in float, leading convolutions kept in float,
    # and bias correction where a fifth item says True)
    "300": (300, False, [], 0),
    "1000": (1000, False, [], 0),
    "all": (None, False, [], 0),
    "300 + float head": (300, False, HEAD_OPS, 0),
    "300 + float input": (300, False, ["mul", "sub"], 0),
    "300 + float first": (300, False, FIRST, 0),
    "300 + grid": (300, True, [], 0),
    "all + grid": (None, True, [], 0),
    "300 + grid + float head": (300, True, HEAD_OPS, 0),
    "300 + grid + float input": (300, True, ["mul", "sub"], 0),
    "300 + grid + float conv0": (300, True, ["mul", "sub", "Relu6"], 0),
    "300 + grid + float first": (300, True, FIRST, 0),
    "grid + first 3 float": (300, True, [], 3),  # the recipe before bias correction
    "grid + first 5 float": (300, True, [], 5),  # depthwise 2 and pointwise 2 (56x56) too
    "bias": (300, False, [], 0, True),
    "grid + bias": (300, True, [], 0, True),
    "first 3 float + bias": (300, False, [], 3, True),
    "export": (300, True, [], 3, True),  # tflite.int8_model's defaults: grid, first 3 float, bias
    "export + float head": (300, True, HEAD_OPS, 3, True),  # scores not in steps of 1/256
}


def trained(work: Path, seed: int, like_test: bool = False, module: Path = common.MODULE,
            photos: Path = common.SIGN_DIGITS) -> Path:
    folder = work / ("test-head" if like_test else f"{photos.name}-{module.parent.name}-seed-{seed}")
    if (folder / "retrained_graph.pb").exists() and (folder / "train_log.json").exists():
        return folder
    if like_test:  # tests/python/test_export.py's own training (conftest.train_config)
        code = ("import sys; from pathlib import Path; from conftest import SIGN_DIGITS, train_config; "
                "from tensorguess.retrain import retrain; "
                "retrain(train_config(Path(sys.argv[1]), SIGN_DIGITS), say=print, warn=print)")
        env = {**os.environ, "PYTHONPATH": f"{common.REPO / 'src'}:{common.REPO / 'tests' / 'python'}"}
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-c", code, str(folder)], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        return folder
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for source in sorted(photos.iterdir()):
        link = folder / "data" / source.name
        if not link.exists():
            link.symlink_to(source, target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(common.REPO / "src")}
    subprocess.run([sys.executable, "-m", "tensorguess", "train", str(folder), "--tfhub_module",
                    str(module), "--how_many_training_steps", "1000", "--random_seed",
                    str(seed)], check=True, env=env, stdout=subprocess.DEVNULL)
    return folder


def decoded(paths: list[Path], size: int) -> np.ndarray:
    from tensorguess.features.pipeline import decoded_batches

    batches = [batch.pixels for batch in decoded_batches(paths, size, 32)]
    if sum(len(batch) for batch in batches) != len(paths):
        raise SystemExit("an unreadable photo in the split: the comparison needs them all")
    return np.concatenate(batches)


class FrozenGraph:
    """The .pb's network from image_batch:0: scores and bottleneck features."""

    def __init__(self, graph_def):
        import tensorflow as tf

        from tensorguess.export.frozen import BOTTLENECK, IMAGE_BATCH

        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.compat.v1.import_graph_def(graph_def, name="")
        self.session = tf.compat.v1.Session(graph=self.graph)
        self.input = self.graph.get_tensor_by_name(f"{IMAGE_BATCH}:0")
        self.outputs = [self.graph.get_tensor_by_name("final_result:0"),
                        self.graph.get_tensor_by_name(f"{BOTTLENECK}:0")]

    def run(self, pixels):
        scores, features = zip(*(self.session.run(self.outputs, {self.input: pixels[i:i + 32]})
                                 for i in range(0, len(pixels), 32)), strict=True)
        return np.concatenate(scores), np.concatenate(features).reshape(len(pixels), -1)


def lite_features(model: bytes, pixels: np.ndarray, width: int) -> np.ndarray:
    """The int8 model's bottleneck, dequantized: the last [N, width] tensor before the head."""
    from tensorguess.export.litert import interpreter_class, quantized

    interpreter = interpreter_class()(model_content=model, experimental_preserve_all_tensors=True,
                                      num_threads=os.cpu_count())
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], [32, *pixels.shape[1:]])
    interpreter.allocate_tensors()
    candidates = [t for t in interpreter.get_tensor_details()
                  if list(t["shape"][1:]) in ([width], [1, 1, width]) and t["dtype"] != np.float32
                  or list(t["shape"][1:]) in ([width], [1, 1, width])]
    feature = candidates[-1]  # the last one of that width: the pooled, reshaped bottleneck
    rows = []
    for i in range(0, len(pixels), 32):
        chunk = pixels[i:i + 32]
        padded = np.concatenate([chunk, np.zeros((32 - len(chunk), *chunk.shape[1:]), chunk.dtype)])
        interpreter.set_tensor(detail["index"], quantized(padded, detail))
        interpreter.invoke()
        value = interpreter.get_tensor(feature["index"]).reshape(32, width)[:len(chunk)]
        if feature["dtype"] != np.float32:
            scale, zero = feature["quantization"]
            value = (value.astype(np.float32) - zero) * scale
        rows.append(value)
    return np.concatenate(rows)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def best_seconds(run, pixels, rounds: int = 2) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for i in range(0, len(pixels), 32):
            run(pixels[i:i + 32])
        times.append(time.perf_counter() - started)
    return min(times)


def float_part(names: list[str], convolutions: int):
    """A recipe's tflite.int8_model hook: TFLite ops (upper case names) and layers (the last part
    of a layer's first name: 'Relu6_26', 'mul') kept in float, after the first `convolutions`
    convolutions; None when all is int8."""
    from tensorguess.export import tflite

    ops = [name for name in names if name.isupper()]
    layers = [name for name in names if not name.isupper()]
    if not (ops or layers or convolutions):
        return None

    def part(calibrated: bytes) -> tuple[list[str], list[str]]:
        from ai_edge_litert.tools import flatbuffer_utils

        graph = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated)).subgraphs[0]
        named = [tflite.tensor_name(graph, i) for i in range(len(graph.tensors))]
        chosen = [name for name in named if name.split(";")[0].rsplit("/", 1)[-1] in layers]
        return ops, list(dict.fromkeys(tflite.leading_nodes(calibrated, convolutions) + chosen))

    return part


def convert(graph_def, recipe: tuple, photos, size: int) -> tuple[bytes, dict]:
    from tensorguess.export import bias_correction, formats, tflite, weight_grid

    count, snap, float_ops, float_convolutions, *more = recipe
    paths = formats.calibration_paths(photos, count or len(photos.parts["training"]))
    images = formats.calibration_images(paths, size)
    model = tflite.int8_model(graph_def, images, snap=False, correct_bias=False,
                              float_part=float_part(float_ops, float_convolutions))
    facts = {"calibration_photos": len(paths),
             "classes_calibrated": len({p.parent.name for p in paths})}
    if snap:
        model, facts["snapped"] = weight_grid.snap(model, graph_def)
    if more and more[0]:  # the order tflite.int8_model runs them in
        started = time.perf_counter()
        model, facts["bias_correction"] = bias_correction.correct(model, tflite.float_model(graph_def),
                                                                  images())
        facts["bias_correction"]["seconds"] = round(time.perf_counter() - started, 1)
    return model, facts


def debug(graph_def, photos, size: int) -> list[dict]:
    """QuantizationDebugger's per-layer statistics of the plain recipe (all int8), worst first."""
    import tensorflow as tf

    from tensorguess.export import formats, tflite

    function, keep = tflite.classifier_function(graph_def)
    converter = tflite.int8_converter(function, keep, formats.calibration_images(
        formats.calibration_paths(photos), size))
    validation = [p for p, _ in photos.parts.get("validation", [])][:64]
    images = formats.calibration_images(validation, size)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter,
        debug_dataset=lambda: ([np.clip(image[np.newaxis], 0, 1).astype(np.float32)] for image in images()))
    debugger.run()
    path = Path("/tmp/int8_layer_stats.csv")
    with path.open("w") as handle:
        debugger.layer_statistics_dump(handle)
    import csv

    rows = list(csv.DictReader(path.open()))
    for row in rows:
        row["rmse/scale"] = float(row["mean_squared_error"]) ** 0.5 / float(row["scale"])
    return sorted(rows, key=lambda row: -row["rmse/scale"])


def main() -> None:
    args = common.parser(__doc__.splitlines()[0])
    args.add_argument("--seed", type=int, default=1)
    args.add_argument("--module", type=Path, default=common.MODULE, help="a SavedModel feature vector")
    args.add_argument("--photos", type=Path, default=common.SIGN_DIGITS, help="class folders of photos")
    args.add_argument("--like-test", action="store_true",
                      help="train as tests/python/test_export.py does instead (--seed is then unused)")
    args.add_argument("--work", type=Path, default=Path("/tmp/tg-int8-agreement"))
    args.add_argument("--recipes", default=",".join(RECIPES))
    args.add_argument("--debug", action="store_true")
    options = args.parse_args()
    common.quiet_tensorflow()
    import tensorflow as tf

    from tensorguess.export import formats
    from tensorguess.model_dir import TrainLog
    from tensorguess.score.lite import LiteClassifier

    folder = trained(options.work, options.seed, options.like_test, options.module, options.photos)
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((folder / "retrained_graph.pb").read_bytes())
    size = 224
    photos = formats.split_photos(TrainLog.read(folder / "train_log.json"),
                                  folder / "train_log.json", print)
    test = photos.parts["testing"]
    pixels = decoded([p for p, _ in test], size)
    truth = np.array([t for _, t in test])
    pb = FrozenGraph(graph_def)
    pb_scores, pb_features = pb.run(pixels)
    pb_labels = pb_scores.argmax(1)
    results = {"machine": common.machine(), "seed": "like the test" if options.like_test else options.seed,
               "module": str(options.module), "photos": str(options.photos),
               "test_photos": len(test),
               "pb_accuracy": float((pb_labels == truth).mean()), "recipes": {}}
    print(f"{len(test)} test photos; pb accuracy {results['pb_accuracy']:.1%}", flush=True)
    if options.debug:
        worst = debug(graph_def, photos, size)
        results["debugger_worst"] = [{k: row[k] for k in ("op_name", "tensor_name", "scale",
                                                          "rmse/scale")} for row in worst[:12]]
        for row in worst[:12]:
            parts = [part.rsplit("/", 1)[-1] for part in row["tensor_name"].split(";")]
            print(f"  {row['op_name']:<18} {' '.join(parts[:3]):<40} scale {float(row['scale']):.4g}"
                  f" rmse/scale {row['rmse/scale']:.3f}", flush=True)
    print(f"{'recipe':<24} {'agree':>7} {'acc':>7} {'cos mean':>9} {'cos min':>8} {'x pb':>6} {'fhead':>6}")
    model_file = options.work / "int8.tflite"
    for name in options.recipes.split(","):
        try:
            model, facts = convert(graph_def, RECIPES[name], photos, size)
        except ValueError as error:  # a recipe the uint8 input cannot be kept with
            results["recipes"][name] = {"error": str(error)}
            print(f"{name:<24} not converted: {error}", flush=True)
            continue
        model_file.write_bytes(model)
        classifier = LiteClassifier(model_file, folder / "retrained_labels.txt")
        scores = np.concatenate([classifier.run(pixels[i:i + 32]) for i in range(0, len(pixels), 32)])
        labels = scores.argmax(1)
        features = lite_features(model, pixels, pb_features.shape[1])
        cos = cosines(features, pb_features)
        # The .pb's own head on the int8 features: how much of the change is the module's.
        float_head = pb.session.run(pb.outputs[0], {pb.outputs[1]: features.reshape(
            (-1, *pb.outputs[1].shape[1:]))}).argmax(1)
        top2 = np.sort(scores, 1)[:, -2:]
        pb_s = lite_s = 0.0
        for _ in range(2):  # alternated, so that a change of load falls on both
            pb_s = min(pb_s or 1e9, best_seconds(lambda x: pb.session.run(pb.outputs[0], {pb.input: x}),
                                                 pixels, 1))
            lite_s = min(lite_s or 1e9, best_seconds(classifier.run, pixels, 1))
        row = {**facts, "agreement": float((labels == pb_labels).mean()),
               "disagreeing": int((labels != pb_labels).sum()),
               "accuracy": float((labels == truth).mean()), "cosine_mean": float(cos.mean()),
               "cosine_min": float(cos.min()), "network_speedup": pb_s / lite_s,
               "float_head_agreement": float((float_head == pb_labels).mean()),
               "tied_top2": int((top2[:, 0] == top2[:, 1]).sum()),
               "pb_margin_of_disagreeing": sorted(
                   np.round(np.diff(np.sort(pb_scores, 1)[:, -2:], 1)[labels != pb_labels, 0], 3).tolist()),
               "bytes": len(model)}
        results["recipes"][name] = row
        print(f"{name:<24} {row['agreement']:>7.1%} {row['accuracy']:>7.1%} {row['cosine_mean']:>9.4f}"
              f" {row['cosine_min']:>8.4f} {row['network_speedup']:>6.2f}"
              f" {row['float_head_agreement']:>6.1%}  ties {row['tied_top2']} pb margins "
              f"{row['pb_margin_of_disagreeing']} {json.dumps(facts)}", flush=True)
    if options.out:
        options.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

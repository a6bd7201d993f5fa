"""A points model's exported files against its .pb: how far int8 moves the points, and what it saves.

    python bench/points_int8.py DIR [--out bench/results/points_int8.json] [--rounds 3]

DIR is a points model that export.sh has written (retrained_graph.tflite and _int8.tflite). On
every photo of its test split (found again from train_log.json: never trained on), each file runs
in LiteRT on the photo squashed as guess squashes it; baseline: the .pb's own network (the same
cut, in TensorFlow), in the same process. For each file: each point's distance to the baseline's
as a share of the box side (the photo's longer side: the whole-photo stage), mean, 95th
percentile, largest, and the share within 1%; also each file's bytes and ms per photo at batch 1
(best of --rounds, the ways alternating).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import common


def main() -> None:
    parse = common.parser(__doc__)
    parse.add_argument("dir", type=Path)
    parse.add_argument("--rounds", type=int, default=3)
    args = parse.parse_args()
    common.quiet_tensorflow()

    import tensorflow as tf

    from tensorguess.data.images import read_image
    from tensorguess.deploy_points import split_photos
    from tensorguess.export import points_lite
    from tensorguess.export.formats import FILES
    from tensorguess.export.litert import interpreter_class, quantized
    from tensorguess.features.modules import resize_image
    from tensorguess.model_dir import GRAPH, TRAIN_LOG, TrainLog

    results = {"machine": common.machine()}
    folder = args.dir.resolve()
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((folder / GRAPH).read_bytes())
    size = points_lite.stage_size(graph_def, folder / GRAPH)
    photos = split_photos(TrainLog.read(folder / TRAIN_LOG), folder / TRAIN_LOG, print)["testing"]
    images = [read_image(path) for path in photos]
    inputs = [resize_image(image, size).numpy()[None] for image in images]
    function, _keep = points_lite.stage_function(graph_def, batch=1)

    runners = {}
    for name in ("tflite", "tflite-int8"):
        runner = interpreter_class()(model_path=str(folder / FILES[name])).get_signature_runner()
        runners[name] = (runner, runner.get_input_details()["image"])

    def run_pb(_round):
        return [function(tf.constant(x))["points"].numpy()[0] for x in inputs]

    def run_lite(name):
        runner, detail = runners[name]
        return lambda _round: [runner(image=quantized(x, detail))["points"][0] for x in inputs]

    ways = {"pb": run_pb, "tflite": run_lite("tflite"), "tflite-int8": run_lite("tflite-int8")}
    rounds = common.alternate(ways, args.rounds)
    wall, cpu = rounds.best()
    reference = rounds.results["pb"]
    results.update({"dir": str(folder), "stage_size": size, "test_photos": len(photos), "formats": {}})
    for name in ways:
        shares = []
        for image, points, expected in zip(images, rounds.results[name], reference, strict=True):
            height, width = image.shape[:2]
            moved = (points - expected) * [width, height] / max(width, height)
            shares.extend(np.hypot(moved[:, 0], moved[:, 1]).tolist())
        shares = np.array(shares)
        file = folder / (GRAPH if name == "pb" else FILES[name])
        results["formats"][name] = {
            "bytes": file.stat().st_size, "ms_per_photo": round(1000 * wall[name] / len(inputs), 2),
            "cpu_ms_per_photo": round(1000 * cpu[name] / len(inputs), 2),
            "speed_vs_pb": round(wall["pb"] / wall[name], 2),
            "points": int(shares.size), "mean_share": float(shares.mean()),
            "p95_share": float(np.percentile(shares, 95)), "max_share": float(shares.max()),
            "within_1_percent": float((shares <= 0.01).mean())}
    common.finish(results, args.out)


if __name__ == "__main__":
    main()

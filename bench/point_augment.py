"""Point augmentation's speed: point_augment.apply() on a batch against augment.distort() on the same batch.

    python bench/point_augment.py [--size 224] [--batch 32] [--rounds 20]
                                  [--out bench/results/point_augment.json]

The batch: the first --batch photos of ../shared's sign-digits hand keypoints (100x100,
enlarged to --size), their 21 points scaled to it. Each round runs, in turn and on the
same batch (already in memory, as the training loop holds it):
  distort             the baseline, the classes' augment.distort with augment.Recipe() (its defaults)
  apply               point_augment.apply with PointRecipe() (its defaults, flip on, no pairs)
  apply_geometry_only PointRecipe with every colour strength 0 (the noise bank skipped)
a fresh draw per round for each (drawing is included: the loop draws every epoch). Reported:
milliseconds per batch (best and median of the rounds, wall and process CPU) and apply's
ratio to distort.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import replace

import numpy as np

import common

HANDS = common.SHARED / "datasets" / "keypoints" / "sign-digits-hands.json"


def hand_batch(count: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images [N,size,size,3], points [N,21,2], visible [N,21]) of the first `count` hand photos."""
    from tensorguess.features.pipeline import network_batch, prepare_for_network

    coco = json.loads(HANDS.read_text())
    files = {image["id"]: image for image in coco["images"]}
    chosen = coco["annotations"][:count]
    images = network_batch([prepare_for_network(common.SIGN_DIGITS / files[a["image_id"]]["file_name"], size)
                            for a in chosen], size)
    triples = np.array([a["keypoints"] for a in chosen], np.float64).reshape(count, -1, 3)
    scale = np.array([[size / files[a["image_id"]]["width"], size / files[a["image_id"]]["height"]]
                      for a in chosen])
    return images, triples[..., :2] * scale[:, None, :], triples[..., 2] > 0


def main() -> None:
    parse = common.parser(__doc__.splitlines()[0])
    parse.add_argument("--size", type=int, default=224)
    parse.add_argument("--batch", type=int, default=32)
    parse.add_argument("--rounds", type=int, default=20)
    args = parse.parse_args()
    common.quiet_tensorflow()
    from tensorguess.features import augment, point_augment

    images, points, visible = hand_batch(args.batch, args.size)
    recipe = point_augment.PointRecipe()
    geometry = replace(recipe, brightness=0, contrast=0, saturation=0, hue=0, blur=0, noise=0)
    size, count = args.size, args.batch

    def distort(round_: int):
        identity = augment.Recipe().identity()
        keys = [augment.variant_key(identity, f"{n:040x}", round_ + 1) for n in range(count)]
        return augment.distort(images, [augment.parameters(augment.Recipe(), key, size) for key in keys])

    def points_way(chosen):
        def run(round_: int):
            drawn = [point_augment.draw(chosen, round_ * count + n, size) for n in range(count)]
            out, _, _ = point_augment.apply(images, points, visible, drawn)
            return out.numpy()  # the loop feeds the tensor on; .numpy() makes sure the work is done
        return run

    ways = {"distort": distort, "apply": points_way(recipe), "apply_geometry_only": points_way(geometry)}
    machine = common.machine()
    for way in ways.values():  # trace every tf.function and fill the noise bank before timing
        way(0)
    wall: dict[str, list[float]] = {name: [] for name in ways}
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    for round_ in range(1, args.rounds + 1):  # in turn, so that every way sees the same load
        for name, way in ways.items():
            seconds, cpu_seconds, _ = common.measured(way, round_)
            wall[name].append(1000 * seconds)
            cpu[name].append(1000 * cpu_seconds)
    per_batch = {name: {"best_ms": round(min(wall[name]), 1),
                        "median_ms": round(statistics.median(wall[name]), 1),
                        "best_cpu_ms": round(min(cpu[name]), 1)} for name in ways}
    results = {
        "machine": machine,
        "batch": count, "size": size, "rounds": args.rounds,
        "ms_per_batch": per_batch,
        "apply_over_distort_best": round(min(wall["apply"]) / min(wall["distort"]), 2),
        "apply_over_distort_median": round(statistics.median(wall["apply"])
                                           / statistics.median(wall["distort"]), 2),
    }
    common.finish(results, args.out)


if __name__ == "__main__":
    main()

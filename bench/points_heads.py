"""The points heads compared: the spatial trunk's speed, dots on photos, and the hand set.

    python bench/points_heads.py [--out bench/results/points_heads.json] [--size 160] [--epochs 40]

trunk  MobileNet v1's stride-16 map (features/spatial.py): ms per image at batch 32, at 224 and
       at --size, best of --rounds; baseline: the whole module (its pooled vector) at 224, in the
       same process.
dots   300 sign-digit photos at --size with a red dot and, in half of them, a green one, drawn as
       tests/python/test_points_head.py draws them: 200 train, 40 validation (the epoch kept), 60
       held out; each head's held-out mean error as a share of the side.
hands  ../shared/datasets/keypoints/sign-digits-hands.json (21 points, v=0 masked), split 80/20
       at random by signer (runs of IMG numbers across the digit folders, cut where a digit
       repeats or the numbers jump by more than 12), a tenth of the training signers kept for
       validation; the frozen trunk at --size, its maps computed once (no augmentation);
       point_metrics.summary on the 20% in photo pixels, and each head's training seconds.
The direct head runs at two learning rates (its own best is not the heatmap's).
"""

from __future__ import annotations

import json
import re
import sys
import time

import numpy as np

import common

HANDS = common.SHARED / "datasets" / "keypoints" / "sign-digits-hands.json"
RUN_GAP = 12
DOT_RADIUS = 0.03
DOT_COLOURS = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def ms_per_image(function, images, rounds: int) -> float:
    function(images)  # traced and warmed
    best = min(common.timed(lambda: function(images).numpy())[0] for _ in range(rounds))
    return round(1000 * best / len(images), 2)


def trunk_speed(spec, loaded, size: int, rounds: int) -> dict:
    import tensorflow as tf

    from tensorguess.features.modules import feature_function
    from tensorguess.features.spatial import SpatialTrunk

    full = tf.function(feature_function(loaded), input_signature=[tf.TensorSpec([None, 224, 224, 3])])
    result = {"batch": 32, "module_224_ms": ms_per_image(full, tf.random.uniform([32, 224, 224, 3]), rounds)}
    for side in sorted({224, size}, reverse=True):
        trunk = SpatialTrunk(spec, loaded, side)
        result[f"stride16_{side}_ms"] = ms_per_image(trunk, tf.random.uniform([32, side, side, 3]), rounds)
        result[f"stride16_{side}_tap"] = {"node": trunk.tap.node, "shape": list(trunk.shape)}
    result["stride16_224_vs_module"] = round(result["stride16_224_ms"] / result["module_224_ms"], 3)
    return result


def train_and_measure(kind: str, learning_rate: float, training, validation, test_maps, epochs: int,
                      seed: int):
    """(the head's normalised predictions on `test_maps`, its figures)."""
    from tensorguess.head.points_net import PointsHeadSpec, make_head
    from tensorguess.head.points_train import PointsSchedule, best_epoch, predict, train_points_head

    head = make_head(PointsHeadSpec(kind), training.inputs.shape[-1], training.points.shape[1], seed)
    started = time.perf_counter()
    history = train_points_head(head, training, validation,
                                PointsSchedule(epochs=epochs, learning_rate=learning_rate, patience=10,
                                               seed=seed))
    seconds = time.perf_counter() - started
    predicted, _ = predict(head, test_maps)
    kept = best_epoch(history)
    say(f"  {kind} lr {learning_rate:g}: {len(history)} epochs in {seconds:.0f} s, kept epoch {kept.epoch} "
        f"(validation error {kept.validation_error:.4f})")
    return predicted, {"head": kind, "learning_rate": learning_rate, "epochs_run": len(history),
                       "kept_epoch": kept.epoch, "validation_error": round(kept.validation_error, 4),
                       "training_seconds": round(seconds, 1)}


HEADS = (("heatmap", 1e-3), ("direct", 1e-3), ("direct", 1e-2))


def dots(trunk, size: int, epochs: int, seed: int) -> list[dict]:
    from tensorguess.features.pipeline import decoded_batches
    from tensorguess.head.points_train import PointSet

    rng = np.random.default_rng(11)
    paths = common.image_files(*sorted(p for p in common.SIGN_DIGITS.iterdir() if p.is_dir()))
    chosen = [paths[i] for i in rng.choice(len(paths), 300, replace=False)]
    images = np.concatenate([batch.pixels for batch in decoded_batches(chosen, size, 64)])
    points = rng.uniform(0.1, 0.9, (300, 2, 2)).astype(np.float32)
    visible = np.ones((300, 2), bool)
    visible[rng.uniform(size=300) < 0.5, 1] = False
    centres = (np.arange(size) + 0.5) / size
    for n in range(300):
        for k in np.flatnonzero(visible[n]):
            x, y = points[n, k]
            disc = (centres[None, :] - x) ** 2 + (centres[:, None] - y) ** 2 <= DOT_RADIUS ** 2
            images[n][disc] = DOT_COLOURS[k]
    maps = trunk.maps(images)
    parts = [slice(0, 200), slice(200, 240), slice(240, 300)]
    train, validation = (PointSet(maps[p], points[p], visible[p]) for p in parts[:2])
    held_out = parts[2]
    results = []
    say("dots:")
    for kind, rate in HEADS:
        predicted, figures = train_and_measure(kind, rate, train, validation, maps[held_out], epochs, seed)
        errors = np.linalg.norm(predicted - points[held_out], axis=-1)[visible[held_out]]
        figures["held_out_mean_error"] = round(float(errors.mean()), 4)
        results.append(figures)
    centre = np.linalg.norm(0.5 - points[held_out], axis=-1)[visible[held_out]]
    results.append({"head": "the centre, always", "held_out_mean_error": round(float(centre.mean()), 4)})
    return results


def signer_groups(images: list[dict]) -> list[list[int]]:
    """The photos' indices in runs of IMG numbers: a signer's ten digits lie close together."""
    numbered = sorted((int(re.search(r"(\d+)", image["file_name"].split("/")[-1]).group(1)),
                       image["file_name"].split("/")[0], index) for index, image in enumerate(images))
    groups: list[list[int]] = []
    digits: set[str] = set()
    last = None
    for number, digit, index in numbered:
        if last is None or number - last > RUN_GAP or digit in digits:
            groups.append([])
            digits = set()
        groups[-1].append(index)
        digits.add(digit)
        last = number
    return groups


def hands(trunk, size: int, epochs: int, seed: int) -> dict:
    from tensorguess import point_metrics
    from tensorguess.features.pipeline import decoded_batches
    from tensorguess.head.points_train import PointSet

    coco = json.loads(HANDS.read_text())
    names = coco["categories"][0]["keypoints"]
    images = coco["images"]
    by_image = {a["image_id"]: np.array(a["keypoints"], np.float64).reshape(-1, 3)
                for a in coco["annotations"]}
    keypoints = np.stack([by_image[image["id"]] for image in images])
    sides = np.array([[image["width"], image["height"]] for image in images], np.float64)
    pixels, visible = keypoints[:, :, :2], keypoints[:, :, 2] > 0
    normalised = (pixels / sides[:, None, :]).astype(np.float32)

    groups = signer_groups(images)
    order = np.random.default_rng(seed).permutation(len(groups))
    test, train, validation, taken = [], [], [], 0
    for g in order:  # the first fifth of the photos, group by group, is the test split
        (test if taken < 0.2 * len(images) else train).append(g)
        taken += len(groups[g])
    validation, train = train[:len(train) // 10], train[len(train) // 10:]
    rows = {name: np.array(sorted(i for g in part for i in groups[g]))
            for name, part in (("train", train), ("validation", validation), ("test", test))}
    say(f"hands: {len(groups)} signer groups; {', '.join(f'{k} {len(v)}' for k, v in rows.items())} photos")

    started = time.perf_counter()
    paths = [HANDS.parent.parent / "sign-digits" / image["file_name"] for image in images]
    maps = np.concatenate([trunk.maps(batch.pixels) for batch in decoded_batches(paths, size, 64)])
    map_seconds = time.perf_counter() - started
    say(f"  maps of {len(paths)} photos in {map_seconds:.0f} s")

    def part(name):
        r = rows[name]
        return PointSet(maps[r], normalised[r], visible[r])

    test_rows = rows["test"]
    results = {"groups": len(groups), "photos": {k: len(v) for k, v in rows.items()}, "size": size,
               "maps_seconds": round(map_seconds, 1), "heads": []}
    for kind, rate in HEADS:
        predicted, figures = train_and_measure(kind, rate, part("train"), part("validation"), maps[test_rows],
                                               epochs, seed)
        summary = point_metrics.summary(predicted * sides[test_rows][:, None, :], pixels[test_rows],
                                        visible[test_rows], names)
        hardest = point_metrics.hardest(summary["per_point"])
        figures.update({key: summary[key] for key in ("mean_error_px", "mean_error_norm", "pck", "auc",
                                                      "points_counted")})
        figures["hardest"] = {name: summary["per_point"][name]["mean_error_norm"] for name in hardest[:3]}
        figures["easiest"] = {name: summary["per_point"][name]["mean_error_norm"] for name in hardest[-3:]}
        say(f"  {kind}: mean error {summary['mean_error_px']:.2f} px, {summary['mean_error_norm']:.4f} of "
            f"the box side, PCK@0.1 {summary['pck']['0.1']:.3f}")
        results["heads"].append(figures)
    return results


def main() -> None:
    parse = common.parser(__doc__.splitlines()[0])
    parse.add_argument("--size", type=int, default=160, help="the trunk's input side (default 160)")
    parse.add_argument("--epochs", type=int, default=40)
    parse.add_argument("--rounds", type=int, default=3, help="timing rounds of the trunk")
    parse.add_argument("--seed", type=int, default=1)
    parse.add_argument("--skip", default="", help="comma-separated sections not to run: trunk,dots,hands")
    args = parse.parse_args()
    common.quiet_tensorflow()
    from tensorguess.features.modules import resolve
    from tensorguess.features.spatial import SpatialTrunk

    skip = set(filter(None, args.skip.split(",")))
    spec, loaded = resolve(str(common.MODULE))
    results: dict = {"machine": common.machine(), "module": "mobilenet_v1_100_224", "size": args.size,
                     "epochs": args.epochs, "seed": args.seed}
    trunk = SpatialTrunk(spec, loaded, args.size)
    if "trunk" not in skip:
        results["trunk"] = trunk_speed(spec, loaded, args.size, args.rounds)
        say(f"trunk: {results['trunk']}")
    if "dots" not in skip:
        results["dots"] = dots(trunk, args.size, args.epochs, args.seed)
    if "hands" not in skip:
        results["hands"] = hands(trunk, args.size, args.epochs, args.seed)
    common.finish(results, args.out)


if __name__ == "__main__":
    main()

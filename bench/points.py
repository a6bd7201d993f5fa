"""The points kind against the issue's targets, on photos it never saw, beside a ridge baseline.

    python bench/points.py [--out bench/results/points.json] [--sets hands,mouse] [--work DIR]

For each set, the photos are cut into groups a model must not see across (hands: a signer's
run of IMG numbers across the digit folders, cut where a digit repeats or the numbers jump by
more than 12; mouse: blocks of 8 consecutive frame numbers of its one video), and a fifth of the
groups is held out (the groups whose key, a hash of the group's first photo, falls in the
band). The rest is written as a keypoint file and trained on by `train` itself, with its
default settings (MobileNet v1 from ../shared): its own split, locate decision and epochs,
timed. The held-out photos are then scored by the exported graph (score/points.py: what
guess.sh and other programs run) and measured by point_metrics.

Baseline, in the same run: ridge regression of each point's (x / W, y / H) on the module's
pooled features of the whole photo (retrain.py's bottleneck, L2-normalised), the ridge's alpha
chosen on a tenth of the training photos, points not labelled left out of its fit.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

import common

KEYPOINTS = common.SHARED / "datasets" / "keypoints"
HANDS = KEYPOINTS / "sign-digits-hands.json"
MOUSE = KEYPOINTS / "openfield-mouse"
MOUSE_BLOCK = 8
HELD_OUT = 0.2
ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0)
MOBILENET_V1 = common.SHARED / "models" / "mobilenet_v1_100_224" / "feature_vector"


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def hand_groups(images: list[dict]) -> list[list[dict]]:
    """A signer's run of IMG numbers across the digit folders (points_heads.py's rule)."""
    from points_heads import signer_groups

    return [[images[index] for index in group] for group in signer_groups(images)]


def mouse_groups(images: list[dict]) -> list[list[dict]]:
    blocks: dict[int, list[dict]] = {}
    for image in images:
        number = int(re.search(r"(\d+)", image["file_name"]).group(1))
        blocks.setdefault(number // MOUSE_BLOCK, []).append(image)
    return [blocks[key] for key in sorted(blocks)]


def held_out(group: list[dict]) -> bool:
    first = min(image["file_name"] for image in group)
    return int(hashlib.sha1(first.encode()).hexdigest(), 16) % 1000 < HELD_OUT * 1000


def carve(coco: dict, groups: list[list[dict]], folder: Path) -> tuple[Path, Path, int, int]:
    """The training file and the held-out file, COCO both, beside each other in `folder`."""
    test_ids = {image["id"] for group in groups if held_out(group) for image in group}
    files = []
    for name, keep in (("train.json", lambda i: i not in test_ids),
                       ("held_out.json", lambda i: i in test_ids)):
        part = dict(coco, images=[i for i in coco["images"] if keep(i["id"])],
                    annotations=[a for a in coco["annotations"] if keep(a["image_id"])])
        (folder / name).write_text(json.dumps(part))
        files.append(folder / name)
    return files[0], files[1], len(coco["images"]) - len(test_ids), len(test_ids)


def run_set(name: str, coco_path: Path, image_dir: Path, groups_of, work: Path, origin: str | None) -> dict:
    from tensorguess import model_dir, point_metrics
    from tensorguess.config import TrainConfig
    from tensorguess.data.keypoints import read_keypoints
    from tensorguess.score.points import open_points_model
    from tensorguess.train_points import train

    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    coco = json.loads(coco_path.read_text())
    train_file, test_file, trained_on, held = carve(coco, groups_of(coco["images"]), folder)
    say(f"{name}: {trained_on} photos to train on, {held} held out")
    cfg = TrainConfig(image_dir=image_dir, keypoints=train_file, tfhub_module=str(MOBILENET_V1),
                      bottleneck_dir=work / "bottlenecks", report_dir=folder / "report",
                      output_graph=folder / model_dir.GRAPH, output_labels=folder / model_dir.LABELS,
                      saved_model_dir=folder / model_dir.SAVED_MODEL,
                      train_log=folder / model_dir.TRAIN_LOG, keypoint_origin=origin, random_seed=1)
    started = time.perf_counter()
    log = train(cfg, say=say, warn=say)
    seconds = time.perf_counter() - started
    test = read_keypoints(test_file, image_dir, origin=origin, warn=say, say=say)
    scorer = open_points_model(folder)
    scored = scorer.score_files([i.path for i in test.instances])
    by_path = {r.path: r for r in scored if hasattr(r, "points")}
    kept = [i for i in test.instances if i.path in by_path]
    order = [scorer.names.index(n) for n in test.names]  # the file's order of the model's names
    predicted = np.stack([by_path[i.path].points[order] for i in kept])
    truth = np.stack([i.points for i in kept])
    visible = np.stack([i.labelled for i in kept])
    ours = point_metrics.summary(predicted, truth, visible, list(test.names))
    training = read_keypoints(train_file, image_dir, origin=origin, warn=say, say=say)
    ridge = ridge_baseline(training, test, work)
    return {"photos_trained_on": trained_on, "held_out": held, "scored": len(kept),
            "training_seconds": round(seconds, 1), "locate": log["locate"]["on"],
            "internal_test": {k: log["test"][k] for k in ("mean_error_px", "mean_error_norm", "pck", "auc")},
            "ours": brief(ours), "ridge": brief(ridge)}


def brief(found: dict) -> dict:
    from tensorguess.point_metrics import hardest

    return {key: found[key] for key in ("mean_error_px", "mean_error_norm", "pck", "auc")} | {
        "hardest": hardest(found["per_point"])[:3]}


def pooled(keypoints, work: Path) -> np.ndarray:
    from tensorguess.features import bottlenecks, modules

    spec, loaded = modules.resolve(str(MOBILENET_V1))
    cache = bottlenecks.BottleneckCache(work / "bottlenecks", spec, warn=say)
    paths = [i.path for i in keypoints.instances]
    extraction = bottlenecks.extract(paths, spec, loaded, cache, 32, warn=say)
    features = extraction.matrix(paths).astype(np.float64)
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def targets(keypoints) -> tuple[np.ndarray, np.ndarray]:
    """Each photo's points as (x / W, y / H), [N, 2K], and which are labelled, [N, 2K]."""
    sizes = np.array([[i.width, i.height] for i in keypoints.instances], np.float64)
    points = np.stack([i.points for i in keypoints.instances]) / sizes[:, None, :]
    labelled = np.repeat(np.stack([i.labelled for i in keypoints.instances]), 2, axis=1)
    return np.nan_to_num(points.reshape(len(points), -1)), labelled


def fit_ridge(x: np.ndarray, y: np.ndarray, labelled: np.ndarray, alpha: float) -> np.ndarray:
    """One ridge per output over the photos where it is labelled: weights [D + 1, outputs]."""
    x = np.hstack([x, np.ones((len(x), 1))])
    weights = np.zeros((x.shape[1], y.shape[1]))
    penalty = alpha * np.eye(x.shape[1])
    penalty[-1, -1] = 0.0  # the intercept is not shrunk
    for column in range(y.shape[1]):
        rows = labelled[:, column]
        a = x[rows]
        weights[:, column] = np.linalg.solve(a.T @ a + penalty, a.T @ y[rows, column])
    return weights


def ridge_baseline(training, test, work: Path) -> dict:
    from tensorguess import point_metrics

    x, (y, labelled) = pooled(training, work), targets(training)
    rng = np.random.default_rng(0)
    tune = rng.random(len(x)) < 0.1
    errors = {}
    for alpha in ALPHAS:
        w = fit_ridge(x[~tune], y[~tune], labelled[~tune], alpha)
        guess = np.hstack([x[tune], np.ones((tune.sum(), 1))]) @ w
        errors[alpha] = float(np.mean(np.abs(guess - y[tune])[labelled[tune]]))
    alpha = min(errors, key=errors.get)
    weights = fit_ridge(x, y, labelled, alpha)
    test_x = pooled(test, work)
    sizes = np.array([[i.width, i.height] for i in test.instances], np.float64)
    guess = np.hstack([test_x, np.ones((len(test_x), 1))]) @ weights
    guess = guess.reshape(len(test_x), -1, 2) * sizes[:, None]
    truth = np.stack([i.points for i in test.instances])
    visible = np.stack([i.labelled for i in test.instances])
    found = point_metrics.summary(guess, truth, visible, list(test.names))
    found["alpha"] = alpha
    return found


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--sets", default="hands,mouse")
    parser.add_argument("--work", type=Path, default=Path("/tmp/tensorguess-bench-points"))
    options = parser.parse_args()
    common.quiet_tensorflow()
    options.work.mkdir(parents=True, exist_ok=True)
    results = {"benchmark": "points", "machine": common.machine()}
    chosen = options.sets.split(",")
    if "hands" in chosen:
        results["hands"] = run_set("hands", HANDS, common.SHARED / "datasets" / "sign-digits", hand_groups,
                                   options.work, None)
    if "mouse" in chosen:
        # The mouse's keypoints.json holds DeepLabCut's pixel indices (data/keypoints.py's PIXEL_CENTRE).
        results["mouse"] = run_set("mouse", MOUSE / "keypoints.json", MOUSE, mouse_groups, options.work,
                                   "pixel-centre")
    common.finish(results, options.out)


if __name__ == "__main__":
    main()

"""One whole training of a points model: labelled points -> split -> (locate) -> points -> test -> publish.

The points kind's `train` (kinds.py): what retrain.py is for classes. The module is frozen;
each stage is a heatmap head (head/points_net.py) on the module's stride-16 map, trained on
the training photos and distorted copies of them (features/point_augment.py, the points
moved with the pixels), the epoch kept that validation likes best. The test split is read
once, at the end, through the same path the exported model takes (locate, crop, points).
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tensorguess import publish
from tensorguess.checks.point_groups import point_groups
from tensorguess.config import TrainConfig
from tensorguess.data.keypoint_rows import KeypointsError
from tensorguess.data.keypoints import Keypoints, read_keypoints
from tensorguess.data.photo_groups import compile_group_by
from tensorguess.data.point_names import parse_pairs, parse_skeleton
from tensorguess.data.point_split import PointSplit, split_points
from tensorguess.features import bottlenecks, modules
from tensorguess.features.point_augment import PointRecipe, apply, draw, flip_decision, variant_seed
from tensorguess.features.point_geometry import back_to_photo, crop_matrix, draw_crop_jitter
from tensorguess.features.point_inputs import Crops, cut
from tensorguess.features.spatial import SpatialTrunk
from tensorguess.head.points_model import PointsModel, PointsStage, crop_box
from tensorguess.head.points_net import PointsHeadSpec, make_head
from tensorguess.head.points_train import PointsEpoch, PointSet, PointsSchedule, predict, train_points_head
from tensorguess.model_dir import POINT_NAMES, POINTS, POINTS_SKELETON, TrainLog
from tensorguess.report.points_tested import Tested, record

# --locate auto: the locate stage is on when the labelled points' box is, in the median photo,
# at most this share of the photo's longer side (hands 0.76: off; the mouse in its arena 0.18: on).
LOCATE_BELOW = 0.45
VARIANTS = 4  # distorted copies of each training photo, one read an epoch in turn with the photo itself
# Epochs when --point_epochs is not given: EPOCHS, or as many as MIN_STEPS steps of BATCH photos
# take (a set of 70 photos learns in steps, not in passes).
EPOCHS = 60
MIN_STEPS = 2000
BATCH = 32
MIN_SIDE_SHARE = 0.9  # the crop's side: at least this share of the median training box (of the photo)


def _say(line: str) -> None:
    print(line, flush=True)


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def train(cfg: TrainConfig, say: Callable[[str], None] = _say, warn: Callable[[str], None] = _warn) -> dict:
    """Train and publish a points model as `cfg` says; returns what train_log.json holds.

    The keypoint file is read whole before DIR is taken: a malformed one trains and writes nothing.
    """
    cfg.check()
    modules.check(cfg.tfhub_module, cfg.trust_graph)
    keypoints = read_points(cfg, say, warn)
    if cfg.group_by is not None:
        compile_group_by(cfg.group_by)  # a pattern that does not compile: one line, before any work
    folder = Path(cfg.output_graph).parent
    outputs = [Path(path).name for path in (cfg.output_graph, folder / POINT_NAMES, folder / POINTS_SKELETON,
                                             cfg.saved_model_dir, cfg.train_log) if path]
    folder.mkdir(parents=True, exist_ok=True)
    with publish.writing(folder, say, outputs), publish.Publication(folder) as publication:
        return _train(cfg, keypoints, publication, say, warn)


def read_points(cfg: TrainConfig, say, warn) -> Keypoints:
    pairs = parse_pairs(cfg.flip_pairs) if cfg.flip_pairs else None
    bones = parse_skeleton(cfg.skeleton) if cfg.skeleton else None
    keypoints = read_keypoints(cfg.keypoints, cfg.image_dir, pairs=pairs, skeleton=bones,
                               origin=cfg.keypoint_origin, warn=warn, say=say)
    return keypoints  # read_keypoints has said what it read, in one line


def box_share(keypoints: Keypoints) -> float:
    """The median over photos of the labelled points' box side over the photo's longer side."""
    shares = []
    for instance in keypoints.instances:
        chosen = instance.points[instance.labelled]
        if len(chosen):
            shares.append(float((chosen.max(0) - chosen.min(0)).max()) / max(instance.width, instance.height))
    return float(np.median(shares)) if shares else 1.0


def locate_decision(cfg: TrainConfig, keypoints: Keypoints) -> tuple[bool, str]:
    """(whether the locate stage runs, the one line that says why)."""
    share = box_share(keypoints)
    seen = f"the labelled points span {share:.0%} of the photos' longer side (median)"
    if cfg.locate != "auto":
        return cfg.locate == "on", f"Locate: {cfg.locate} (--locate); {seen}"
    if share <= LOCATE_BELOW:
        return True, (f"Locate: on: {seen}, so a first stage finds the object and the points are read "
                      "on its crop (--locate off to read the whole photo)")
    return False, (f"Locate: off: {seen}, so the points are read on the whole photo "
                   "(--locate on to find the object first)")


def input_size(spec, keypoints: Keypoints, locate: bool) -> int:
    """The trunk's input side: the module's, or less where the photos (or crops) are smaller: a
    map of 10x10 at 160 px costs half of 14x14 at 224, and upsampling a 100 px photo adds nothing."""
    if locate:
        return spec.input_size
    longer = np.median([max(i.width, i.height) for i in keypoints.instances])
    return int(min(spec.input_size, max(160, 32 * np.ceil(longer / 32))))


@dataclass
class Stage:
    """A stage trained: its head, its figures, and how its crops were cut."""

    model: PointsStage
    history: list[PointsEpoch]
    seconds: float


def _train(cfg: TrainConfig, keypoints: Keypoints, publication: publish.Publication, say, warn) -> dict:
    from tensorguess.export.points_graph import export_points_model
    from tensorguess.report import points_report

    started = time.perf_counter()
    points_report.check_out_dir(cfg.report_dir)
    say(f"Loading module {cfg.tfhub_module}")
    spec, loaded = modules.resolve(cfg.tfhub_module, cfg.input_size, cfg.input_range, trusted=cfg.trust_graph)
    locate, why = locate_decision(cfg, keypoints)
    say(why)
    keypoints, digests, split = _split(cfg, keypoints, spec, loaded, say, warn)
    seed = cfg.random_seed if cfg.random_seed is not None else random.SystemRandom().randrange(2**31)
    flips, no_flip = flip_decision(keypoints.names, keypoints.flip_pairs)
    if no_flip:
        warn(no_flip)
    recipe = PointRecipe() if flips else PointRecipe(flip=0.0)
    variants = cfg.augment if cfg.augment is not None else VARIANTS
    say(f"Augmentation: {variants} distorted copies of each training photo ({recipe.describe()})")
    min_side = MIN_SIDE_SHARE * box_share(keypoints)
    located = None
    if locate:
        size = input_size(spec, keypoints, True)
        located = _stage("locate", cfg, spec, loaded, keypoints, split, digests, size, None, recipe,
                         variants, seed, say, warn)
    size = input_size(spec, keypoints, locate)
    cropper = (lambda index, instance, rng: _crop_matrices(instance, size, min_side, rng)) if locate else None
    stage = _stage("points", cfg, spec, loaded, keypoints, split, digests, size, cropper, recipe, variants,
                   seed + 1, say, warn)
    model = PointsModel(list(keypoints.names), list(keypoints.skeleton), list(keypoints.flip_pairs),
                        stage.model, located.model if located else None, min_side=min_side)
    tested = test(model, spec, loaded, keypoints, split.instances("testing"), warn)
    say(points_report.console_line(tested.summary))
    folder = Path(cfg.output_graph).parent
    export_points_model(spec, loaded, model, Path(cfg.output_graph), folder / POINT_NAMES,
                        Path(cfg.saved_model_dir), publication)
    log = train_log(cfg, seed, spec, keypoints, split, digests, locate, why, model, located, stage, tested,
                    variants, recipe, time.perf_counter() - started)
    written = TrainLog.of_run(log, kind=POINTS)
    written.stage(publication.write, Path(cfg.train_log), Path(cfg.output_graph).parent)
    publication.commit()
    say(f"Wrote {cfg.output_graph}, {folder / POINT_NAMES}, {folder / POINTS_SKELETON}, "
        f"{cfg.saved_model_dir} and {cfg.train_log}")
    points_report.write(cfg.report_dir, tested, keypoints.skeleton)
    say(f"Wrote the test report {Path(cfg.report_dir) / 'report.html'}")
    return written.data


def _split(cfg: TrainConfig, keypoints: Keypoints, spec, loaded, say, warn):
    """(the photos that read, their content hashes, the split): the module's pooled features (cached
    as the classes') find near-duplicates, kept in one split with same-content and --group_by groups."""
    cache = bottlenecks.BottleneckCache(cfg.bottleneck_dir, spec, warn=warn)
    extraction = bottlenecks.extract([i.path for i in keypoints.instances], spec, loaded, cache,
                                     cfg.bottleneck_batch_size, warn=warn)
    say(extraction.summary())
    readable = [i for i in keypoints.instances if extraction.readable(i.path)]
    if not readable:
        raise KeypointsError(f"none of the photos {keypoints.source} labels could be read")
    keypoints = replace(keypoints, instances=readable)
    found = point_groups(keypoints, extraction, cfg.near_duplicate_threshold, cfg.group_by, cache.dir, warn)
    for line in found.lines:
        say(line)
    split = split_points(keypoints, found.groups, cfg.testing_percentage, cfg.validation_percentage)
    sizes = split.sizes()
    say(f"Split: {sizes['training']} training, {sizes['validation']} validation, {sizes['testing']} testing "
        "photos")
    for note in split.notes:
        say(f"Split: {note}")
    return keypoints, {i.path: extraction.digests[i.path] for i in readable}, split


def _crop_matrices(instance, size: int, min_side: float, rng: np.random.Generator | None) -> list[np.ndarray]:
    """The crop of the labelled points' box (jittered for training, as a locate stage errs)."""
    box = crop_box(instance.points, instance.labelled, instance.width, instance.height, min_side=min_side)
    return [crop_matrix(box, size, draw_crop_jitter(rng) if rng is not None else None)]


def _stage(name: str, cfg: TrainConfig, spec, loaded, keypoints: Keypoints, split: PointSplit, digests,
           size: int, cropper, recipe: PointRecipe, variants: int, seed: int, say, warn) -> Stage:
    """One stage's head, trained on the training photos and their distorted copies, kept at the
    epoch whose validation error is lowest."""
    started = time.perf_counter()
    trunk = SpatialTrunk(spec, loaded, size)
    say(f"{name.capitalize()} stage: {size}x{size} input, the module's {trunk.shape[0]}x{trunk.shape[1]}x"
        f"{trunk.shape[2]} map at {trunk.tap.node}")
    training = split.instances("training")
    sets = []
    for variant in range(variants + 1):
        rng = np.random.default_rng([seed, variant]) if variant else None
        crops = _cut(training, cropper, size, rng, warn)
        if variant:
            crops = _distorted(crops, [digests[training[i].path] for i in crops.source], recipe, variant,
                               keypoints.flip_pairs, size)
        sets.append(PointSet(_maps(trunk, crops), crops.normalised(), crops.visible))
    validation = _cut(split.instances("validation"), cropper, size, None, warn)
    epochs = cfg.point_epochs or max(EPOCHS, math.ceil(MIN_STEPS / math.ceil(len(training) / BATCH)))
    # Patience in proportion: a small set's many short epochs are noisier one by one.
    schedule = PointsSchedule(epochs, BATCH, cfg.point_learning_rate, patience=max(10, epochs // 6),
                              seed=seed)
    head = make_head(PointsHeadSpec(), trunk.shape[2], len(keypoints.names), seed)

    def on_epoch(epoch: PointsEpoch) -> None:
        say(f"{name.capitalize()} epoch {epoch.epoch}: loss {epoch.train_loss:.4f}, validation error "
            f"{epoch.validation_error:.4f} of the side ({epoch.seconds:.1f} s)")

    history = train_points_head(head, sets, PointSet(_maps(trunk, validation), validation.normalised(),
                                                     validation.visible), schedule, on_epoch=on_epoch)
    best = min(history, key=lambda e: (e.validation_error, e.epoch))
    say(f"{name.capitalize()} stage: kept epoch {best.epoch} (validation error {best.validation_error:.4f})")
    return Stage(PointsStage(head, size, trunk.tap.node), history, time.perf_counter() - started)


def _cut(instances, cropper, size: int, rng, warn) -> Crops:
    matrices = None if cropper is None else (lambda index, instance: cropper(index, instance, rng))
    return cut(instances, matrices, size, warn)


def _distorted(crops: Crops, digests: list[str], recipe: PointRecipe, variant: int, flip_pairs, size: int,
               batch: int = 64) -> Crops:
    """The crops distorted by the recipe's draw for (each photo's content, variant): reruns draw alike."""
    images, points, visible = [], [], []
    for start in range(0, len(crops), batch):
        rows = slice(start, start + batch)
        drawn = [draw(recipe, variant_seed(recipe, digest, variant), size) for digest in digests[rows]]
        moved, moved_points, shown = apply(crops.floats(rows), crops.points[rows], crops.visible[rows],
                                           drawn, flip_pairs)
        images.append(np.clip(np.rint(moved.numpy() * 255.0), 0, 255).astype(np.uint8))
        points.append(moved_points)
        visible.append(shown)
    return Crops(np.concatenate(images), np.concatenate(points), np.concatenate(visible), crops.matrices,
                 crops.source)


def _maps(trunk: SpatialTrunk, crops: Crops, batch: int = 32, dtype=np.float16) -> np.ndarray:
    """The trunk's maps of the crops, as float16 for training (half the memory; the head reads
    float32), as float32 for a test (the exported graph's own values)."""
    out = np.empty((len(crops), *trunk.shape), dtype)
    for start in range(0, len(crops), batch):
        rows = slice(start, start + batch)
        out[rows] = trunk.maps(crops.floats(rows), batch)
    return out


def test(model: PointsModel, spec, loaded, keypoints: Keypoints, instances, warn) -> Tested:
    """The model on `instances` (the test split, or an evaluation's photos), stage after stage."""
    boxes = np.array([[0.0, 0.0, i.width, i.height] for i in instances]).reshape(-1, 4)
    if model.locate is not None:
        located, _ = _run_stage(model.locate, spec, loaded, instances, None, warn)
        boxes = np.array([crop_box(p, np.ones(len(p), bool), i.width, i.height, model.margin, model.min_side)
                          for p, i in zip(located, instances, strict=True)]).reshape(-1, 4)

        def cropper(index, instance):
            return [crop_matrix(boxes[index], model.points.size)]
    else:
        cropper = None
    predicted, confidence = _run_stage(model.points, spec, loaded, instances, cropper, warn)
    truth = np.stack([i.points for i in instances]) if instances else np.zeros((0, len(model.names), 2))
    visible = (np.stack([i.labelled for i in instances]) if instances
               else np.zeros((0, len(model.names)), bool))
    truth_boxes = np.array([crop_box(i.points, i.labelled, i.width, i.height, model.margin, model.min_side)
                            for i in instances]).reshape(-1, 4)
    return record(predicted, confidence, truth, visible, boxes, truth_boxes, [i.path for i in instances],
                  list(model.names), located=model.locate is not None)


def _run_stage(stage: PointsStage, spec, loaded, instances, cropper, warn) -> tuple[np.ndarray, np.ndarray]:
    """A stage's points in photo pixels and their confidence, one row per instance (NaN where unreadable)."""
    count = len(instances)
    points = np.full((count, stage.head.points, 2), np.nan)
    confidence = np.zeros((count, stage.head.points))
    crops = cut(instances, cropper, stage.size, warn, exact=True)
    if not len(crops):
        return points, confidence
    trunk = SpatialTrunk(spec, loaded, stage.size)
    normalised, scores = predict(stage.head, _maps(trunk, crops, dtype=np.float32))
    for row, index in enumerate(crops.source):
        points[index] = back_to_photo(normalised[row] * stage.size, crops.matrices[row])
        confidence[index] = scores[row]
    return points, confidence


def train_log(cfg: TrainConfig, seed: int, spec, keypoints: Keypoints, split: PointSplit, digests,
              locate: bool, why: str, model: PointsModel, located: Stage | None, stage: Stage, tested: Tested,
              variants: int, recipe: PointRecipe, total_seconds: float) -> dict:
    """What train_log.json holds for a points model: settings, data, both stages, the test."""
    def stage_log(done: Stage) -> dict:
        return {"size": done.model.size, "tap": done.model.tap, "head": PointsHeadSpec().describe(),
                "epochs": [e.as_json() for e in done.history], "seconds": round(done.seconds, 3)}

    return {
        "flags": {**cfg.as_json(), "random_seed": seed},
        "module": spec.describe(),
        "keypoints": {"source": str(keypoints.source), "format": keypoints.format,
                      "photos": len(keypoints.instances), "found_by": keypoints.found_by},
        "names": list(keypoints.names),
        "skeleton": [list(b) for b in keypoints.skeleton],
        "flip_pairs": [list(p) for p in keypoints.flip_pairs],
        "locate": {"on": locate, "why": why, "box_share": box_share(keypoints), "margin": model.margin,
                   "min_side": model.min_side, "stage": stage_log(located) if located else None},
        "points_stage": stage_log(stage),
        "augmentation": {"variants": variants, "recipe": recipe.identity(), "distortions": recipe.describe()},
        "split_sizes": split.sizes(),
        "split_notes": split.notes,
        # Content hashes of each split: evaluate.sh counts the photos it is given that are these.
        "split_digests": {name: sorted({digests[i.path] for i in split.instances(name)})
                          for name in ("training", "validation", "testing")},
        "test": tested.summary,
        "total_seconds": round(total_seconds, 3),
    }

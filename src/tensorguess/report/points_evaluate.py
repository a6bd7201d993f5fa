"""Score a labelled keypoint set with a points model: the numbers train.sh gives its test split, on it.

LABELLED is a folder holding keypoints.json, or an annotation file (COCO, DeepLabCut, CSV), its
photos' paths relative to its folder, read by data/keypoints.read_keypoints as training reads one
(a bad row: one line, and the run goes on without it). Every labelled photo is scored by the
opened PointsScorer, the exported graph (or SavedModel) itself: the numbers are the shipped model's.

Names: the file's points are matched to the model's by name, in any order, and the truth is put in
the model's order. A point of the model that the file does not label is measured nowhere (one line
names it), as a class with no folder is absent from the classes' evaluation; a name the model does
not know refuses the run in one line (a typo, or another model's file: its numbers would mean nothing).

Photos the model trained on (their content hash among train_log.json's training and validation
split_digests) are flagged, not dropped, as the classes' evaluate does: the numbers count every
photo, and report.json's `leaks` says how many were seen and gives the numbers without them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tensorguess import point_metrics
from tensorguess.data.images import Skipped, printable
from tensorguess.data.keypoints import Keypoints, read_keypoints
from tensorguess.errors import TensorGuessError
from tensorguess.head.points_model import MARGIN, crop_box
from tensorguess.model_dir import KEYPOINTS, TRAIN_LOG, TrainLog
from tensorguess.report.leaks import Leaks, content_hashes, find_leaks, seen_digests
from tensorguess.report.points_tested import Tested, record
from tensorguess.score.points import PointsScorer


class PointsEvaluationError(TensorGuessError):
    """The labelled points do not fit the model; the message names the file and what to change."""


@dataclass
class PointsEvaluation:
    """What evaluate writes into the report folder (points_report.write's arguments)."""

    tested: Tested
    skeleton: list[tuple[int, int]]  # 0-based, in the model's point order
    source: str
    extra: dict  # report.json's fields past the numbers: model, labelled, unreadable_files, leaks, notes


def annotation_file(labelled: Path) -> Path:
    """The keypoint file LABELLED stands for: itself, or the keypoints.json a folder holds."""
    labelled = Path(labelled)
    if labelled.is_dir():
        if not (labelled / KEYPOINTS).is_file():
            raise PointsEvaluationError(
                f"{printable(labelled)} holds no {KEYPOINTS}: give the folder holding the labelled points' "
                f"{KEYPOINTS}, or the annotation file itself (COCO JSON, DeepLabCut or plain CSV)")
        return labelled / KEYPOINTS
    return labelled


def model_columns(keypoints: Keypoints, names: list[str],
                  warn: Callable[[str], None]) -> tuple[list[int], str]:
    """For each of the model's names, its column in the file (-1: not labelled there), and the note
    said when some are missing ("" when none is); a name the model does not know refuses the run."""
    unknown = [name for name in keypoints.names if name not in names]
    if unknown:
        raise PointsEvaluationError(
            f"{printable(keypoints.source)} labels {len(unknown)} point(s) the model does not have: "
            f"{', '.join(map(repr, unknown))}; its points are: {', '.join(names)}")
    columns = [keypoints.names.index(name) if name in keypoints.names else -1 for name in names]
    missing = [name for name, column in zip(names, columns, strict=True) if column < 0]
    note = ""
    if missing:
        note = (f"{printable(keypoints.source)} labels {len(names) - len(missing)} of the model's "
                f"{len(names)} points: {', '.join(missing)} not labelled there, so not measured")
        warn(f"tensor-guess: {note}")
    return columns, note


def in_model_order(points: np.ndarray, labelled: np.ndarray,
                   columns: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """One instance's points [K,2] and labelled [K] in the model's order (NaN, False where not labelled)."""
    taken = np.asarray(columns)
    present = taken >= 0
    ordered = np.full((len(columns), 2), np.nan)
    ordered[present] = points[taken[present]]
    shown = np.zeros(len(columns), bool)
    shown[present] = labelled[taken[present]]
    return ordered, shown


def model_skeleton(train_log: TrainLog | None, names: list[str], keypoints: Keypoints,
                   columns: list[int]) -> list[tuple[int, int]]:
    """The model's bones as train.sh logged them, else the file's put in the model's order."""
    if train_log is not None and train_log.point_names == names and train_log.skeleton:
        return [(int(a), int(b)) for a, b in train_log.skeleton]
    position = {column: k for k, column in enumerate(columns) if column >= 0}
    return [(position[a], position[b]) for a, b in keypoints.skeleton if a in position and b in position]


def crop_rule(train_log: TrainLog | None, log_path: Path) -> tuple[bool, float, float, str]:
    """(whether the model locates first, its crop's margin and min_side, a note when unknown)."""
    locate = train_log.locate if train_log is not None else {}
    if "on" not in locate:
        return False, MARGIN, 0.0, (f"{log_path} does not say whether the model locates the object first: "
                                    "the locate stage's IoU is not measured")
    return bool(locate["on"]), float(locate.get("margin", MARGIN)), float(locate.get("min_side", 0.0)), ""


def evaluate_points(scorer: PointsScorer, labelled: Path, model_name: str, batch_size: int = 32,
                    warn: Callable[[str], None] = print, show_progress: bool = True,
                    train_log: TrainLog | None = None, train_log_path: Path | None = None,
                    say: Callable[[str], None] = print) -> PointsEvaluation:
    """Score every labelled photo of `labelled` with the model; the kind's evaluate job."""
    path = annotation_file(Path(labelled).resolve())
    keypoints = read_keypoints(path, warn=warn, say=say)
    names = list(scorer.names)
    columns, missing = model_columns(keypoints, names, warn)
    log_path = train_log_path or Path(TRAIN_LOG)
    located, margin, min_side, unknown = crop_rule(train_log, log_path)
    instances = keypoints.instances
    predicted, confidence, boxes, truth, visible, truth_boxes, paths, unreadable = ([] for _ in range(8))
    results = scorer.score_files([i.path for i in instances], batch_size, show_progress=show_progress)
    for instance, result in zip(instances, results, strict=True):
        if isinstance(result, Skipped):
            warn(result.warning())
            unreadable.append(result)
            continue
        points, shown = in_model_order(instance.points, instance.labelled, columns)
        predicted.append(result.points)
        confidence.append(result.confidence)
        boxes.append(result.box)
        truth.append(points)
        visible.append(shown)
        # The crop the labelled points give, by the rule the model's graph crops by (head/points_model).
        truth_boxes.append(crop_box(points, shown, instance.width, instance.height, margin, min_side))
        paths.append(instance.path)
    k = len(names)
    tested = record(_stack(predicted, (0, k, 2)), _stack(confidence, (0, k)), _stack(truth, (0, k, 2)),
                    _stack(visible, (0, k)).astype(bool), _stack(boxes, (0, 4)), _stack(truth_boxes, (0, 4)),
                    paths, names, located=located)
    extra = {"model": model_name, "labelled": str(path),
             "unreadable_files": [{"file": str(s.path), "reason": s.reason} for s in unreadable],
             "notes": [note for note in (missing, unknown) if note]}
    if train_log is not None:
        extra["leaks"] = leak_report(tested, seen_leaks(paths, train_log, log_path))
    return PointsEvaluation(tested, model_skeleton(train_log, names, keypoints, columns),
                            f"evaluation of the labelled points {printable(path.parent.name)}/"
                            f"{printable(path.name)}", extra)


def _stack(rows: list, empty: tuple[int, ...]) -> np.ndarray:
    return np.stack(rows).astype(np.float64) if rows else np.zeros(empty)


def seen_leaks(paths: list[Path], train_log: TrainLog, log_path: Path) -> Leaks:
    """Which photos are, byte for byte, photos the model trained on (identical content only: the
    points' scorer gives no pooled features to find near copies by)."""
    seen = seen_digests(train_log)
    digests = content_hashes(paths)
    found = find_leaks(digests, None, seen, None, None)
    if not seen:
        found.note = f"{log_path} lists no training photos (written by an older tensor-guess)"
    return found


def leak_report(tested: Tested, leaks: Leaks) -> dict:
    """report.json's `leaks`: the photos the model has seen, and the numbers without them."""
    clean = leaks.clean()
    without = point_metrics.summary(tested.predicted[clean], tested.truth[clean], tested.visible[clean],
                                    tested.names)
    return {
        **leaks.summary([str(path) for path in tested.paths]),
        **{f"{key}_without": without[key] for key in ("mean_error_px", "mean_error_norm", "pck", "auc")},
    }

"""One export run of a points model (export.sh on a points DIR): the SavedModel, TFLite float and int8,
Core ML, then how far each file's points are from the .pb's on the test split.

Reads only what train.sh wrote into DIR (the .pb, train_log.json) and the photos of the training's
splits, found again by their content hashes in the keypoint file it trained on: int8 is calibrated
on training photos, the points are compared on test photos (never trained on). The distance is a
share of the box side: for the whole-photo stage these files hold, the photo's longer side.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tensorguess import publish
from tensorguess.data.images import content_hash, read_image
from tensorguess.errors import TensorGuessError
from tensorguess.export import points_coreml, points_lite
from tensorguess.export.formats import CALIBRATION_PHOTOS, FILES, ExportError, evenly_chosen, read_graph
from tensorguess.export.points_graph import write_points_saved_model
from tensorguess.model_dir import (
    GRAPH,
    LOCATE_EXPORTS,
    POINT_NAMES,
    POINTS_CROP,
    SAVED_MODEL,
    TRAIN_LOG,
    TrainLog,
)
from tensorguess.score import graph_check
from tensorguess.score.points import point_names

AGREEMENT_SHARE = 0.01  # a file's points within 1% of the box side of the .pb's: flagged past it
COMPARED_PHOTOS = 100  # test photos the files are compared on, spread evenly


def _say(line: str) -> None:
    print(line, flush=True)


def export(folder: Path, chosen: list[str], graph: str = GRAPH, labels_name: str = POINT_NAMES,
           final_tensor_name: str = "", trust_graph: bool = False, report_dir: Path | None = None,
           say: Callable[[str], None] = _say, warn: Callable[[str], None] = _say) -> list[dict]:
    """Write each chosen format of the points model in `folder` (the SavedModel too, when it is
    missing); return (and print) each file's distance to the .pb's points. kinds.py's export job for
    points: the classes' arguments, of which the labels, the tensor and the report are not used."""
    folder = Path(folder)
    with publish.writing(folder, say, [Path(graph).name, POINT_NAMES]):
        return _export(folder, chosen, graph, trust_graph, say, warn)


def _export(folder: Path, chosen: list[str], graph: str, trust_graph: bool, say, warn) -> list[dict]:

    graph_path = folder / graph
    graph_def = read_graph(graph_path)
    refused = graph_check.refusal(graph_def, graph_path, trusted=trust_graph)
    if refused:
        raise ExportError(refused)
    names = point_names(graph_def, graph_path)
    try:
        size = points_lite.stage_size(graph_def, graph_path)
    except points_lite.PointsLiteError as error:
        raise ExportError(str(error)) from error
    log_path = folder / TRAIN_LOG
    log = TrainLog.read(log_path)
    photos = split_photos(log, log_path, warn) if log is not None else {}
    if "tflite-int8" in chosen and not photos.get("training"):
        raise ExportError(f"{log_path} is missing or names no training photo found: int8 is calibrated on "
                          "the training photos it lists; train with train.sh first")

    with publish.Publication(folder) as publication:
        if not (folder / SAVED_MODEL).exists():
            write_points_saved_model(graph_def, publication.new_folder(folder / SAVED_MODEL))
            say(f"Wrote {folder / SAVED_MODEL}")
    rule = points_lite.crop_rule(graph_def) if points_lite.two_stage(graph_def) else None
    if rule is not None and any(name != "saved_model" for name in chosen):
        with publish.Publication(folder) as publication:
            publication.write(folder / POINTS_CROP, (json.dumps(rule, indent=1) + "\n").encode())
    for name in chosen:
        if name == "saved_model":
            continue
        # Each stage's file: a two-stage model's locate stage (on the whole photo) beside its points
        # stage (on the crop); a one-stage model's whole-photo stage alone.
        files = [(folder / FILES[name], "whole")] if rule is None else \
            [(folder / LOCATE_EXPORTS[name], "whole"), (folder / FILES[name], "crop")]
        for target, stage in files:
            started = time.perf_counter()
            side = size if stage == "whole" else rule["points_size"]
            with publish.Publication(folder) as publication:
                if name == "coreml":
                    built = publication.scratch(target) / target.name
                    skeleton = log.skeleton if log is not None else []
                    points_coreml.write_points_mlpackage(graph_def, names, skeleton, side, built, stage)
                    points_coreml.check(built, names, side)
                    publication.adopt(target, built)
                else:
                    calibration = None
                    if name == "tflite-int8":
                        paths = evenly_chosen(photos["training"], CALIBRATION_PHOTOS)
                        say(f"Calibrating int8 on {len(paths)} training photos")
                        calibration = (squashed_photos(paths, size) if stage == "whole"
                                       else cropped_photos(graph_def, paths))
                    points_lite.write_points_tflite(graph_def, names, target, side, calibration,
                                                    publication.write, stage, rule)
            say(f"Wrote {target} ({time.perf_counter() - started:.1f} s)")
    if not photos.get("testing"):
        say(f"No comparison per format: {log_path} is missing or its test split is empty")
        return []
    table = compare(folder, graph_def, [n for n in chosen if n in ("tflite", "tflite-int8")],
                    evenly_chosen(photos["testing"], COMPARED_PHOTOS), size)
    for line in table_lines(table, "coreml" in chosen):
        (warn if line.startswith("WARNING") else say)(line)
    return table


def split_photos(log: TrainLog, log_path: Path, warn) -> dict[str, list[Path]]:
    """The photos of each split train_log.json lists, found by content hash in its keypoint file."""
    from tensorguess.data.keypoints import read_keypoints

    source = (log.data.get("keypoints") or {}).get("source")
    digests = log.split_digests
    if not source or not digests:
        raise ExportError(f"{log_path} names no keypoint file or split (written by an older tensor-guess); "
                          "train again to export")
    try:
        keypoints = read_keypoints(source, log.image_dir, warn=warn, say=lambda line: None)
    except TensorGuessError as error:  # moved or unreadable: the files that need no photo are written
        warn(f"{error}: int8 and the comparison per format need the training's photos")
        return {}
    where = {name: set(values) for name, values in digests.items()}
    found: dict[str, list[Path]] = {name: [] for name in where}
    for path in dict.fromkeys(instance.path for instance in keypoints.instances):
        try:
            digest = content_hash(path)
        except OSError:
            continue
        for name, members in where.items():
            if digest in members:
                found[name].append(path)
                break
    return found


def squashed_photos(paths: list[Path], size: int) -> Callable:
    """A generator factory of float [S,S,3] photos, upright and squashed as guess feeds the graph."""
    from tensorguess.features.modules import resize_image

    def images():
        for path in paths:
            try:
                yield resize_image(read_image(path), size).numpy()
            except Exception:  # noqa: BLE001  (an unreadable photo calibrates nothing)
                continue

    return images


def cropped_photos(graph_def, paths: list[Path]) -> Callable:
    """A generator factory of a two-stage model's crops [S,S,3] of `paths`, as its graph cuts them
    (located, then crop_box): what its points stage's int8 file is calibrated on."""
    import tensorflow as tf

    from tensorguess.export.points_graph import CROP_INPUT
    from tensorguess.model_dir import PHOTOS

    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    crop = wrapped.prune(feeds=wrapped.graph.get_tensor_by_name(f"{PHOTOS}:0"),
                         fetches=wrapped.graph.get_tensor_by_name(f"{CROP_INPUT}:0"))

    def images():
        for path in paths:
            try:
                yield crop(tf.constant(read_image(path)[None])).numpy()[0]
            except Exception:  # noqa: BLE001  (an unreadable photo calibrates nothing)
                continue

    return images


def compare(folder: Path, graph_def, formats: list[str], paths: list[Path], size: int) -> list[dict]:
    """Each TFLite format's points (run as guess --model runs it: score/points_lite.py, the crop on the
    host for a two-stage model) against the .pb's, as shares of the .pb's box side: the mean, the
    largest, and the share of points within AGREEMENT_SHARE."""
    from tensorguess.score.points import graph_run
    from tensorguess.score.points_lite import open_lite_run

    run_pb, close = graph_run(graph_def, folder / GRAPH)
    try:
        photos = [image for image in _photos(paths)]
        reference = [run_pb(image[None]) for image in photos]
    finally:
        close()
    table = []
    for name in formats:
        run, _digest = open_lite_run(folder, name)
        distances = []
        for image, (expected, _confidence, box) in zip(photos, reference, strict=True):
            points, _, _ = run(image[None])
            moved = (points[0] - expected[0]) / float(box[0, 2] - box[0, 0])
            distances.extend(np.hypot(moved[:, 0], moved[:, 1]).tolist())
        distances = np.array(distances)
        table.append({"format": name, "file": FILES[name], "photos": len(photos),
                      "mean_share": float(distances.mean()), "max_share": float(distances.max()),
                      "within": float((distances <= AGREEMENT_SHARE).mean()),
                      "flagged": bool(distances.max() > AGREEMENT_SHARE)})
    return table


def _photos(paths: list[Path]):
    for path in paths:
        try:
            yield read_image(path)
        except Exception:  # noqa: BLE001  (a photo gone since training: compared on the others)
            continue


def table_lines(table: list[dict], coreml: bool) -> list[str]:
    lines = [f"Points per format against the .pb, on {table[0]['photos'] if table else 0} test photos "
             "(distance as a share of the box side):", "format         mean      max   within 1%"]
    for row in table:
        lines.append(f"{row['format']:<12} {row['mean_share']:7.3%} {row['max_share']:8.3%}  "
                     f"{row['within']:8.1%}")
    if coreml:
        lines.append("coreml       not scored: Core ML runs on macOS only")
    for row in table:
        if row["flagged"]:
            lines.append(f"WARNING: {row['format']} ({row['file']}) puts a point {row['max_share']:.2%} "
                         "of the box side from the .pb's (over 1%): check it before deploying it")
    return lines

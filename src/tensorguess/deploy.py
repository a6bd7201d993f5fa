"""One export run (export.sh, train.sh --export): the formats, then the accuracy per format in the report.

Reads only what train.sh wrote into DIR (the .pb, its labels, train_log.json) and the photos
of the training's splits; nothing is retrained.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tensorguess import publish
from tensorguess.data.images import Skipped
from tensorguess.export import bias_correction, coreml, formats, tflite
from tensorguess.export.formats import FILES, ExportError, read_graph
from tensorguess.model_dir import FINAL_TENSOR, GRAPH, IMAGE_BATCH, LABELS, REPORT, TRAIN_LOG, TrainLog
from tensorguess.report import document
from tensorguess.report import formats as table_of
from tensorguess.report.evaluate import undo_temperature
from tensorguess.score import graph_check
from tensorguess.score.models import open_classifier
from tensorguess.score.predict import read_labels


def _say(line: str) -> None:
    print(line, flush=True)


def export(folder: Path, chosen: list[str], graph: str = GRAPH,
           labels_name: str = LABELS, final_tensor_name: str = FINAL_TENSOR,
           trust_graph: bool = False, report_dir: Path | None = None,
           say: Callable[[str], None] = _say, warn: Callable[[str], None] = _say) -> list[dict]:
    """Write each chosen format into `folder`; return (and print, and put in the report) the table.

    The one train or export writing into `folder` while it runs (publish.py); each format is
    published whole, replacing the old one only once it is complete (a link is replaced, never
    followed).
    """
    folder = Path(folder)
    with publish.writing(folder, say, [Path(graph).name, Path(labels_name).name]):
        return _export(folder, chosen, graph, labels_name, final_tensor_name, trust_graph, report_dir,
                       say, warn)


def _export(folder: Path, chosen: list[str], graph: str, labels_name: str, final_tensor_name: str,
            trust_graph: bool, report_dir: Path | None, say: Callable[[str], None],
            warn: Callable[[str], None]) -> list[dict]:

    graph_path, labels_path = folder / graph, folder / labels_name
    labels = read_labels(labels_path)
    graph_def = read_graph(graph_path)
    refused = graph_check.refusal(graph_def, graph_path, trusted=trust_graph)
    if refused:
        raise ExportError(refused)
    nodes = {node.name: node for node in graph_def.node}
    if IMAGE_BATCH not in nodes or final_tensor_name not in nodes:
        raise ExportError(f"{graph_path} has no {IMAGE_BATCH}:0 or {final_tensor_name}:0: only "
                          "graphs written by tensor-guess's train.sh can be exported")
    size = int(nodes[IMAGE_BATCH].attr["shape"].shape.dim[1].size)
    log_path = folder / TRAIN_LOG
    log = TrainLog.read(log_path)
    photos = None
    if log is not None:
        photos = formats.split_photos(log, log_path, warn)
    elif "tflite-int8" in chosen:
        raise ExportError(f"{log_path} is missing: int8 is calibrated on the training photos it "
                          "lists; train with train.sh first")

    seconds: dict[str, float] = {}
    for name in chosen:
        target = folder / FILES[name]
        started = time.perf_counter()
        with publish.Publication(folder) as publication:
            _write_format(name, graph_def, labels, target, final_tensor_name, size, photos, log_path,
                          labels_name, publication, say)
        seconds[name] = time.perf_counter() - started
        say(f"Wrote {target} ({time.perf_counter() - started:.1f} s)")

    if photos is None or not photos.parts.get("testing"):
        say(f"No accuracy per format: {log_path} is missing or its test split is empty")
        return []
    table, evaluation = _score(folder, chosen, photos, graph, labels_name, final_tensor_name,
                               trust_graph, log, seconds, warn)
    for line in table_of.console_lines(table):
        (warn if line.startswith("WARNING") else say)(line)
    report_dir = Path(report_dir or folder / REPORT)
    report = document.build(evaluation)
    report["formats"] = table
    document.write(report_dir, evaluation, train_log=log, report=report)
    say(f"Wrote the accuracy per format into {report_dir / 'report.html'}")
    return table


def _write_format(name: str, graph_def, labels: list[str], target: Path, final_tensor_name: str,
                  size: int, photos, log_path: Path, labels_name: str,
                  publication: publish.Publication, say: Callable[[str], None]) -> None:
    """Stage format `name` of the classifier as the new `target` in `publication`."""
    if name == "tflite":
        tflite.write_tflite(graph_def, labels, target, final_tensor_name, write=publication.write)
    elif name == "tflite-int8":
        paths = formats.calibration_paths(photos)
        if not paths:
            raise ExportError(f"{log_path} names no training photo found in "
                              f"{photos.root}; int8 needs some to calibrate on")
        say(f"Calibrating int8 on {len(paths)} training photos, and correcting its biases on up to "
            f"{min(len(paths), bias_correction.MOST_PHOTOS)} of them")
        tflite.write_tflite(graph_def, labels, target, final_tensor_name,
                             calibration=formats.calibration_images(paths, size), write=publication.write)
    else:
        built = publication.scratch(target) / target.name
        coreml.write_mlpackage(graph_def, labels, size, built, final_tensor_name)
        spec = coreml.check(built, labels, size)
        publication.adopt(target, built)
        say(f"Core ML spec read back: input {spec['input']!r} {spec['width']}x{spec['height']} "
            f"{spec['color_space']}, scale {spec['scale']:.6g}, bias {spec['bias']}, "
            f"{len(spec['labels'])} labels in {labels_name} order, outputs "
            f"{', '.join(spec['outputs'])}; running it needs macOS")


def _score(folder, chosen, photos, graph, labels_name, final_tensor_name, trust_graph,
           log: TrainLog, seconds, warn):
    """The table (the .pb first), and the .pb's Evaluation of the test split for the report."""
    test = photos.parts["testing"]
    paths, truth = [p for p, _ in test], np.array([t for _, t in test], np.int64)
    runnable = ["pb"] + [name for name in chosen if name != "coreml"]
    scores: dict[str, dict[Path, np.ndarray]] = {}
    unreadable: list[Skipped] = []
    for name in runnable:
        with open_classifier(folder, name, graph, labels_name, final_tensor_name,
                             trust_graph) as classifier:
            started = time.perf_counter()
            scores[name] = {}
            for result in classifier.score_files(paths, 32):
                if isinstance(result, Skipped):
                    if name == "pb":
                        warn(result.warning())
                        unreadable.append(result)
                else:
                    scores[name][result.path] = result.scores
            if name == "pb":
                seconds["pb"] = time.perf_counter() - started
    kept = [i for i, p in enumerate(paths) if all(p in scores[name] for name in runnable)]
    kept_paths, kept_truth = [paths[i] for i in kept], truth[kept]
    matrix = {name: np.stack([scores[name][p] for p in kept_paths]) if kept
              else np.zeros((0, len(photos.labels))) for name in runnable}
    reference = matrix["pb"]
    table = []
    for name in ["pb", *chosen]:
        file = graph if name == "pb" else FILES[name]
        if name == "coreml":
            table.append(table_of.not_run(name, file, "not scored: Core ML runs on macOS only"))
        else:
            table.append(table_of.row(name, file, matrix[name], reference, kept_truth,
                                      photos.labels, seconds.get(name)))
    temperature = log.temperature
    evaluation = document.Evaluation(
        labels=photos.labels, truth=kept_truth, probabilities=reference, paths=kept_paths,
        root=photos.root, source=f"test split of {photos.root}", classifier=str(folder / graph),
        unreadable=unreadable,
        uncalibrated=(undo_temperature(reference, temperature)
                      if isinstance(temperature, float) and temperature != 1.0 else None),
        temperature=temperature if isinstance(temperature, float) else None,
        calibration_fit=log.calibration,
    )
    return table, evaluation


"""evaluate: score a labelled set with the model in DIR and write a report (the kind's: classes or points).

A classes model reads a folder per label, or a labels CSV; a points model a folder holding
keypoints.json, or the annotation file itself (report/points_evaluate.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tensorguess.commands.common import (
    dir_argument,
    engine_flags,
    graph_flags,
    model_of,
    open_scorer,
    tta_flag,
    warn,
)
from tensorguess.errors import UsageError
from tensorguess.model_dir import CLASSES, POINTS, TRAIN_LOG, TrainLog

DESCRIPTION = ("Score LABELLED_DIR/<label>/ images with the classifier in DIR and write report.json, "
               "report.html and figures into OUT_DIR (default: DIR/report-<name of LABELLED_DIR>). "
               "For a points model, LABELLED_DIR holds keypoints.json (or is the annotation file: "
               "COCO, DeepLabCut or CSV) and the report gives the errors in pixels, PCK and each "
               "point's error. Our own report files in OUT_DIR are replaced; nothing else is touched.")


def add_arguments(evaluate: argparse.ArgumentParser) -> None:
    dir_argument(evaluate)
    evaluate.add_argument("labelled", type=Path, help="folder of label folders of images, or a labels CSV; "
                          "for a points model, a folder holding keypoints.json or the annotation file "
                          "(only read)")
    evaluate.add_argument("out", type=Path, nargs="?", help="report folder (created if missing)")
    graph_flags(evaluate)
    tta_flag(evaluate)
    engine_flags(evaluate)


def places(folder: Path, labelled: Path, out: Path | None) -> tuple[Path, Path, Path]:
    """(the labelled set, the folder of its photos, the report folder), all absolute.

    The set is a folder (of label folders, or holding a points model's keypoints.json), or a file
    (a labels CSV, or a points model's annotation file) whose paths are relative to its folder;
    the report goes to OUT_DIR, else DIR/report-<name of the set>, never inside the photos' folder.
    """
    if not labelled.is_dir() and not labelled.is_file():
        raise UsageError(f"labelled folder {labelled} does not exist or is not a folder "
                         "(or a labels CSV)")
    labelled = labelled.resolve()
    is_csv = labelled.is_file()
    photos = labelled.parent if is_csv else labelled
    out = (out or folder / f"report-{labelled.stem if is_csv else labelled.name}").resolve()
    if out.is_relative_to(photos):
        raise UsageError(f"the report folder {out} is inside {photos}; choose one outside it")
    return labelled, photos, out


def run(args) -> int:
    labelled, _, out = places(args.dir, args.labelled, args.out)
    kind = model_of(args)
    check, report = REPORTS[kind.name]
    check(out)  # before any work: a report folder holding someone's files is refused
    log_path = args.dir / TRAIN_LOG
    log = TrainLog.read(log_path)  # what evaluate checks leaks against, if train.sh wrote one
    with open_scorer(args, kind) as scorer:
        from tensorguess.score.models import model_path

        evaluation = kind.function("evaluate")(scorer, labelled,
                                               str(model_path(args.dir, args.model, args.output_graph)),
                                               args.batch_size, warn=warn,
                                               train_log=log, train_log_path=log_path)
    return report(out, evaluation, labelled)


def check_classes(out: Path) -> None:
    from tensorguess.report.document import check_out_dir

    check_out_dir(out)


def report_classes(out: Path, evaluation, labelled: Path) -> int:
    """Write the classes' report, print its summary; 1 when no photo could be scored."""
    from tensorguess.report.document import console_lines, write

    report = write(out, evaluation)
    accuracy = "n/a" if report["accuracy"] is None else f"{report['accuracy'] * 100:.1f}%"
    print(f"Evaluation accuracy = {accuracy} (N={report['n']})")
    for line in console_lines(report):
        print(line)
    return finish(report, out, "report.html, report.json, confusion_matrix.png, reliability.png", labelled)


def finish(report: dict, out: Path, written: str, labelled: Path) -> int:
    """Every kind's last lines: the unreadable files, where the report went; 1 when no photo scored."""
    if report["unreadable_files"]:
        print(f"{len(report['unreadable_files'])} unreadable file(s) skipped, listed in report.json")
    print(f"Wrote the report into {out}: {written}")
    if report["n"] == 0:
        print(f"tensor-guess: no photo in {labelled} could be scored "
              f"({len(report['unreadable_files'])} unreadable); nothing was evaluated", file=sys.stderr)
        return 1
    return 0


def check_points(out: Path) -> None:
    from tensorguess.report.points_report import check_out_dir

    check_out_dir(out)


def report_points(out: Path, evaluation, labelled: Path) -> int:
    """Write the points' report (report/points_evaluate.PointsEvaluation), print its summary line."""
    from tensorguess.report.points_report import REPORT_FILES, console_line, leak_line, write

    report = write(out, evaluation.tested, evaluation.skeleton, evaluation.source, evaluation.extra)
    print(console_line(report, "Evaluation"))
    seen = leak_line(report)
    if seen:
        print(seen)
    return finish(report, out, ", ".join(REPORT_FILES), labelled)


# The one place evaluate tells the kinds apart (kinds.py gives the scorer and the evaluate job): each
# kind's (check of the report folder before any work, report written and printed -> exit status).
REPORTS = {CLASSES: (check_classes, report_classes), POINTS: (check_points, report_points)}

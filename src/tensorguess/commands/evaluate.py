"""evaluate: score a labelled set (a folder per label, or a labels CSV) and write a report."""

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
from tensorguess.model_dir import TRAIN_LOG, TrainLog

DESCRIPTION = ("Score LABELLED_DIR/<label>/ images with the classifier in DIR and write report.json, "
               "report.html and figures into OUT_DIR (default: DIR/report-<name of LABELLED_DIR>). "
               "Our own report files in OUT_DIR are replaced; nothing else is touched.")


def add_arguments(evaluate: argparse.ArgumentParser) -> None:
    dir_argument(evaluate)
    evaluate.add_argument("labelled", type=Path, help="folder of label folders of images (only read)")
    evaluate.add_argument("out", type=Path, nargs="?", help="report folder (created if missing)")
    graph_flags(evaluate)
    tta_flag(evaluate)
    engine_flags(evaluate)


def places(folder: Path, labelled: Path, out: Path | None) -> tuple[Path, Path, Path]:
    """(the labelled set, the folder of its photos, the report folder), all absolute.

    The set is a folder of label folders, or a labels CSV whose paths are relative to its folder;
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
    from tensorguess.report.document import check_out_dir, console_lines, write

    labelled, _, out = places(args.dir, args.labelled, args.out)
    check_out_dir(out)
    log_path = args.dir / TRAIN_LOG
    log = TrainLog.read(log_path)  # what evaluate checks leaks against, if train.sh wrote one
    kind = model_of(args)
    with open_scorer(args, kind) as classifier:
        from tensorguess.score.models import model_path

        evaluation = kind.function("evaluate")(classifier, labelled,
                                               str(model_path(args.dir, args.model, args.output_graph)),
                                               args.batch_size, warn=warn,
                                               train_log=log, train_log_path=log_path)
    report = write(out, evaluation)
    accuracy = "n/a" if report["accuracy"] is None else f"{report['accuracy'] * 100:.1f}%"
    print(f"Evaluation accuracy = {accuracy} (N={report['n']})")
    for line in console_lines(report):
        print(line)
    if report["unreadable_files"]:
        print(f"{len(report['unreadable_files'])} unreadable file(s) skipped, listed in report.json")
    print(f"Wrote the report into {out}: report.html, report.json, confusion_matrix.png, reliability.png")
    if report["n"] == 0:
        print(f"tensor-guess: no photo in {labelled} could be scored "
              f"({len(report['unreadable_files'])} unreadable); nothing was evaluated", file=sys.stderr)
        return 1
    return 0

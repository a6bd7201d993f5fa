"""The evaluation report's files: report.json, the figures and report.html, written together.

A report folder may already exist: tensor-guess replaces its own report files in
it (it recognises them by the `tensor-guess` mark each one carries) and never
deletes anything. A file of the same name that it did not write stops the run
before anything is written. Thumbnails are embedded in report.html, so the folder
holds only the files listed in REPORT_FILES and the page reads offline, anywhere.

The jobs live beside it: model.py (what a report is made from and shows), content.py
(report.json), console.py (the summary lines), html_page.py (report.html, by section).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from tensorguess import strict_json
from tensorguess.atomic_write import write_atomically
from tensorguess.model_dir import TrainLog
from tensorguess.report import plots
from tensorguess.report.console import console_lines, leak_lines, table_order
from tensorguess.report.content import build
from tensorguess.report.html_page import page_html, render_html
from tensorguess.report.model import (
    GENERATOR,
    MANY_CLASSES,
    NEAR_GROUPS_SHOWN,
    NEAR_PHOTOS_SHOWN,
    REPORT_FILES,
    THUMBNAIL,
    WORST_SHOWN,
    Evaluation,
    Page,
    ReportError,
)

__all__ = ["GENERATOR", "MANY_CLASSES", "NEAR_GROUPS_SHOWN", "NEAR_PHOTOS_SHOWN", "REPORT_FILES",
           "THUMBNAIL", "WORST_SHOWN", "Evaluation", "ReportError", "build", "check_out_dir",
           "console_lines", "data_check_photos", "is_ours", "leak_lines", "render_html", "table_order",
           "write"]


# Near the start of each report file tensor-guess writes (JSON, HTML, PNG tEXt chunk).
MARKS = (b'"generator": "tensor-guess', b'<meta name="generator" content="tensor-guess',
         b"Software\x00" + plots.SOFTWARE.encode())


def is_ours(path: Path) -> bool:
    """Whether `path` is a report file tensor-guess wrote, and so may be replaced."""
    with open(path, "rb") as handle:
        head = handle.read(8192)
    return any(mark in head for mark in MARKS)


def check_out_dir(out_dir: Path, names: tuple[str, ...] = REPORT_FILES) -> None:
    """Fail before any work if writing the report files `names` into `out_dir` would replace
    someone's file."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportError(f"{out_dir} exists and is not a folder; choose another report folder")
    try:
        foreign = [name for name in names if (out_dir / name).exists()
                   and not ((out_dir / name).is_file() and is_ours(out_dir / name))]
    except OSError as error:
        raise ReportError(f"cannot read {error.filename} ({error.strerror}); choose another report folder"
                          ) from error
    if foreign:
        raise ReportError(
            f"{out_dir} already holds {', '.join(foreign)} that tensor-guess did not write; "
            "choose another report folder (nothing was changed)"
        )


def write(out_dir: Path, evaluation: Evaluation, train_log: TrainLog | None = None,
          report: dict | None = None) -> dict:
    """Write every report file into out_dir (`report`: build(evaluation), if already made)."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    report = report or build(evaluation)
    figures = {
        "confusion_matrix.png": plots.confusion_matrix_png(report["confusion_matrix"]["labels"],
                                                           report["confusion_matrix"]["matrix"]),
        "reliability.png": plots.reliability_png(
            evaluation.probabilities, evaluation.truth, evaluation.uncalibrated, evaluation.temperature),
    }
    if train_log is not None:
        figures["training_curves.png"] = plots.training_curves_png(train_log)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(out_dir / "report.json", (strict_json.dumps(report, indent=1) + "\n").encode())
    for name, data in figures.items():
        write_atomically(out_dir / name, data)
    shown = [item["file"] for item in report["misclassified"][:WORST_SHOWN]]
    checks = train_log.data_checks if train_log is not None else None
    if checks:
        shown += data_check_photos(checks)
    thumbnails = _thumbnails(evaluation, shown)
    page = page_html(Page.of(report, list(figures), thumbnails, train_log))
    # A file name that is not UTF-8 shows its odd bytes as escapes (\udce9), as report.json does.
    write_atomically(out_dir / "report.html", page.encode("utf-8", "backslashreplace"))
    return report


def _thumbnails(evaluation: Evaluation, names: list[str]) -> dict[str, str]:
    """file name -> a small JPEG as a data: URI, for each named photo that can be read now.

    A name is a scored image's, or a path relative to the image folder (the data
    checks name photos that were not scored); one that is gone or unreadable is left out.
    """
    from PIL import Image

    from tensorguess.data.images import UnreadableImage, read_image

    by_name = {evaluation.name(path): path for path in evaluation.paths}
    found: dict[str, str] = {}
    for name in dict.fromkeys(names):  # each photo once, in the order asked
        try:
            image = Image.fromarray(read_image(by_name.get(name) or Path(evaluation.root) / name))
        except (UnreadableImage, OSError, ValueError):
            continue
        image.thumbnail((THUMBNAIL, THUMBNAIL))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80)
        found[name] = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
    return found


def data_check_photos(checks: dict) -> list[str]:
    """The photos the data checks section of report.html draws (relative to the image folder)."""
    names = [photo for group in checks.get("near_duplicate_groups", [])[:NEAR_GROUPS_SHOWN]
             for photo in group[:NEAR_PHOTOS_SHOWN]]
    return names + [item["file"] for item in checks.get("suspected_label_errors", [])[:WORST_SHOWN]]

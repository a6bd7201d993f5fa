"""A points model's report: report.json (the numbers), pck_curve.png and report.html (photos drawn).

Written by train.sh for its test split and by evaluate.sh for a labelled set, from points in
the photos' pixels (report/points_tested.Tested). The numbers are point_metrics.summary's, over the
labelled points only; the photos are drawn worst first, the labelled points in green and the
predicted ones in red, joined by the skeleton, so what the model gets wrong is seen at once.
"""

from __future__ import annotations

import base64
import html
import time
from pathlib import Path

import numpy as np

from tensorguess import point_metrics, strict_json
from tensorguess.atomic_write import write_atomically
from tensorguess.report import document, plots, point_drawing
from tensorguess.report.model import GENERATOR

REPORT_FILES = ("report.json", "report.html", "pck_curve.png")
WORST_SHOWN = 12  # photos drawn in report.html, the worst first
DRAWN_SIDE = 240  # each drawn photo's longer side, in pixels


def check_out_dir(out_dir: Path) -> None:
    """Fail before any work if writing a points report into `out_dir` would replace someone's file."""
    document.check_out_dir(out_dir, REPORT_FILES)


def console_line(found: dict, what: str = "Test") -> str:
    """The numbers in one line, the hardest points named; `what` opens it (Test, Evaluation)."""
    if found.get("mean_error_px") is None:
        return f"{what}: no labelled point to measure (N={found.get('n', 0)})"
    pck = found["pck"]
    hardest = ", ".join(point_metrics.hardest(found["per_point"])[:3])
    located = (f", locate IoU {found['locate_iou']:.2f}" if found.get("locate_iou") is not None else "")
    return (f"{what}: mean error {found['mean_error_px']:.2f} px ({found['mean_error_norm']:.3f} of the "
            f"points' box side), PCK@0.05 {pck['0.05']:.3f}, @0.1 {pck['0.1']:.3f}, @0.2 {pck['0.2']:.3f}, "
            f"AUC {found['auc']:.3f}{located} (N={found.get('n', 0)}); hardest: {hardest}")


def leak_line(report: dict) -> str | None:
    """One line on the photos the model trained on (an evaluation's `leaks`); None when unchecked."""
    leaks = report.get("leaks")
    if not leaks:
        return None
    if leaks["note"]:
        return f"Leaks: {leaks['note']}: not checked"
    if not leaks["identical"]:
        return "Leaks: none of these photos is a photo the model trained on (identical content checked)"
    return (f"Leaks: {leaks['identical']} of {report['n']} photos are photos the model trained on (identical "
            f"content); without them: mean error {_cell(leaks['mean_error_norm_without'], 3)} of the box "
            f"side, PCK@0.1 {_cell(leaks['pck_without']['0.1'], 3)} (N={leaks['n_without']})")


def instance_errors(tested) -> np.ndarray:
    """Each photo's mean normalised error over its labelled points (nan where none counts)."""
    errors = point_metrics.pixel_errors(tested.predicted, tested.truth, tested.visible)
    sides = point_metrics.instance_sides(tested.truth, tested.visible)
    normalised = errors / sides[:, None]
    counted = ~np.isnan(normalised)
    total = np.where(counted, normalised, 0).sum(axis=1)
    return np.where(counted.any(axis=1), total / np.maximum(counted.sum(axis=1), 1), np.nan)


def build(tested, source: str, extra: dict | None = None) -> dict:
    """report.json's content: the summary's numbers, `extra`'s fields (an evaluation's model, leaks,
    unreadable files and notes), and every photo's error, worst first."""
    per_photo = instance_errors(tested)
    order = np.argsort(np.where(np.isnan(per_photo), -1, per_photo))[::-1]
    return {
        "generator": GENERATOR,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "source": source,
        "kind": "points",
        **tested.summary,
        "names": list(tested.names),
        **(extra or {}),
        "photos": [{"file": str(tested.paths[i]), "mean_error_norm": _number(per_photo[i]),
                    "box": [float(v) for v in tested.boxes[i]]} for i in order],
    }


def _number(value: float) -> float | None:
    return None if value is None or np.isnan(value) else float(value)


def write(out_dir: Path, tested, skeleton, source: str = "the test split", extra: dict | None = None) -> dict:
    """report.json, pck_curve.png and report.html into `out_dir`; returns report.json's content.
    `skeleton`: the bones drawn, 0-based pairs in the model's point order (tested.names')."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    report = build(tested, source, extra)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(out_dir / "report.json", (strict_json.dumps(report, indent=1) + "\n").encode())
    write_atomically(out_dir / "pck_curve.png", pck_curve_png(tested))
    page = page_html(report, tested, [tuple(bone) for bone in skeleton])
    write_atomically(out_dir / "report.html", page.encode("utf-8", "backslashreplace"))
    return report


def pck_curve_png(tested) -> bytes:
    """PCK against the threshold (a share of the points' box side), 0 to 0.3."""
    errors = point_metrics.pixel_errors(tested.predicted, tested.truth, tested.visible)
    normalised = errors / point_metrics.instance_sides(tested.truth, tested.visible)[:, None]
    thresholds = np.linspace(0, 0.3, 61)
    values = [point_metrics.pck(normalised, t) or 0.0 for t in thresholds]
    figure = plots._figure(5, 3.4)
    axes = figure.subplots()
    axes.plot(thresholds, values, color="tab:blue")
    for t in point_metrics.PCK_THRESHOLDS:
        axes.axvline(t, color="grey", linewidth=0.6, linestyle=":")
    axes.set_xlabel("threshold (share of the points' box side)")
    axes.set_ylabel("PCK (share of points within it)")
    axes.set_ylim(0, 1.02)
    axes.grid(alpha=0.3)
    return plots._png(figure)


def drawn_photo(path: Path, truth: np.ndarray, predicted: np.ndarray, visible: np.ndarray,
                skeleton: list[tuple[int, int]]) -> str | None:
    """The photo with its labelled (green) and predicted (red) points and bones, as a data: URI."""
    from PIL import Image, ImageDraw

    from tensorguess.data.images import UnreadableImage, read_image

    try:
        image = Image.fromarray(read_image(path))
    except (UnreadableImage, OSError, ValueError):
        return None
    scale = DRAWN_SIDE / max(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    pen = ImageDraw.Draw(image)
    placed = np.isfinite(predicted).all(axis=1)
    point_drawing.draw_points(pen, truth, visible, skeleton, point_drawing.LABELLED, scale)
    point_drawing.draw_points(pen, predicted, placed, skeleton, point_drawing.PREDICTED, scale)
    return "data:image/png;base64," + base64.b64encode(point_drawing.png_bytes(image)).decode()


def page_html(report: dict, tested, skeleton: list[tuple[int, int]]) -> str:
    e = html.escape
    rows = "".join(f"<tr><td>{e(name)}</td><td>{_cell(item['mean_error_px'], 2)}</td>"
                   f"<td>{_cell(item['mean_error_norm'], 3)}</td><td>{_cell(item['pck']['0.1'], 3)}</td>"
                   f"<td>{item['points_counted']}</td></tr>"
                   for name in point_metrics.hardest(report["per_point"])
                   for item in [report["per_point"][name]])
    index = {str(p): i for i, p in enumerate(tested.paths)}
    figures = []
    for photo in report["photos"][:WORST_SHOWN]:
        i = index[photo["file"]]
        source = drawn_photo(tested.paths[i], tested.truth[i], tested.predicted[i], tested.visible[i],
                             skeleton)
        name = e(Path(photo["file"]).name)
        picture = f'<img src="{source}" alt="{name}">' if source else "(not readable now)"
        figures.append(f"<figure>{picture}<figcaption>{e(Path(photo['file']).name)}<br>error "
                       f"{_cell(photo['mean_error_norm'], 3)} of the box side</figcaption></figure>")
    pck = report["pck"]
    located = (f"<tr><td>locate stage: IoU of the crop found with the labelled points' crop</td>"
               f"<td>{_cell(report.get('locate_iou'), 3)}</td></tr>" if "locate_iou" in report else "")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta name="generator" content="{e(GENERATOR)}">',
        f"<title>tensor-guess points report: {e(report['source'])}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:70em}td,th{padding:2px 8px;text-align:right}"
        "td:first-child{text-align:left}figure{display:inline-block;margin:6px;font-size:80%}</style>",
        "</head><body>", "<h1>Points report</h1>",
        f"<p>{e(report['source'])}: {report['n']} photos, {report['points_counted']} labelled points; "
        f"{e(report['created'])}, {e(GENERATOR)}</p>",
        *(f"<p>{e(line)}</p>" for line in [*report.get("notes", []), leak_line(report)] if line),
        "<table>",
        f"<tr><td>mean error</td><td>{_cell(report['mean_error_px'], 2)} px</td></tr>",
        "<tr><td>mean error, as a share of the points' box side</td>"
        f"<td>{_cell(report['mean_error_norm'], 3)}</td></tr>",
        *(f"<tr><td>PCK at {t} of the box side</td><td>{_cell(pck[t], 3)}</td></tr>" for t in pck),
        f"<tr><td>area under the PCK curve (0 to 0.2)</td><td>{_cell(report['auc'], 3)}</td></tr>",
        located, "</table>",
        '<h2>PCK curve</h2><img src="pck_curve.png" alt="PCK curve">',
        "<h2>Each point, the hardest first</h2>",
        "<table><tr><th>point</th><th>error px</th><th>share of side</th><th>PCK@0.1</th>"
        "<th>labelled</th></tr>",
        rows, "</table>",
        f"<h2>The worst {len(figures)} photos</h2><p>green: labelled, red: predicted</p>", *figures,
        "</body></html>",
    ]) + "\n"


def _cell(value, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"

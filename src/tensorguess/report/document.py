"""The evaluation report: report.json, two figures and report.html, and the console summary.

A report folder may already exist: tensor-guess replaces its own report files in
it (it recognises them by the `tensor-guess` mark each one carries) and never
deletes anything. A file of the same name that it did not write stops the run
before anything is written. Thumbnails are embedded in report.html, so the folder
holds only the files listed in REPORT_FILES and the page reads offline, anywhere.
"""

from __future__ import annotations

import base64
import html
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tensorguess import __version__, metrics, strict_json
from tensorguess.atomic_write import write_atomically
from tensorguess.data.images import Skipped
from tensorguess.errors import TensorGuessError
from tensorguess.report import plots

GENERATOR = f"tensor-guess {__version__}"
REPORT_FILES = ("report.json", "report.html", "confusion_matrix.png", "reliability.png",
                "training_curves.png")
WORST_SHOWN = 24
THUMBNAIL = 160
MANY_CLASSES = 10  # past this many classes, per-class tables list the worst recall first
NEAR_GROUPS_SHOWN = 6  # near-duplicate groups drawn in report.html, and photos drawn per group
NEAR_PHOTOS_SHOWN = 6


class ReportError(TensorGuessError):
    """The report cannot be written where asked; the message says why."""


@dataclass
class Evaluation:
    """What a report is made from: one classifier's scores on labelled images."""

    labels: list[str]
    truth: np.ndarray  # [n] index of each image's true label
    probabilities: np.ndarray  # [n, labels] the classifier's scores, as it outputs them
    paths: list[Path]  # each scored image, to read thumbnails from
    root: Path  # the labelled folder; files are named relative to it
    source: str  # in words: what was evaluated
    classifier: str
    unreadable: list[Skipped] = field(default_factory=list)
    # Scores before temperature scaling; None when there is no temperature (or it is 1).
    uncalibrated: np.ndarray | None = None
    temperature: float | None = None
    calibration_fit: dict | None = None  # how the temperature was chosen, at training
    leaks: object | None = None  # leaks.Leaks: which images the classifier trained on (evaluate)

    def name(self, path: Path) -> str:
        path = Path(path)
        return path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else str(path)


def build(evaluation: Evaluation) -> dict:
    """The content of report.json."""
    probabilities = np.asarray(evaluation.probabilities, np.float64).reshape(-1, len(evaluation.labels))
    truth = np.asarray(evaluation.truth, np.int64)
    numbers = metrics.summary(probabilities, truth, evaluation.labels)
    predicted = probabilities.argmax(axis=1) if len(truth) else truth
    wrong = [
        {"file": evaluation.name(path), "true": evaluation.labels[t], "predicted": evaluation.labels[p],
         "score": round(float(probabilities[i, p]), 6)}
        for i, (path, t, p) in enumerate(zip(evaluation.paths, truth, predicted, strict=True)) if t != p
    ]
    wrong.sort(key=lambda item: -item["score"])  # the most confident mistakes first
    return {
        "generator": GENERATOR,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": evaluation.source,
        "images": str(evaluation.root),
        "classifier": evaluation.classifier,
        **numbers,
        "calibration": _calibration(evaluation, numbers),
        "misclassified": wrong,
        "unreadable_files": [{"file": evaluation.name(s.path), "reason": s.reason}
                             for s in evaluation.unreadable],
        **({"leaks": _leaks(evaluation, probabilities, truth)} if evaluation.leaks is not None else {}),
    }


def _leaks(evaluation: Evaluation, probabilities: np.ndarray, truth: np.ndarray) -> dict:
    """The images the classifier has seen (or near copies), and the accuracy without them."""
    found = evaluation.leaks
    clean = np.array([kind is None for kind in found.kinds], dtype=bool)
    predicted = probabilities.argmax(axis=1) if len(truth) else truth
    return {
        "identical": found.count("identical"),
        "near_identical": found.count("near-identical"),
        "threshold": found.threshold,
        "checked_features": found.checked_features,
        "note": found.note or None,
        "files": [{"file": evaluation.name(path), "kind": kind}
                  for path, kind in zip(evaluation.paths, found.kinds, strict=True) if kind],
        "n_without": int(clean.sum()),
        "accuracy_without": float(np.mean(predicted[clean] == truth[clean])) if clean.any() else None,
    }


def _calibration(evaluation: Evaluation, numbers: dict) -> dict | None:
    if evaluation.temperature is None:
        return None  # a graph from another tool: its temperature, if any, is unknown
    before = evaluation.uncalibrated if evaluation.uncalibrated is not None else evaluation.probabilities
    n = len(evaluation.truth)
    return {
        "temperature": evaluation.temperature,
        "ece_before": metrics.expected_calibration_error(before, evaluation.truth) if n else None,
        "ece_after": numbers["ece"],
        "brier_before": metrics.brier_score(before, evaluation.truth) if n else None,
        "brier_after": numbers["brier"],
        **({"fit": evaluation.calibration_fit} if evaluation.calibration_fit else {}),
    }


# Near the start of each report file tensor-guess writes (JSON, HTML, PNG tEXt chunk).
MARKS = (b'"generator": "tensor-guess', b'<meta name="generator" content="tensor-guess',
         b"Software\x00" + plots.SOFTWARE.encode())


def is_ours(path: Path) -> bool:
    """Whether `path` is a report file tensor-guess wrote, and so may be replaced."""
    with open(path, "rb") as handle:
        head = handle.read(8192)
    return any(mark in head for mark in MARKS)


def check_out_dir(out_dir: Path) -> None:
    """Fail before any work if writing the report into `out_dir` would replace someone's file."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportError(f"{out_dir} exists and is not a folder; choose another report folder")
    try:
        foreign = [name for name in REPORT_FILES if (out_dir / name).exists()
                   and not ((out_dir / name).is_file() and is_ours(out_dir / name))]
    except OSError as error:
        raise ReportError(f"cannot read {error.filename} ({error.strerror}); choose another report folder"
                          ) from error
    if foreign:
        raise ReportError(
            f"{out_dir} already holds {', '.join(foreign)} that tensor-guess did not write; "
            "choose another report folder (nothing was changed)"
        )


def write(out_dir: Path, evaluation: Evaluation, train_log: dict | None = None,
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
    checks = (train_log or {}).get("data_checks")
    if checks:
        shown += data_check_photos(checks)
    thumbnails = _thumbnails(evaluation, shown)
    page = render_html(report, list(figures), thumbnails, train_log)
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


def _number(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _percent(value) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def table_order(per_class: dict[str, dict]) -> list[str]:
    """The labels in the order per-class tables list them.

    Up to MANY_CLASSES, in label order; past it, the worst recall first, because a long
    table read top-down hides a class that is never recognised. Ties keep label order;
    classes absent from the images (no recall to speak of) go last.
    """
    labels = list(per_class)
    if len(labels) <= MANY_CLASSES:
        return labels
    return sorted(labels, key=lambda label: (per_class[label]["support"] == 0, per_class[label]["recall"]))


def _quoted(labels: list[str]) -> str:
    return ", ".join(repr(label) for label in labels)


def console_lines(report: dict) -> list[str]:
    """The compact summary printed after the accuracy line: averages, calibration, per class."""
    lines = [f"Macro F1 = {_number(report['macro_f1'])}, weighted F1 = {_number(report['weighted_f1'])}, "
             f"ECE = {_number(report['ece'])}, Brier = {_number(report['brier'])}"]
    if report.get("top5_accuracy") is not None:
        lines.append(f"Top-1 accuracy = {_percent(report['accuracy'])}, "
                     f"top-5 accuracy = {_percent(report['top5_accuracy'])}")
    calibration = report.get("calibration")
    if calibration and calibration["temperature"] != 1.0:
        lines.append(f"Temperature {calibration['temperature']:.3f}: ECE {_number(calibration['ece_before'])}"
                     f" -> {_number(calibration['ece_after'])} on these images")
    order = table_order(report["per_class"])
    if order != list(report["per_class"]):
        lines.append(f"Per class, worst recall first ({len(order)} classes):")
    width = max([len("label"), *(len(label) for label in report["per_class"])])
    width = min(width, 32)
    lines.append(f"{'label':<{width}}  precision  recall     f1  support")
    for label in order:
        row = report["per_class"][label]
        lines.append(f"{label[:width]:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  "
                     f"{row['f1']:5.3f}  {row['support']:7d}")
    never = report.get("never_predicted") or []
    if never:
        lines.append(f"Never predicted: {_quoted(never)}: present in these images, but no image was "
                     f"guessed as {'it' if len(never) == 1 else 'them'}")
    lines += leak_lines(report)
    return lines


def leak_lines(report: dict) -> list[str]:
    leaks = report.get("leaks")
    if not leaks:
        return []
    seen = leaks["identical"] + leaks["near_identical"]
    lines = []
    if seen:
        lines.append(f"Leaks: {seen} of {report['n']} images are photos the classifier trained on "
                     f"({leaks['identical']} identical, {leaks['near_identical']} near-identical at "
                     f"cosine >= {leaks['threshold']:.3f}); accuracy without them = "
                     f"{_percent(leaks['accuracy_without'])} (N={leaks['n_without']})")
    else:
        lines.append("Leaks: none of these images is a photo the classifier trained on"
                     + ("" if leaks["checked_features"] else " (identical content checked)"))
    if leaks.get("note"):
        lines.append(f"Leaks: {leaks['note']}")
    return lines


STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em;
       color: #222; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.2em; margin-top: 1.8em; }
h3 { font-size: 1.05em; margin-top: 1.2em; }
.meta { color: #666; font-size: .9em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { padding: .25em .7em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.diag { font-weight: bold; } td.off { background: #fde8e8; }
.big td { font-size: 1.1em; }
img.figure { max-width: 100%; height: auto; border: 1px solid #eee; }
.mistakes { display: flex; flex-wrap: wrap; gap: 12px; }
figure.mistake { margin: 0; width: 170px; font-size: .8em; word-wrap: break-word; }
figure.mistake img { max-width: 160px; max-height: 160px; display: block; }
.low { color: #b00020; }
dl { font-size: .9em; } dt { font-weight: bold; } dd { margin: 0 0 .5em 1.2em; }
"""


def render_html(report: dict, figures: list[str], thumbnails: dict[str, str],
                train_log: dict | None = None) -> str:
    e = html.escape
    labels = report["confusion_matrix"]["labels"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta name="generator" content="{e(GENERATOR)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>tensor-guess report: {e(report['source'])}</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Evaluation report</h1>",
        f'<p class="meta">{e(report["source"])}<br>images: {e(report["images"])}<br>'
        f'classifier: {e(report["classifier"])}<br>{e(report["created"])}, {e(GENERATOR)}</p>',
        "<h2>Summary</h2>",
        '<table class="big">',
        f"<tr><td>images scored (N)</td><td>{report['n']}</td></tr>",
        f"<tr><td>accuracy</td><td>{_percent(report['accuracy'])}</td></tr>",
        *([f"<tr><td>top-5 accuracy</td><td>{_percent(report['top5_accuracy'])}</td></tr>"]
          if report.get("top5_accuracy") is not None else []),
        f"<tr><td>macro F1</td><td>{_number(report['macro_f1'])}</td></tr>",
        f"<tr><td>weighted F1</td><td>{_number(report['weighted_f1'])}</td></tr>",
        f"<tr><td>expected calibration error (ECE)</td><td>{_number(report['ece'])}</td></tr>",
        f"<tr><td>Brier score</td><td>{_number(report['brier'])}</td></tr>",
        f"<tr><td>unreadable files</td><td>{len(report['unreadable_files'])}</td></tr>",
        "</table>",
        *[f"<p>{e(line)}</p>" for line in leak_lines(report)],
    ]
    calibration = report.get("calibration")
    if calibration:
        fit = calibration.get("fit") or {}
        parts += [
            "<h2>Calibration</h2>",
            f"<p>Temperature T = {calibration['temperature']:.4g} "
            + (f"({e(fit['reason'])} on {fit['validation_n']} validation images). " if fit else ". ")
            + "The scores are softmax(logits / T).</p>",
            "<table><tr><th></th><th>before (T = 1)</th><th>after</th></tr>",
            f"<tr><td>ECE</td><td>{_number(calibration['ece_before'])}</td>"
            f"<td>{_number(calibration['ece_after'])}</td></tr>",
            f"<tr><td>Brier</td><td>{_number(calibration['brier_before'])}</td>"
            f"<td>{_number(calibration['brier_after'])}</td></tr></table>",
        ]
    from tensorguess.report.formats import html_lines  # export.sh's accuracy per format

    parts += html_lines(report.get("formats"))
    parts.append("<h2>Per class</h2>")
    never = report.get("never_predicted") or []
    if never:
        parts.append(f'<p class="low" id="never_predicted">Never predicted: '
                     f'{e(_quoted(never))}: present in these images, but no image was guessed as '
                     f'{"it" if len(never) == 1 else "them"}.</p>')
    order = table_order(report["per_class"])
    if order != list(report["per_class"]):
        parts.append(f"<p>{len(order)} classes, the worst recall first.</p>")
    parts.append("<table><tr><th>label</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>")
    for label in order:
        row = report["per_class"][label]
        weak = ' class="low"' if row["support"] and row["recall"] < 0.5 else ""
        parts.append(f"<tr{weak}><td>{e(label)}</td><td>{row['precision']:.3f}</td>"
                     f"<td>{row['recall']:.3f}</td><td>{row['f1']:.3f}</td><td>{row['support']}</td></tr>")
    parts.append("</table>")
    parts += ["<h2>Confusion matrix</h2>",
              '<p>Rows are the true label, columns the predicted one; colour is the share of the '
              'true label.</p>',
              '<img class="figure" id="confusion_matrix" src="confusion_matrix.png" '
              'alt="confusion matrix">']
    if len(labels) <= 30:
        parts.append(_confusion_table(labels, report["confusion_matrix"]["matrix"]))
    parts += ["<h2>Reliability</h2>",
              "<p>For a calibrated classifier, images given a top score of 0.8 are right 80% of the "
              "time: the bars follow the diagonal.</p>",
              '<img class="figure" id="reliability" src="reliability.png" alt="reliability diagram">']
    if "training_curves.png" in figures:
        parts += ["<h2>Training</h2>",
                  '<img class="figure" id="training_curves" src="training_curves.png" '
                  'alt="training curves">']
        if train_log:
            sizes = train_log.get("split_sizes", {})
            parts.append(f"<p>{len(train_log.get('steps', []))} evaluations; "
                         + ", ".join(f"{count} {e(name)}" for name, count in sizes.items())
                         + " images.</p>")
            fine = train_log.get("fine_tune")
            if fine:  # head/fine_tune.py: what of the module was trained, and how
                chosen = next((h for h in fine["history"] if h["epoch"] == fine["chosen_epoch"]), None)
                kept = (f"; kept epoch {fine['chosen_epoch']} (validation accuracy "
                        f"{chosen['validation_accuracy'] * 100:.1f}%)"
                        if chosen and chosen["validation_accuracy"] is not None else "")
                parts.append(f"<p>Fine-tuning: {len(fine['layers'])} layer(s) of the module "
                             f"({e(fine['layers'][0])} to {e(fine['layers'][-1])}, {fine['weights']:,} "
                             f"weights) with the head, Adam {fine['learning_rate']:g}, {fine['epochs']} "
                             f"epoch(s) on photos distorted on the fly ({e(fine['distortions'])})"
                             f"{kept}; {fine['seconds']:.0f} s.</p>")
    wrong = report["misclassified"]
    parts.append(f"<h2>Mistakes ({len(wrong)})</h2>")
    if wrong:
        shown = wrong[:WORST_SHOWN]
        parts.append(f"<p>The {len(shown)} most confident mistakes; report.json lists them all.</p>")
        parts.append('<div class="mistakes">')
        for item in shown:
            parts.append(_figure(item["file"], thumbnails, f'true: <b>{e(item["true"])}</b><br>guessed: '
                                 f'<b>{e(item["predicted"])}</b> ({item["score"]:.3f})'))
        parts.append("</div>")
    else:
        parts.append("<p>None.</p>")
    checks = (train_log or {}).get("data_checks")
    if checks:
        parts += _data_checks_html(checks, thumbnails)
    if report["unreadable_files"]:
        parts.append(f"<h2>Unreadable files ({len(report['unreadable_files'])})</h2><ul>")
        parts += [f"<li>{e(item['file'])}: {e(item['reason'])}</li>" for item in report["unreadable_files"]]
        parts.append("</ul>")
    parts += [
        "<h2>What the numbers mean</h2><dl>",
        "<dt>precision, recall, F1</dt><dd>Of the images guessed as a label, the share that are it; "
        "of the images that are it, the share found; their harmonic mean.</dd>",
        "<dt>macro F1, weighted F1</dt><dd>The mean F1 over labels, each label counting the same; "
        "and weighted by each label's number of images. A classifier that ignores a small class has "
        "a good accuracy and a poor macro F1.</dd>",
        "<dt>ECE</dt><dd>Expected calibration error: the mean gap between the top score and the "
        "share of right answers, over 15 equal bins of the top score (0 is perfect).</dd>",
        "<dt>Brier</dt><dd>Mean squared distance between the scores and the one-hot truth "
        "(0 best, 2 worst).</dd></dl>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _figure(name: str, thumbnails: dict[str, str], caption: str = "") -> str:
    """One photo with its name and `caption` (HTML), or a note where it cannot be read now."""
    e = html.escape
    source = thumbnails.get(name)
    picture = (f'<img class="thumb" src="{source}" alt="{e(name)}">' if source
               else "<p>(not readable now)</p>")
    return (f'<figure class="mistake">{picture}<figcaption>{e(name)}'
            f'{"<br>" + caption if caption else ""}</figcaption></figure>')


def _data_checks_html(checks: dict, thumbnails: dict[str, str]) -> list[str]:
    """The "Data checks" section: the training log's `data_checks`, photos drawn where readable."""
    e = html.escape
    exact = checks.get("exact_duplicates_across_labels") or []
    groups = checks.get("near_duplicate_groups") or []
    suspects = checks.get("suspected_label_errors") or []
    notes = checks.get("split_notes") or []
    threshold = checks.get("near_duplicate_threshold")
    largest = max((len(group) for group in groups), default=0)
    similar = f" (similarity threshold {threshold:g})" if isinstance(threshold, int | float) else ""
    parts = ['<h2 id="data_checks">Data checks</h2>',
             "<p>What the training run found in the photos themselves, before any classifier "
             "could be blamed. Files are named relative to the image folder.</p>",
             '<table class="counts">',
             f"<tr><td>identical photos under different labels</td><td>{len(exact)}</td></tr>",
             f"<tr><td>groups of near-duplicates{e(similar)}</td><td>{len(groups)}</td></tr>",
             f"<tr><td>photos in the largest group</td><td>{largest}</td></tr>",
             f"<tr><td>suspected label errors</td><td>{len(suspects)}</td></tr>",
             "</table>"]
    if notes:
        parts.append("<h3>Split</h3><ul>" + "".join(f"<li>{e(str(note))}</li>" for note in notes) + "</ul>")
    if exact:
        parts.append(f"<h3>Identical photos under different labels ({len(exact)})</h3>"
                     "<p>The same file content filed under more than one label: at most one of them "
                     "is right.</p><ul>")
        for copies in exact:
            parts.append("<li>" + ", ".join(f"{e(copy['file'])} (<b>{e(copy['label'])}</b>)"
                                            for copy in copies) + "</li>")
        parts.append("</ul>")
    if groups:
        shown = groups[:NEAR_GROUPS_SHOWN]
        drawn = (f"The first {len(shown)} groups are drawn; train_log.json lists them all."
                 if len(groups) > len(shown) else "")
        parts.append(f"<h3>Near-duplicates ({len(groups)} groups, the largest of {largest})</h3>"
                     f"<p>Photos so alike that a classifier sees them as one; split between training "
                     f"and test, they flatter the test accuracy. {drawn}</p>")
        for number, group in enumerate(shown, 1):
            more = len(group) - NEAR_PHOTOS_SHOWN
            parts.append(f'<p>Group {number} ({len(group)} photos{f", {more} not drawn" if more > 0 else ""})'
                         '</p><div class="mistakes">')
            parts += [_figure(name, thumbnails) for name in group[:NEAR_PHOTOS_SHOWN]]
            parts.append("</div>")
    if suspects:
        shown = suspects[:WORST_SHOWN]
        which = f"The {len(shown)} most suspicious" if len(suspects) > len(shown) else "Most suspicious first"
        parts.append(f"<h3>Suspected label errors ({len(suspects)})</h3>"
                     f"<p>{which}: photos whose folder disagrees confidently with "
                     "a classifier that never saw them (confident learning on out-of-fold scores). "
                     "The score is that classifier's probability for the suggested label.</p>"
                     '<div class="mistakes">')
        for item in shown:
            parts.append(_figure(item["file"], thumbnails, f'given: <b>{e(item["given"])}</b><br>suggested: '
                                 f'<b>{e(item["suggested"])}</b> ({item["score"]:.3f})'))
        parts.append("</div>")
    return parts


def _confusion_table(labels: list[str], matrix: list[list[int]]) -> str:
    e = html.escape
    rows = ["<table><tr><th>true \\ predicted</th>" + "".join(f"<th>{e(lab)}</th>" for lab in labels)
            + "</tr>"]
    for i, label in enumerate(labels):
        cells = "".join(
            f'<td class="{"diag" if i == j else ("off" if count else "")}">{count}</td>'
            for j, count in enumerate(matrix[i]))
        rows.append(f"<tr><td>{e(label)}</td>{cells}</tr>")
    return "\n".join(rows) + "</table>"

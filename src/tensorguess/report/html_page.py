"""report.html, built section by section from the report's Page (model.py)."""

from __future__ import annotations

from html import escape as e

from tensorguess.metrics import JUDGE_MIN_PHOTOS
from tensorguess.model_dir import TrainLog
from tensorguess.report.console import leak_lines, number, percent, quoted, table_order
from tensorguess.report.model import GENERATOR, NEAR_GROUPS_SHOWN, NEAR_PHOTOS_SHOWN, WORST_SHOWN, Page

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
                train_log: TrainLog | None = None) -> str:
    return page_html(Page.of(report, figures, thumbnails, train_log))


def page_html(page: Page) -> str:
    sections = (head, summary, calibration, formats, per_class, confusion, reliability, training,
                mistakes, data_checks, unreadable, glossary)
    parts = [line for section in sections for line in section(page)]
    return "\n".join([*parts, "</body></html>"]) + "\n"


def head(page: Page) -> list[str]:
    report = page.report
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta name="generator" content="{e(GENERATOR)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>tensor-guess report: {e(report['source'])}</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Evaluation report</h1>",
        f'<p class="meta">{e(report["source"])}<br>images: {e(report["images"])}<br>'
        f'classifier: {e(report["classifier"])}<br>{e(report["created"])}, {e(GENERATOR)}</p>',
    ]


def summary(page: Page) -> list[str]:
    report = page.report
    return [
        "<h2>Summary</h2>",
        '<table class="big">',
        f"<tr><td>images scored (N)</td><td>{report['n']}</td></tr>",
        f"<tr><td>accuracy</td><td>{percent(report['accuracy'])}</td></tr>",
        *([f"<tr><td>top-5 accuracy</td><td>{percent(report['top5_accuracy'])}</td></tr>"]
          if report.get("top5_accuracy") is not None else []),
        f"<tr><td>macro F1</td><td>{number(report['macro_f1'])}</td></tr>",
        f"<tr><td>weighted F1</td><td>{number(report['weighted_f1'])}</td></tr>",
        f"<tr><td>expected calibration error (ECE)</td><td>{number(report['ece'])}</td></tr>",
        f"<tr><td>Brier score</td><td>{number(report['brier'])}</td></tr>",
        f"<tr><td>unreadable files</td><td>{len(report['unreadable_files'])}</td></tr>",
        "</table>",
        *[f"<p>{e(line)}</p>" for line in leak_lines(report)],
    ]


def calibration(page: Page) -> list[str]:
    found = page.report.get("calibration")
    if not found:
        return []
    fit = found.get("fit") or {}
    return [
        "<h2>Calibration</h2>",
        f"<p>Temperature T = {found['temperature']:.4g} "
        + (f"({e(fit['reason'])} on {fit['validation_n']} validation images). " if fit else ". ")
        + "The scores are softmax(logits / T).</p>",
        "<table><tr><th></th><th>before (T = 1)</th><th>after</th></tr>",
        f"<tr><td>ECE</td><td>{number(found['ece_before'])}</td>"
        f"<td>{number(found['ece_after'])}</td></tr>",
        f"<tr><td>Brier</td><td>{number(found['brier_before'])}</td>"
        f"<td>{number(found['brier_after'])}</td></tr></table>",
    ]


def formats(page: Page) -> list[str]:
    from tensorguess.report.formats import html_lines  # export.sh's accuracy per format

    return html_lines(page.report.get("formats"))


def per_class(page: Page) -> list[str]:
    report = page.report
    parts = ["<h2>Per class</h2>"]
    never = report.get("never_predicted") or []
    if never:
        parts.append(f'<p class="low" id="never_predicted">Never predicted: '
                     f'{e(quoted(never))}: present in these images, but no image was guessed as '
                     f'{"it" if len(never) == 1 else "them"}.</p>')
    order = table_order(report["per_class"])
    if order != list(report["per_class"]):
        parts.append(f"<p>{len(order)} classes, the worst recall first.</p>")
    intervals = report.get("recall_intervals") or {}
    parts.append("<table><tr><th>label</th><th>precision</th><th>recall</th><th>F1</th><th>support</th>"
                 "<th>recall's 95% interval</th></tr>")
    for label in order:
        row = report["per_class"][label]
        weak = ' class="low"' if row["support"] and row["recall"] < 0.5 else ""
        band = intervals.get(label) or {"low": None}
        spread = "" if band["low"] is None else f"{band['low']:.3f}-{band['high']:.3f}"
        parts.append(f"<tr{weak}><td>{e(label)}</td><td>{row['precision']:.3f}</td>"
                     f"<td>{row['recall']:.3f}</td><td>{row['f1']:.3f}</td><td>{row['support']}</td>"
                     f"<td>{spread}</td></tr>")
    parts.append("</table>")
    thin = report.get("too_few_to_judge") or []
    if thin:
        parts.append(f'<p class="low" id="too_few_to_judge">Too few photos to judge: {e(quoted(thin))} '
                     f"(under {JUDGE_MIN_PHOTOS} each): their recall could be anywhere in its interval; "
                     "more photos of them would say.</p>")
    return parts


def confusion(page: Page) -> list[str]:
    labels = page.report["confusion_matrix"]["labels"]
    parts = ["<h2>Confusion matrix</h2>",
             '<p>Rows are the true label, columns the predicted one; colour is the share of the '
             'true label.</p>',
             '<img class="figure" id="confusion_matrix" src="confusion_matrix.png" '
             'alt="confusion matrix">']
    if len(labels) <= 30:
        parts.append(confusion_table(labels, page.report["confusion_matrix"]["matrix"]))
    return parts


def confusion_table(labels: list[str], matrix: list[list[int]]) -> str:
    rows = ["<table><tr><th>true \\ predicted</th>" + "".join(f"<th>{e(lab)}</th>" for lab in labels)
            + "</tr>"]
    for i, label in enumerate(labels):
        cells = "".join(
            f'<td class="{"diag" if i == j else ("off" if count else "")}">{count}</td>'
            for j, count in enumerate(matrix[i]))
        rows.append(f"<tr><td>{e(label)}</td>{cells}</tr>")
    return "\n".join(rows) + "</table>"


def reliability(page: Page) -> list[str]:
    return ["<h2>Reliability</h2>",
            "<p>For a calibrated classifier, images given a top score of 0.8 are right 80% of the "
            "time: the bars follow the diagonal.</p>",
            '<img class="figure" id="reliability" src="reliability.png" alt="reliability diagram">']


def training(page: Page) -> list[str]:
    if "training_curves.png" not in page.figures:
        return []
    parts = ["<h2>Training</h2>",
             '<img class="figure" id="training_curves" src="training_curves.png" alt="training curves">']
    run = page.training
    if run:
        parts.append(f"<p>{run.evaluations} evaluations; "
                     + ", ".join(f"{count} {e(name)}" for name, count in run.split_sizes.items())
                     + " images.</p>")
        if run.recipe_line:
            parts.append(f"<p>{e(run.recipe_line)}</p>")
        fine = run.fine_tuning
        if fine and fine.kept == "head alone":  # head/fine_tune_choice.py: it lost on validation
            parts.append(f"<p>Fine-tuning was tried and not kept ({e(fine.not_kept_because or '')}): the "
                         "model is the head trained on the bottlenecks alone.</p>")
        elif fine:  # head/fine_tune.py: what of the module was trained, and how
            kept = (f"; kept epoch {fine.chosen_epoch} (validation accuracy "
                    f"{fine.chosen_validation_accuracy * 100:.1f}%)"
                    if fine.chosen_validation_accuracy is not None else "")
            parts.append(f"<p>Fine-tuning: {len(fine.layers)} layer(s) of the module "
                         f"({e(fine.layers[0])} to {e(fine.layers[-1])}, {fine.weights:,} "
                         f"weights) with the head, Adam {fine.learning_rate:g}, {fine.epochs} "
                         f"epoch(s) on photos distorted on the fly ({e(fine.distortions)})"
                         f"{kept}; {fine.seconds:.0f} s.</p>")
    return parts


def mistakes(page: Page) -> list[str]:
    wrong = page.report["misclassified"]
    parts = [f"<h2>Mistakes ({len(wrong)})</h2>"]
    if not wrong:
        return [*parts, "<p>None.</p>"]
    shown = wrong[:WORST_SHOWN]
    parts.append(f"<p>The {len(shown)} most confident mistakes; report.json lists them all.</p>")
    parts.append('<div class="mistakes">')
    for item in shown:
        parts.append(figure(item["file"], page.thumbnails, f'true: <b>{e(item["true"])}</b><br>guessed: '
                            f'<b>{e(item["predicted"])}</b> ({item["score"]:.3f})'))
    parts.append("</div>")
    return parts


def unreadable(page: Page) -> list[str]:
    files = page.report["unreadable_files"]
    if not files:
        return []
    return [f"<h2>Unreadable files ({len(files)})</h2><ul>",
            *[f"<li>{e(item['file'])}: {e(item['reason'])}</li>" for item in files],
            "</ul>"]


def glossary(page: Page) -> list[str]:
    return [
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
    ]


def figure(name: str, thumbnails: dict[str, str], caption: str = "") -> str:
    """One photo with its name and `caption` (HTML), or a note where it cannot be read now."""
    source = thumbnails.get(name)
    picture = (f'<img class="thumb" src="{source}" alt="{e(name)}">' if source
               else "<p>(not readable now)</p>")
    return (f'<figure class="mistake">{picture}<figcaption>{e(name)}'
            f'{"<br>" + caption if caption else ""}</figcaption></figure>')


def data_checks(page: Page) -> list[str]:
    """The "Data checks" section: the training log's `data_checks`, photos drawn where readable."""
    checks = page.data_checks
    if not checks:
        return []
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
    return (parts + exact_copies(exact) + near_duplicates(groups, largest, page.thumbnails)
            + suspected_errors(suspects, page.thumbnails))


def exact_copies(exact: list[list[dict]]) -> list[str]:
    if not exact:
        return []
    parts = [f"<h3>Identical photos under different labels ({len(exact)})</h3>"
             "<p>The same file content filed under more than one label: at most one of them "
             "is right.</p><ul>"]
    for copies in exact:
        parts.append("<li>" + ", ".join(f"{e(copy['file'])} (<b>{e(copy['label'])}</b>)"
                                        for copy in copies) + "</li>")
    parts.append("</ul>")
    return parts


def near_duplicates(groups: list[list[str]], largest: int, thumbnails: dict[str, str]) -> list[str]:
    if not groups:
        return []
    shown = groups[:NEAR_GROUPS_SHOWN]
    drawn = (f"The first {len(shown)} groups are drawn; train_log.json lists them all."
             if len(groups) > len(shown) else "")
    parts = [f"<h3>Near-duplicates ({len(groups)} groups, the largest of {largest})</h3>"
             f"<p>Photos so alike that a classifier sees them as one; split between training "
             f"and test, they flatter the test accuracy. {drawn}</p>"]
    for count, group in enumerate(shown, 1):
        more = len(group) - NEAR_PHOTOS_SHOWN
        parts.append(f'<p>Group {count} ({len(group)} photos{f", {more} not drawn" if more > 0 else ""})'
                     '</p><div class="mistakes">')
        parts += [figure(name, thumbnails) for name in group[:NEAR_PHOTOS_SHOWN]]
        parts.append("</div>")
    return parts


def suspected_errors(suspects: list[dict], thumbnails: dict[str, str]) -> list[str]:
    if not suspects:
        return []
    shown = suspects[:WORST_SHOWN]
    which = f"The {len(shown)} most suspicious" if len(suspects) > len(shown) else "Most suspicious first"
    parts = [f"<h3>Suspected label errors ({len(suspects)})</h3>"
             f"<p>{which}: photos whose folder disagrees confidently with "
             "a classifier that never saw them (confident learning on out-of-fold scores). "
             "The score is that classifier's probability for the suggested label.</p>"
             '<div class="mistakes">']
    for item in shown:
        parts.append(figure(item["file"], thumbnails, f'given: <b>{e(item["given"])}</b><br>suggested: '
                            f'<b>{e(item["suggested"])}</b> ({item["score"]:.3f})'))
    parts.append("</div>")
    return parts

"""The report in the console: the compact summary printed after the accuracy line."""

from __future__ import annotations

from tensorguess.report.model import MANY_CLASSES


def number(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def percent(value) -> str:
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


def quoted(labels: list[str]) -> str:
    return ", ".join(repr(label) for label in labels)


def console_lines(report: dict) -> list[str]:
    """The compact summary printed after the accuracy line: averages, calibration, per class."""
    lines = [f"Macro F1 = {number(report['macro_f1'])}, weighted F1 = {number(report['weighted_f1'])}, "
             f"ECE = {number(report['ece'])}, Brier = {number(report['brier'])}"]
    if report.get("top5_accuracy") is not None:
        lines.append(f"Top-1 accuracy = {percent(report['accuracy'])}, "
                     f"top-5 accuracy = {percent(report['top5_accuracy'])}")
    calibration = report.get("calibration")
    if calibration and calibration["temperature"] != 1.0:
        lines.append(f"Temperature {calibration['temperature']:.3f}: ECE {number(calibration['ece_before'])}"
                     f" -> {number(calibration['ece_after'])} on these images")
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
        lines.append(f"Never predicted: {quoted(never)}: present in these images, but no image was "
                     f"guessed as {'it' if len(never) == 1 else 'them'}")
    lines += thin_class_lines(report)
    lines += leak_lines(report)
    return lines


def interval(row: dict) -> str:
    """'recall 0.667, 95% interval 0.208-0.939' of one of report.json's recall_intervals."""
    if row["low"] is None:
        return "no photo of it"
    return (f"recall {row['hits'] / row['support']:.3f}, 95% interval "
            f"{row['low']:.3f}-{row['high']:.3f}")


def thin_class_lines(report: dict) -> list[str]:
    """The classes with too few photos here for their recall to mean much (metrics.JUDGE_MIN_PHOTOS)."""
    thin = report.get("too_few_to_judge") or []
    intervals = report.get("recall_intervals") or {}
    if not thin:
        return []
    listed = "; ".join(f"{label!r}: {intervals[label]['support']} photo(s), {interval(intervals[label])}"
                       for label in thin)
    return [f"Too few photos to judge: {listed}. Their recall could be anywhere in that interval; "
            "more photos of them would say"]


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
                     f"{percent(leaks['accuracy_without'])} (N={leaks['n_without']})")
    else:
        lines.append("Leaks: none of these images is a photo the classifier trained on"
                     + ("" if leaks["checked_features"] else " (identical content checked)"))
    if leaks.get("note"):
        lines.append(f"Leaks: {leaks['note']}")
    return lines

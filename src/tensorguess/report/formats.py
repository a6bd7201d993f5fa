"""Accuracy per format: each exported format's test-split accuracy, macro F1 and top-1 agreement
with the .pb, flagged loudly under AGREEMENT_FLOOR (Edge Impulse's int8-beside-float32 view)."""

from __future__ import annotations

import html

import numpy as np

from tensorguess import metrics

AGREEMENT_FLOOR = 0.98  # fewer test photos than this share with the .pb's top label: flagged


def row(name: str, file: str, probabilities: np.ndarray, reference: np.ndarray, truth: np.ndarray,
        labels: list[str], seconds: float | None = None) -> dict:
    """One format's line of the table; `reference` is the .pb's scores of the same photos."""
    numbers = metrics.summary(probabilities, truth, labels)
    n = len(truth)
    agreement = float(np.mean(probabilities.argmax(1) == reference.argmax(1))) if n else None
    return {"format": name, "file": file, "n": n, "accuracy": numbers["accuracy"],
            "macro_f1": numbers["macro_f1"], "agreement": agreement,
            "max_score_difference": float(np.abs(probabilities - reference).max()) if n else None,
            "seconds": None if seconds is None else round(seconds, 3),
            "flagged": agreement is not None and agreement < AGREEMENT_FLOOR}


def not_run(name: str, file: str, why: str) -> dict:
    return {"format": name, "file": file, "n": 0, "accuracy": None, "macro_f1": None,
            "agreement": None, "max_score_difference": None, "seconds": None, "flagged": False,
            "note": why}


def _cell(value, percent: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value * 100:.1f}%" if percent else f"{value:.3f}"


def console_lines(table: list[dict]) -> list[str]:
    """The table as printed by export.sh, then one loud line per flagged format."""
    lines = [f"Accuracy per format on the test split (N={table[0]['n'] if table else 0}):",
             f"{'format':<12} {'accuracy':>9} {'macro F1':>9} {'agrees with .pb':>16}"]
    for item in table:
        lines.append(f"{item['format']:<12} {_cell(item['accuracy'], True):>9} "
                     f"{_cell(item['macro_f1']):>9} {_cell(item['agreement'], True):>16}"
                     + (f"  ({item['note']})" if item.get("note") else ""))
    for item in table:
        if item["flagged"]:
            lines.append(f"WARNING: {item['format']} ({item['file']}) agrees with the .pb on only "
                         f"{item['agreement'] * 100:.1f}% of the test photos (under "
                         f"{AGREEMENT_FLOOR * 100:.0f}%): it is not the same classifier; check its "
                         "accuracy above before deploying it")
    return lines


def html_lines(table: list[dict] | None) -> list[str]:
    """The report.html section (empty when no format was exported)."""
    if not table:
        return []
    e = html.escape
    parts = ["<h2>Accuracy per format</h2>",
             f"<p>The test split scored by each exported format; agreement is the share of photos "
             f"given the same top label as by the .pb (flagged under {AGREEMENT_FLOOR * 100:.0f}%).</p>",
             '<table id="formats"><tr><th>format</th><th>file</th><th>N</th><th>accuracy</th>'
             "<th>macro F1</th><th>agrees with .pb</th></tr>"]
    for item in table:
        flag = ' class="low"' if item["flagged"] else ""
        note = f" ({e(item['note'])})" if item.get("note") else ""
        parts.append(f"<tr{flag}><td>{e(item['format'])}</td><td>{e(item['file'])}</td>"
                     f"<td>{item['n']}</td><td>{_cell(item['accuracy'], True)}</td>"
                     f"<td>{_cell(item['macro_f1'])}</td><td>{_cell(item['agreement'], True)}"
                     f"{' FLAGGED' if item['flagged'] else ''}{note}</td></tr>")
    parts.append("</table>")
    return parts

"""The report's figures as PNG bytes: confusion matrix, reliability diagram, training curves.

Figures are drawn on matplotlib's Agg canvas directly, never through pyplot, so no
display or GUI backend is ever needed and nothing global is left behind.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from tensorguess.metrics import ECE_BINS, reliability_table
from tensorguess.model_dir import TrainLog

# A label in a script the bundled font lacks (`猫`) is drawn as boxes in the PNG, and is
# text in report.html; matplotlib's warning for each such glyph would only add noise lines.
warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font", category=UserWarning)

# Written into each PNG's tEXt chunk: how a later run knows the file is its own to replace.
SOFTWARE = "tensor-guess"
DPI = 100


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": SOFTWARE})
    return buffer.getvalue()


def _short(label: str, width: int = 22) -> str:
    return label if len(label) <= width else label[: width - 1] + "\u2026"


def confusion_matrix_png(labels: list[str], matrix: list[list[int]]) -> bytes:
    """Counts in each cell, coloured by the share of the true class (row) they hold."""
    counts = np.asarray(matrix, dtype=np.int64).reshape(len(labels), len(labels))
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    k = len(labels)
    side = float(np.clip(2.8 + 0.45 * k, 4.5, 22))
    figure = _figure(side + 1.2, side)
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    font = float(np.clip(11 - 0.12 * k, 5, 10))
    axes.set_xticks(range(k), [_short(label) for label in labels], rotation=45, ha="right",
                    rotation_mode="anchor", fontsize=font)
    axes.set_yticks(range(k), [_short(label) for label in labels], fontsize=font)
    axes.set_xlabel("predicted label")
    axes.set_ylabel("true label")
    if k <= 30:
        for (row, column), count in np.ndenumerate(counts):
            if count or row == column:
                axes.text(column, row, str(count), ha="center", va="center", fontsize=font,
                          color="white" if shares[row, column] > 0.55 else "black")
    n = int(counts.sum())
    accuracy = f", accuracy {np.trace(counts) / n:.1%}" if n else ""
    axes.set_title(f"Confusion matrix (N={n}{accuracy})")
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of the true class")
    return _png(figure)


def reliability_png(probabilities: np.ndarray, truth: np.ndarray,
                    before: np.ndarray | None = None, temperature: float | None = None) -> bytes:
    """Hit rate against top score in ECE's bins; the uncalibrated scores too when given."""
    from tensorguess.metrics import expected_calibration_error

    figure = _figure(6.4, 6.4)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    probabilities = np.asarray(probabilities, np.float64)
    truth = np.asarray(truth, np.int64)
    width = 1.0 / ECE_BINS

    def table(scores):
        if not len(scores):
            return reliability_table(np.zeros(0), np.zeros(0, bool))
        return reliability_table(scores.max(axis=1), scores.argmax(axis=1) == truth)

    after = table(probabilities)
    filled = after["count"] > 0
    ece = expected_calibration_error(probabilities, truth) if len(truth) else float("nan")
    name = "scores" if before is None else f"calibrated scores (T={temperature:.3g})"
    top.bar(after["lower"][filled], after["accuracy"][filled], width=width, align="edge",
            color="tab:blue", alpha=0.75, edgecolor="white", label=f"{name}, ECE {ece:.3f}")
    if before is not None:
        earlier = table(np.asarray(before, np.float64))
        used = earlier["count"] > 0
        ece_before = expected_calibration_error(before, truth) if len(truth) else float("nan")
        top.plot(earlier["confidence"][used], earlier["accuracy"][used], marker="o", color="tab:orange",
                 label=f"before calibration, ECE {ece_before:.3f}")
        bottom.step(earlier["upper"], earlier["count"], where="pre", color="tab:orange", linewidth=1)
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.02)
    top.set_ylabel("accuracy in the bin")
    top.set_title(f"Reliability (N={len(truth)}, {ECE_BINS} bins)")
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(after["lower"], after["count"], width=width, align="edge", color="tab:blue", alpha=0.75,
               edgecolor="white")
    bottom.set_xlabel("top score (confidence)")
    bottom.set_ylabel("images")
    return _png(figure)


def training_curves_png(train_log: TrainLog) -> bytes:
    """Accuracy and cross-entropy of training batches and validation at every evaluation step."""
    steps = train_log.steps
    x = [point["step"] for point in steps]
    figure = _figure(8, 3.6)
    accuracy, entropy = figure.subplots(1, 2)
    accuracy.plot(x, [p["train_accuracy"] for p in steps], label="train batch", color="tab:blue")
    accuracy.plot(x, [p["validation_accuracy"] for p in steps], label="validation", color="tab:orange")
    accuracy.set_ylim(0, 1.02)
    accuracy.set_title("Accuracy")
    entropy.plot(x, [p["cross_entropy"] for p in steps], label="train batch", color="tab:blue")
    entropy.plot(x, [p["validation_cross_entropy"] for p in steps], label="validation",
                 color="tab:orange")
    entropy.set_title("Cross entropy")
    for axes in (accuracy, entropy):
        axes.set_xlabel("step")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    return _png(figure)

"""The pictures of a classifier's report (classification_metrics.report): a confusion matrix and
a reliability diagram before and after temperature scaling.

Built as matplotlib `Figure` objects, not through pyplot: no global figure state and no backend
to choose; whoever writes them calls `savefig` (PNG through Agg).
"""

from typing import Any

import numpy as np
from matplotlib.figure import Figure

ANNOTATE_UP_TO = 20  # Classes; beyond that the counts in the cells become unreadable.


def confusion_figure(report: dict[str, Any]) -> Figure:
    """Rows: true class, columns: predicted; colour: the fraction of each true class (so a rare
    class's errors show as clearly as a frequent one's), text: the counts."""
    confusion = np.asarray(report["confusion_matrix"], np.float64)
    classes = confusion.shape[0]
    rows = confusion.sum(1, keepdims=True)
    fractions = np.divide(confusion, rows, out=np.zeros_like(confusion), where=rows > 0)
    size = min(3.0 + 0.45 * classes, 14.0)
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.add_subplot()
    image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if classes <= ANNOTATE_UP_TO:
        for true in range(classes):
            for predicted in range(classes):
                count = confusion[true, predicted]
                if count:
                    ax.text(
                        predicted,
                        true,
                        f"{count:g}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if fractions[true, predicted] > 0.5 else "black",
                    )
        ax.set_xticks(range(classes))
        ax.set_yticks(range(classes))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(
        f"{report['split']}: accuracy {report['accuracy']:.4f}, macro-F1 {report['macro_f1']:.4f}, "
        f"balanced accuracy {report['balanced_accuracy']:.4f}",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def reliability_figure(report: dict[str, Any]) -> Figure:
    """Accuracy against confidence per bin, before and after temperature scaling (top; the
    diagonal is perfect calibration, red the gap to each bin's mean confidence), and how many
    examples each bin holds (bottom, log scale: a bin of a few examples is noise)."""
    calibration = report["calibration"]
    fig = Figure(figsize=(10.0, 5.6))
    axes = fig.subplots(2, 2, sharex=True, height_ratios=(3, 1))
    for column, which in enumerate(("before", "after")):
        part = calibration[which]
        bins = part["reliability"]
        lower = np.array([b["lower"] for b in bins])
        width = bins[0]["upper"] - bins[0]["lower"]
        count = np.array([b["count"] for b in bins])
        accuracy = np.array([b["accuracy"] for b in bins])
        confidence = np.array([b["confidence"] for b in bins])
        filled = count > 0
        top, bottom = axes[0, column], axes[1, column]
        top.bar(
            lower[filled],
            accuracy[filled],
            width,
            align="edge",
            color="tab:blue",
            edgecolor="k",
            label="accuracy",
        )
        # Hatched, not filled: where accuracy exceeds confidence the gap lies over the bar.
        top.bar(
            lower[filled],
            np.abs(confidence - accuracy)[filled],
            width,
            bottom=np.minimum(confidence, accuracy)[filled],
            align="edge",
            color="none",
            hatch="///",
            edgecolor="tab:red",
            label="gap to mean confidence",
        )
        top.plot([0, 1], [0, 1], "--", color="gray", label="calibrated")
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.grid(alpha=0.3)
        top.set_title(
            f"{which} (T={part['temperature']:.3g}): ECE {part['ece']:.4f}, NLL {part['nll']:.4f}",
            fontsize=9,
        )
        bottom.bar(lower[filled], count[filled], width, align="edge", color="gray", edgecolor="k")
        bottom.set_yscale("log")
        bottom.set_xlabel("confidence")
        bottom.grid(alpha=0.3)
    axes[0, 0].set_ylabel("accuracy")
    axes[1, 0].set_ylabel("examples")
    axes[0, 0].legend(loc="upper left", fontsize=8)
    fig.suptitle(
        f"{report['split']} reliability; temperature fitted on validation "
        f"({calibration['bins']} equal-width bins)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig

"""The compression report: one row per model (the original and each compressed variant) with
test accuracy, parameter bytes, non-zero parameters and CPU latency, as a table and a PNG of
accuracy against size."""

from pathlib import Path
from typing import Any

from jaxdl.compression.inference import LATENCY_BATCHES
from jaxdl.engine import plots


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the rows, the first being the reference for the size ratio."""
    reference = rows[0]["param_bytes"]
    latency = [f"ms @ batch {b}" for b in LATENCY_BATCHES]
    lines = [
        "| model | test accuracy | parameter bytes | size | non-zero params | "
        + " | ".join(latency)
        + " |",
        "|---" * (5 + len(latency)) + "|",
    ]
    for row in rows:
        times = [f"{row['latency_ms'][f'batch_{b}']:.3f}" for b in LATENCY_BATCHES]
        lines.append(
            f"| {row['name']} | {100 * row['accuracy']:.2f}% | {row['param_bytes']:,} | "
            f"{row['param_bytes'] / reference:.3f}x | {row['nonzero_params']:,} | "
            + " | ".join(times)
            + " |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Test accuracy against parameter bytes, one point per row, named in the legend."""
    plt = plots.pyplot()

    fig, ax = plt.subplots(figsize=(8.5, 4))
    markers = "osD^v<>pP*Xh"
    for index, row in enumerate(rows):
        # Variants often share a size or an accuracy: a legend, not labels on the points.
        ax.scatter(
            row["param_bytes"] / 1024,
            100 * row["accuracy"],
            s=45,
            marker=markers[index % len(markers)],
            label=row["name"],
            alpha=0.85,
        )
    accuracies = [100 * row["accuracy"] for row in rows]
    ax.set_ylim(min(accuracies) - 2, min(100.0, max(accuracies) + 1))
    ax.set_xscale("log")
    ax.set_xlabel("parameter KiB (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""The compression report: one row per model (the original and each compressed variant) with
test accuracy, parameter bytes, non-zero parameters and CPU latency, as a table and a PNG of
accuracy against size."""

from pathlib import Path
from typing import Any

from jaxdl.compression.inference import LATENCY_BATCHES


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
    """Test accuracy against parameter bytes, one labelled point per row."""
    import matplotlib

    matplotlib.use("Agg")  # Headless: servers and CI have no display.
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for row in rows:
        size = row["param_bytes"] / 1024
        ax.scatter(size, 100 * row["accuracy"], s=40)
        ax.annotate(
            row["name"], (size, 100 * row["accuracy"]), textcoords="offset points", xytext=(5, 5)
        )
    accuracies = [100 * row["accuracy"] for row in rows]
    ax.set_ylim(min(accuracies) - 2, min(100.0, max(accuracies) + 1))
    ax.set_xscale("log")
    ax.set_xlabel("parameter KiB (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

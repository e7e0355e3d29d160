"""Training curves as a PNG: one panel per metric, train and validation together."""

import io
from pathlib import Path
from typing import Any

from jaxdl.engine.metrics_log import read_records
from jaxdl.engine.workdir import write_atomic

SKIPPED = {"step", "split", "learning_rate", "grad_norm", "skipped_updates"}


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (servers and CI have no display).
    Imported on first use, not at every start of the CLI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, dpi: int = 110) -> None:
    """`fig` as a PNG at `path`, written atomically (workdir.write_atomic): a kill mid-write
    never leaves half a PNG. The caller closes the figure."""
    png = io.BytesIO()
    fig.savefig(png, dpi=dpi, format="png")
    write_atomic(path, png.getvalue())


def plot_curves(workdir: Path, out_path: Path) -> Path | None:
    plt = pyplot()

    records = read_records(workdir)
    curves: dict[str, dict[str, tuple[list, list]]] = {}
    for record in records:
        if record["split"] == "test":
            continue
        for name, value in record.items():
            if name in SKIPPED or not isinstance(value, int | float):
                continue
            steps, values = curves.setdefault(name, {}).setdefault(record["split"], ([], []))
            steps.append(record["step"])
            values.append(value)
    if not curves:
        return None
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False)
    for ax, (name, by_split) in zip(axes[0], sorted(curves.items()), strict=True):
        for split, (steps, values) in sorted(by_split.items()):
            ax.plot(steps, values, label=split, marker="o" if split == "val" else None, ms=3)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
        if name == "loss":
            ax.set_yscale("log")
    fig.tight_layout()
    save_figure(fig, out_path)
    plt.close(fig)
    return out_path

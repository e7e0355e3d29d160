"""`jaxdl compare --measure RUN [RUN ...] [--out FILE.png]`: the compression report over
several classifier runs (an original and its quantized, pruned or distilled variants), measured
here, side by side.

Each run is loaded as jaxdl eval would (its best checkpoint, or a `jaxdl quantize` run) and gets
one row: test accuracy, parameter bytes, non-zero parameters and the median CPU latency at
batch 1 and 256 (report.py). The table prints as Markdown; the PNG plots accuracy against size.
The runs are only read; the PNG is a new file (an existing one is not overwritten).
"""

from pathlib import Path
from typing import Any

from jaxdl.compression import inference, report
from jaxdl.errors import UserInputError


def compare_runs(
    run_dirs: list[Path], out: Path | None, latency_repeats: int = 20
) -> list[dict[str, Any]]:
    """One report row per run (named after its directory); the PNG to `out` when given."""
    if not run_dirs:
        raise UserInputError("jaxdl compare needs at least one run directory.")
    if out is not None and out.exists():
        raise UserInputError(f"--out {out} already exists; give a new file name.")
    if out is not None and out.suffix.lower() != ".png":
        raise UserInputError(f"--out {out}: the report is a PNG image; name it FILE.png.")
    models = [inference.load(run_dir) for run_dir in run_dirs]  # All checked before measuring.
    rows = []
    for run_dir, model in zip(run_dirs, models, strict=True):
        row = model.report(repeats=latency_repeats)
        row["name"] = f"{run_dir.name} ({row['name']})"
        row["run"] = str(run_dir)
        rows.append(row)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        report.plot(rows, out, "test accuracy against parameter bytes")
    return rows

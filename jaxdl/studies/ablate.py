"""`jaxdl ablate --config X --vary FIELD=V1,V2 [--vary ...] --seeds 0,1,2 --dir D [--workers N]`.

Every cell of the grid (grid.py) is trained once per seed as an ordinary run in
`D/cells/NNN/seed_S/` (its log beside it), by `python -m jaxdl.train` in a subprocess, N at a
time. The grid is checked whole before anything runs (each cell's config is resolved as `jaxdl
train` would) and recorded in `D/ablation_grid.json`; the same command run again continues: a
finished run is not trained again (`jaxdl train` leaves it as it is), an interrupted one resumes
from its checkpoint. At the end: `D/ablation.md` and `D/ablation.json` (each cell's metric as
mean ± std over seeds, its 95% confidence interval and its difference from the baseline cell,
the one with every first value) and `D/ablation.png`.
"""

import json
import os
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from jaxdl import train
from jaxdl.engine import plots
from jaxdl.errors import UserInputError
from jaxdl.studies import grid, stats

GRID_FILE = "ablation_grid.json"


def run_dir(out: Path, cell: grid.Cell, seed: int) -> Path:
    return out / "cells" / f"{cell.index:03d}" / f"seed_{seed}"


def _record_grid(out: Path, record: dict[str, Any]) -> None:
    """Writes the grid, or checks that `out` holds this same one (a continued ablation)."""
    path = out / GRID_FILE
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise UserInputError(f"{path} cannot be read ({error}); give another --dir.") from None
        if saved != record:
            raise UserInputError(
                f"--dir {out} holds another ablation ({saved.get('config')}, "
                f"{len(saved.get('cells', []))} cells, seeds {saved.get('seeds')}); run the same "
                "command to continue it, or give a new --dir."
            )
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserInputError(
            f"--dir {out} exists and holds no ablation; give a new or empty directory."
        )
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")


def _train(config: str, workdir: Path, overrides: list[str]) -> int:
    workdir.parent.mkdir(parents=True, exist_ok=True)
    command = train.command(config, workdir, *overrides, "--config.train.progress_bar=False")
    with open(workdir.parent / f"{workdir.name}.log", "a") as log:
        return subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))


def run_grid(
    config: str,
    cells: list[grid.Cell],
    seeds: list[int],
    out: Path,
    workers: int,
    report: Callable[[str], None] = print,
) -> dict[tuple[int, int], int]:
    """Trains every (cell, seed) not finished yet; returns their exit codes."""
    jobs = [(cell, seed) for cell in cells for seed in seeds]
    codes: dict[tuple[int, int], int] = {}

    def one(job: tuple[grid.Cell, int]) -> tuple[grid.Cell, int, int, str]:
        cell, seed = job
        workdir = run_dir(out, cell, seed)
        # Finished before (the grid file says these are this ablation's runs): not started again.
        if (workdir / "summary.json").is_file():
            return cell, seed, 0, "finished earlier"
        start = time.perf_counter()
        code = _train(config, workdir, cell.overrides(seed))
        status = "done" if code == 0 else f"exit code {code}"
        return cell, seed, code, f"{status} ({time.perf_counter() - start:.0f} s)"

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for count, (cell, seed, code, status) in enumerate(pool.map(one, jobs), 1):
            codes[(cell.index, seed)] = code
            report(f"[{count}/{len(jobs)}] {cell.name}, seed {seed}: {status}")
    return codes


def collect(
    cells: list[grid.Cell], seeds: list[int], out: Path, metric: str
) -> list[dict[str, Any]]:
    """Each cell's values of `metric` (from its runs' summary.json) and their statistics."""
    rows = []
    for cell in cells:
        values = []
        for seed in seeds:
            path = run_dir(out, cell, seed) / "summary.json"
            if not path.is_file():
                continue
            final = json.loads(path.read_text()).get("final_metrics", {})
            if metric not in final:
                raise UserInputError(
                    f"--metric {metric}: the runs report {', '.join(sorted(final))}; choose one."
                )
            values.append(final[metric])
        if values:
            rows.append({"cell": cell.name, "values": values, **stats.summarize(values)})
    if not rows or rows[0]["cell"] != cells[0].name:
        raise UserInputError("the baseline cell has no finished run; see the logs in --dir.")
    return stats.with_differences(rows)


def table(rows: list[dict[str, Any]], metric: str) -> str:
    lines = [
        f"| cell | {metric} mean ± std | 95% CI | vs baseline | seeds |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        spread = f" ± {row['std']:.4f}" if row["std"] is not None else ""
        ci = "[{:.4f}, {:.4f}]".format(*row["ci95"]) if row["ci95"] else "-"
        lines.append(
            f"| {row['cell']} | {row['mean']:.4f}{spread} | {ci} | {row['diff']:+.4f} | "
            f"{row['n']} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], metric: str, path: Path) -> None:
    """The cells' means with their 95% intervals, the baseline's mean as a dotted line."""
    plt = plots.pyplot()

    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.5))
    means = [row["mean"] for row in rows]
    errors = [(row["ci95"][1] - row["mean"]) if row["ci95"] else 0.0 for row in rows]
    positions = range(len(rows))
    # Points, not bars: a bar from zero hides differences of a fraction of a point.
    ax.errorbar(means, list(positions), xerr=errors, fmt="o", color="tab:blue", capsize=4)
    ax.axvline(means[0], color="gray", linestyle=":", linewidth=1)  # The baseline.
    ax.set_yticks(list(positions), [row["cell"] for row in rows], fontsize=8)
    ax.invert_yaxis()  # The baseline on top.
    low = min(m - e for m, e in zip(means, errors, strict=True))
    high = max(m + e for m, e in zip(means, errors, strict=True))
    margin = max(high - low, 1e-3) * 0.3
    ax.set_xlim(low - margin, high + margin)
    ax.set_xlabel(f"{metric} (mean over seeds, 95% interval)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ablate(
    config: str,
    vary: list[str],
    seeds_text: str,
    out: Path,
    workers: int,
    metric: str,
    check_cell: Callable[[list[str]], None],
    report: Callable[[str], None] = print,
) -> tuple[list[dict[str, Any]], int]:
    """Runs (or continues) the ablation; returns the rows and the number of failed runs.
    `check_cell(overrides)` resolves one cell's config and raises UserInputError if it is bad."""
    if workers < 1:
        raise UserInputError(f"--workers {workers}: give at least 1.")
    cells = grid.expand(vary)
    seeds = grid.parse_seeds(seeds_text)
    for cell in cells:  # Every cell's config is checked before any run starts.
        check_cell(cell.overrides(seeds[0]))
    record = {"config": config, "cells": [list(c.values) for c in cells], "seeds": seeds}
    _record_grid(out, json.loads(json.dumps(record)))
    codes = run_grid(config, cells, seeds, out, workers, report)
    failed = sum(code != 0 for code in codes.values())
    rows = collect(cells, seeds, out, metric)
    (out / "ablation.json").write_text(json.dumps({"metric": metric, "cells": rows}, indent=2))
    (out / "ablation.md").write_text(table(rows, metric) + "\n")
    plot(rows, metric, out / "ablation.png")
    return rows, failed

"""`jaxdl compare RUN [RUN ...] [--metric val/accuracy] [--out FILE.png]`: runs side by side from
the files they left: final metrics and steps/s (summary.json), the config fields that differ
(config.json), and with `--out` one PNG overlaying their curves of `--metric` (metrics.jsonl,
SPLIT/NAME such as val/accuracy or train/loss). It only reads the runs.
"""

import json
from pathlib import Path
from typing import Any

from jaxdl import config as config_lib
from jaxdl.engine import plots, workdir
from jaxdl.errors import UserInputError


def read_run(run_dir: Path) -> dict[str, Any]:
    """A run's summary and flattened config; UserInputError naming a missing file."""
    for name in (workdir.CONFIG_FILE, workdir.SUMMARY_FILE):
        if not (run_dir / name).is_file():
            raise UserInputError(
                f"{run_dir / name} not found: compare reads finished runs (a run writes "
                "summary.json when it ends)."
            )
    try:
        summary = json.loads((run_dir / workdir.SUMMARY_FILE).read_text())
        config = config_lib.flatten(workdir.load_config(run_dir))
    except ValueError as error:
        raise UserInputError(f"{run_dir / workdir.SUMMARY_FILE} is not JSON ({error}).") from None
    return {"run": str(run_dir), "summary": summary, "config": config}


def run_names(runs: list[dict[str, Any]]) -> list[str]:
    """Each run's directory name, with as many parent directories as it takes to tell them
    apart (runs/a/seed_0 and runs/b/seed_0 -> a/seed_0, b/seed_0)."""
    paths = [Path(run["run"]) for run in runs]
    for depth in range(1, max(len(path.parts) for path in paths) + 1):
        names = ["/".join(path.parts[-depth:]) for path in paths]
        if len(set(names)) == len(names):
            return names
    return [str(path) for path in paths]


def differing_fields(runs: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Config fields whose values are not the same in every run (field -> value per run)."""
    fields = sorted({field for run in runs for field in run["config"]})
    values = {field: [run["config"].get(field, "(absent)") for run in runs] for field in fields}
    return {field: vals for field, vals in values.items() if any(v != vals[0] for v in vals)}


def table(runs: list[dict[str, Any]]) -> str:
    metrics = sorted({name for run in runs for name in run["summary"].get("final_metrics", {})})
    lines = [
        "| run | " + " | ".join(metrics) + " | steps | steps/s |",
        "|---" * (len(metrics) + 3) + "|",
    ]
    for run, name in zip(runs, run_names(runs), strict=True):
        summary = run["summary"]
        final = summary.get("final_metrics", {})
        cells = [f"{final[name]:.4f}" if name in final else "-" for name in metrics]
        rate = summary.get("steps_per_second")
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {summary.get('steps', '-')} | {f'{rate:.1f}' if rate else '-'} |"
        )
    return "\n".join(lines)


def differences_table(runs: list[dict[str, Any]]) -> str:
    fields = differing_fields(runs)
    if not fields:
        return "The runs' configs are identical."
    names = run_names(runs)
    lines = ["| field | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for field, values in fields.items():
        lines.append(f"| {field} | " + " | ".join(json.dumps(v) for v in values) + " |")
    return "\n".join(lines)


def curve(run_dir: Path, metric: str) -> tuple[list[int], list[float]]:
    """(steps, values) of SPLIT/NAME from a run's metrics.jsonl ([] when it has none)."""
    split, _, name = metric.partition("/")
    steps, values = [], []
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return steps, values
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record.get("split") == split and name in record:
            steps.append(record["step"])
            values.append(record[name])
    return steps, values


def plot_curves(runs: list[dict[str, Any]], metric: str, out: Path) -> None:
    plt = plots.pyplot()

    curves = {
        name: curve(Path(run["run"]), metric)
        for run, name in zip(runs, run_names(runs), strict=True)
    }
    if not any(steps for steps, _ in curves.values()):
        raise UserInputError(
            f"--metric {metric}: no run logged it; write SPLIT/NAME as in metrics.jsonl, e.g. "
            "val/accuracy or train/loss."
        )
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, (steps, values) in curves.items():
        if steps:
            ax.plot(steps, values, label=name, marker="." if len(steps) < 40 else None)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def compare(run_dirs: list[Path], metric: str, out: Path | None) -> str:
    """The report as text; the curves PNG to `out` when given (a new file)."""
    if out is not None and out.exists():
        raise UserInputError(f"--out {out} already exists; give a new file name.")
    if "/" not in metric:
        raise UserInputError(f"--metric {metric}: write SPLIT/NAME, e.g. val/accuracy.")
    runs = [read_run(run_dir) for run_dir in run_dirs]
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        plot_curves(runs, metric, out)
    return table(runs) + "\n\nConfig fields that differ:\n\n" + differences_table(runs)

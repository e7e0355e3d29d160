"""A sweep's report, from its study alone (so any machine sharing the study can write it).

DIR/sweep.md: the best trial, its overrides as a ready `jaxdl train` command line, and a table
of every trial; DIR/sweep_trials.json: the same rows; DIR/history.png, importances.png and
intermediate.png: Optuna's own plots (matplotlib backend) of the optimisation history, the
parameters' fANOVA importances and the trials' validation curves.
"""

import json
import shlex
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from jaxdl.engine import plots
from jaxdl.studies import sweep_definition


def trial_rows(study: optuna.study.Study) -> list[dict[str, Any]]:
    rows = []
    for trial in study.get_trials(deepcopy=False):
        result = trial.user_attrs.get(sweep_definition.RESULT_ATTR, {})
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name.lower(),
                "value": trial.value,
                "params": trial.params,
                "overrides": trial.user_attrs.get(sweep_definition.OVERRIDES_ATTR, []),
                "steps": result.get("steps"),
                "wall_seconds": result.get("wall_seconds"),
                "final_metrics": result.get("final_metrics", {}),
            }
        )
    return rows


def best_command(definition: sweep_definition.Definition, row: dict[str, Any]) -> str:
    """The command that trains the best trial's configuration again, in a new workdir."""
    words = [
        "jaxdl",
        "train",
        "--config",
        definition.config,
        "--workdir",
        f"runs/{definition.study}_best",
        *definition.fixed,
        *row["overrides"],
    ]
    return " ".join(shlex.quote(word) for word in words)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def table(rows: list[dict[str, Any]], definition: sweep_definition.Definition) -> str:
    names = sorted({name for row in rows for name in row["params"]})
    tests = sorted({name for row in rows for name in row["final_metrics"]})
    shown = [name for name in ("test/accuracy", f"test/{definition.metric}") if name in tests]
    header = ["trial", "state", f"val/{definition.metric}", *shown, "steps", *names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            row["number"],
            row["state"],
            row["value"],
            *(row["final_metrics"].get(name) for name in shown),
            row["steps"],
            *(row["params"].get(name) for name in names),
        ]
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines)


def _save(axes: Any, path: Path) -> None:
    figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
    figure.set_size_inches(8, 5)
    figure.tight_layout()
    plots.save_figure(figure, path)
    plots.pyplot().close(figure)


def _importances(study: optuna.study.Study, target: str, out: Path) -> bool:
    """importances.png (fANOVA, seeded: the same plot twice); False when every finished trial
    has the same value, so there is no variation to ascribe."""
    from optuna.visualization import matplotlib as optuna_plots

    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    try:
        axes = optuna_plots.plot_param_importances(study, evaluator=evaluator, target_name=target)
    except RuntimeError:  # fANOVA: "Encountered zero total variance in all trees."
        return False
    _save(axes, out / "importances.png")
    return True


def write_plots(study: optuna.study.Study, out: Path, target: str) -> list[str]:
    """Optuna's matplotlib plots; those the study cannot support yet are left out. `target`
    names the objective on their axes."""
    plots.pyplot()  # The Agg backend before Optuna imports pyplot.
    from optuna.visualization import matplotlib as optuna_plots

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varied = {name for trial in complete for name in trial.params}
    written = []
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # "Study instance does not contain..."
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if complete:
                _save(
                    optuna_plots.plot_optimization_history(study, target_name=target),
                    out / "history.png",
                )
                written.append("history.png")
            if len(complete) >= 2 and varied and _importances(study, target, out):
                written.append("importances.png")
            if any(trial.intermediate_values for trial in study.get_trials(deepcopy=False)):
                axes = optuna_plots.plot_intermediate_values(study)
                axes.get_legend() and axes.get_legend().remove()  # One entry per trial: unreadable.
                _save(axes, out / "intermediate.png")
                written.append("intermediate.png")
    finally:
        optuna.logging.set_verbosity(verbosity)
    return written


def write_report(
    study: optuna.study.Study, definition: sweep_definition.Definition, out: Path
) -> str:
    """Writes the report files; returns the text printed at the end of a sweep."""
    rows = trial_rows(study)
    counts = {
        state: sum(row["state"] == state for row in rows)
        for state in ("complete", "pruned", "fail")
    }
    lines = [
        f"# Sweep {definition.study}: {definition.config}, {definition.sampler} sampler, "
        f"{definition.pruner} pruner",
        "",
        f"{len(rows)} trials: {counts['complete']} complete, {counts['pruned']} pruned, "
        f"{counts['fail']} failed. Objective: best val/{definition.metric} "
        f"({definition.direction}).",
        "",
    ]
    complete = [row for row in rows if row["state"] == "complete"]
    if complete:
        best = study.best_trial
        row = next(r for r in rows if r["number"] == best.number)
        lines += [
            f"Best: trial {best.number}, val/{definition.metric} {best.value:.4g}",
            "",
            "```",
            best_command(definition, row),
            "```",
            "",
        ]
    lines.append(table(rows, definition))
    text = "\n".join(lines) + "\n"
    (out / "sweep.md").write_text(text)
    (out / "sweep_trials.json").write_text(json.dumps(rows, indent=2) + "\n")
    written = write_plots(study, out, f"best val/{definition.metric}")
    return text + f"\nwrote {out}/sweep.md, sweep_trials.json" + "".join(f", {w}" for w in written)

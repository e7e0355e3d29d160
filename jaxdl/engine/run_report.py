"""A task's end-of-run report (Task.run_report): at the end of training, into summary.json and
the workdir; and from a saved run, for `jaxdl eval` (printed, and written with --out).

The report is built from the same summed evaluation outputs as the logged metrics (one pass per
split, summed over batches, devices and hosts), so it costs one more pass, over validation.
Figures are written atomically (temporary file, then rename); `--out` is a new or empty
directory, so nothing already saved is overwritten.
"""

from pathlib import Path
from typing import Any

from jaxdl.engine import evaluation, plots, steps
from jaxdl.engine.setup import Setup
from jaxdl.engine.workdir import check_new_dir, write_json
from jaxdl.errors import UserInputError

REPORT_FILE = "report.json"  # What `jaxdl eval --out DIR` writes besides the figures.


def end_of_run(
    plan: Setup,
    evaluate: Any,
    state: Any,
    test_sums: dict[str, Any],
    workdir: Path,
    writer: bool,
) -> dict[str, Any]:
    """summary.json entries of the task's report of the test split (`state`: the tested one);
    the process that writes (`writer`) puts its figures into `workdir`. Every process calls it:
    the validation pass is a collective."""
    if not plan.task.makes_run_report:
        return {}
    validation_sums = evaluate(state, "validation", raw=True)
    entries, figures = plan.task.run_report(validation_sums, test_sums, "test")
    if writer:
        write_figures(workdir, figures)
    return entries


def write_figures(out_dir: Path, figures: dict[str, Any]) -> None:
    """Each figure as out_dir/NAME, atomically (plots.save_figure)."""
    for name, figure in figures.items():
        plots.save_figure(figure, out_dir / name)


def evaluate_with_report(
    run_dir: Path, which: str, split: str, out: Path | None
) -> tuple[dict[str, Any], list[Path]]:
    """`jaxdl eval`: the metrics of checkpoint `which` on `split` ({step, split, metrics} as
    before) and, for a task with a report, the report under its own keys; with `out`, the
    figures and report.json written there. Returns (printed dict, written files)."""
    if out is not None:
        check_new_dir(out)
    plan, step, state = evaluation.restore_checkpoint(run_dir, which)
    evaluate = steps.make_eval_fn(plan)
    sums = evaluate(state, split, raw=True)
    result = {"step": step, "split": split, **plan.task.finalize_eval(dict(sums))}
    if not plan.task.makes_run_report:
        if out is not None:
            raise UserInputError(
                f"--out {out}: a {plan.config.task.name} run has no report to write; "
                "leave --out out to print its metrics."
            )
        return result, []
    validation_sums = sums if split == "validation" else evaluate(state, "validation", raw=True)
    entries, figures = plan.task.run_report(validation_sums, sums, split)
    result |= entries
    if out is None:
        return result, []
    out.mkdir(parents=True, exist_ok=True)
    write_figures(out, figures)
    write_json(out / REPORT_FILE, result)
    return result, [out / name for name in (*figures, REPORT_FILE)]

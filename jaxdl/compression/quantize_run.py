"""`jaxdl quantize --workdir W --scheme int8 [--mode static] --out O`: post-training quantization
of a finished classifier run into a new workdir.

O gets config.json (the source's), quantization.json (scheme, mode, source run and step),
params.npz (the quantized arrays), summary.json (the test metrics, and the compression report
of the source and the quantized model side by side) and compression.png. It is written in a
temporary directory beside O and renamed into place, so O is either complete or absent; an O
that exists and is not empty is refused, and the source run is only read.
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import jax

from jaxdl import data
from jaxdl.compression import inference, report
from jaxdl.engine import workdir
from jaxdl.errors import UserInputError
from jaxdl.models import quantized
from jaxdl.tasks.classification import model_kwargs

PLOT_FILE = "compression.png"


def check_out(out: Path, source: Path) -> None:
    """`out` must be new (or an empty directory) and not the source run."""
    if out.resolve() == source.resolve():
        raise UserInputError(f"--out {out} is the source run itself; give a new directory.")
    workdir.check_new_dir(out)


def write_derived_run(
    out: Path,
    config_json: str,
    summary: dict[str, Any],
    facts_file: str,
    facts: dict[str, Any],
    variables: Any,
    plot_file: str,
) -> None:
    """A run that quantize or shrink derives from another: written whole in a temporary
    directory beside `out`, then renamed into place (so `out` is complete or absent)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (staging / workdir.CONFIG_FILE).write_text(config_json)
        inference.save_derived(staging, variables, facts_file, facts)
        rows = summary["compression"]
        report.plot(rows, staging / plot_file, f"{Path(summary['source']).name}: {rows[1]['name']}")
        (staging / workdir.SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        if out.is_dir():
            out.rmdir()  # Empty (checked before): replaced by the complete run.
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def calibration_inputs(plan: Any, batches: int) -> list[tuple[Any, dict[str, Any]]]:
    """The first `batches` training batches in the split's fixed order, unaugmented: the same
    batches every time, so calibration is deterministic."""
    if batches < 1:
        raise UserInputError(f"--calibration_batches {batches}: give at least 1.")
    inputs = []
    size = plan.config.data.batch_size
    for batch in data.eval_batches(plan.dataset, "train", batch_size=size):
        inputs.append((batch["input"], model_kwargs(batch)))
        if len(inputs) == batches:
            break
    return inputs


def quantize_model(
    source: inference.InferenceModel, spec: quantized.QuantSpec, calibration_batches: int
) -> inference.InferenceModel:
    """The source model quantized by `spec`, calibrated on `calibration_batches` batches."""
    plan = source.plan
    model = plan.task.model
    variables = source.variables
    stats = {}
    try:
        if spec.mode == "static":
            inputs = calibration_inputs(plan, calibration_batches)
            stats = quantized.calibrate(model, spec, variables, inputs)
        params = quantized.quantize_params(
            model, spec, variables["params"], inference.quantized_example(plan), stats
        )
    except jax.errors.UnexpectedTracerError as error:
        # Qwix creates a static range where the product runs: inside a recurrent model's
        # lax.scan that is a value of the loop, which cannot become a parameter.
        raise UserInputError(
            f"--mode {spec.mode}: Qwix cannot give static ranges to the products of "
            f"model.name={plan.config.model.name!r}, which run inside a loop (lax.scan); use "
            "--mode dynamic, or --mode weight (every kernel, any model)."
        ) from error
    return inference.InferenceModel(
        plan=plan,
        step=source.step,
        name=spec.name,
        apply=quantized.apply_fn(model, spec),
        variables=jax.device_get({**variables, "params": params}),
    )


def quantize_run(
    run_dir: Path,
    out: Path,
    spec: quantized.QuantSpec,
    calibration_batches: int = 8,
    checkpoint: str = "best",
    latency_repeats: int = 20,
) -> dict[str, Any]:
    """Quantizes checkpoint `checkpoint` of the classifier in `run_dir` into the new run `out`;
    returns the new run's summary."""
    check_out(out, run_dir)
    if inference.is_quantized_run(run_dir):
        raise UserInputError(
            f"{run_dir} is already a quantized run; quantize its source "
            f"({json.loads((run_dir / inference.QUANT_FILE).read_text())['source']})."
        )
    source = inference.load(run_dir, checkpoint)
    result = quantize_model(source, spec, calibration_batches)
    rows = [source.report(repeats=latency_repeats), result.report(repeats=latency_repeats)]
    if spec.mode != "weight" and rows[1]["param_bytes"] > 0.9 * rows[0]["param_bytes"]:
        print(
            f"jaxdl: warning: --mode {spec.mode} quantized few of this model's weights (their "
            "products run inside a loop, where Qwix does not see them as weights); --mode "
            "weight quantizes every kernel.",
            file=sys.stderr,
        )
    summary = {
        "status": "completed",
        "kind": "quantized",
        "source": str(run_dir),
        "source_step": source.step,
        "quantization": {
            "scheme": spec.scheme,
            "mode": spec.mode,
            "calibration_batches": calibration_batches if spec.mode == "static" else 0,
        },
        "final_metrics": {"test/accuracy": rows[1]["accuracy"], "test/loss": rows[1]["loss"]},
        "compression": rows,
    }
    facts = {"source": str(run_dir), "source_step": source.step, **summary["quantization"]}
    config_json = (run_dir / workdir.CONFIG_FILE).read_text()
    write_derived_run(
        out, config_json, summary, inference.QUANT_FILE, facts, result.variables, PLOT_FILE
    )
    return summary

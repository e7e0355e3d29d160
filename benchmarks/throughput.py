"""Throughput report: is the model's step the bottleneck of training, or the engine around it?

For each offline experiment it measures, in one process and side by side:
  * step alone: the engine's jitted train step (on-device augmentation + the task's step) run
    back to back on one batch already on the device;
  * pipeline alone: train batches from the input pipeline, placed on the device, per second;
  * end to end: `steps_per_second` from the summary.json of a real run of the experiment
    (the same number a user's run reports: compilation, evaluation and saves left out);
and the ratio end to end / step alone. It also streams TFDS `mnist` (60,000 examples, from
tfds.testing.mock_data) through Grain with 0 and 2 worker processes.

    python -m benchmarks.throughput            # `make bench`; updates benchmarks/RESULTS.md
    python -m benchmarks.throughput --quick    # a smoke run: short runs, nothing written
"""

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import ml_collections
import tensorflow_datasets as tfds
from absl import logging as absl_logging

from jaxdl import cli, data
from jaxdl.engine import loop, workdir
from jaxdl.engine import steps as steps_lib
from jaxdl.engine.setup import init_state
from jaxdl.huge_pages import reexec_with_huge_pages

EXPERIMENTS = ("digits_mlp", "digits_cnn")
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
BEGIN, END = "<!-- throughput:begin -->", "<!-- throughput:end -->"


def _timed(fn, count: int) -> float:
    """Calls per second of `fn` over `count` calls, waiting for the device at the end."""
    out = fn()
    jax.block_until_ready(out)
    start = time.perf_counter()
    for _ in range(count):
        out = fn()
    jax.block_until_ready(out)
    return count / (time.perf_counter() - start)


def step_timer(plan: loop.Setup):
    """A function `count -> steps/s` that runs the engine's jitted train step back to back on
    batches already on the device (one chunk, engine/feed.py), compiled once, here."""
    batches = steps_lib.open_batch_feed(plan)
    chunk = batches.next_chunk(0)
    batches.close()
    step = steps_lib.make_train_step(plan)
    state, sums = init_state(plan), steps_lib.zero_tally(plan)

    def run():
        nonlocal state, sums
        state, sums = step(state, chunk, sums)
        return sums

    return lambda count: _timed(run, count)


def pipeline_alone(plan: loop.Setup, count: int) -> float:
    """Batches/s from the train iterator, moved to the device as the loop moves them."""
    batches = steps_lib.open_batch_feed(plan)
    steps = iter(range(10**9))
    rate = _timed(lambda: batches.next_chunk(next(steps)), count)
    batches.close()
    return rate


def end_to_end(config: ml_collections.ConfigDict, run_dir: Path) -> float:
    """`steps_per_second` of a real training run, as summary.json reports it."""
    workdir.start_new(run_dir, config)
    summary = loop.train(loop.setup(config), run_dir)
    return summary["steps_per_second"]


def measure_experiment(name: str, quick: bool, scratch: Path) -> dict:
    config = cli.parse_config(name, ["--config.train.progress_bar=false"])
    if quick:
        config.train.num_steps = 30
        config.train.eval_every = config.train.checkpoint_every = 30
        config.schedule.warmup_steps = 5
    plan = loop.setup(config)
    step_alone = step_timer(plan)
    # About 5 s of steps per measurement (at least 20 steps); a handful in quick mode.
    count = 5 if quick else max(20, min(2000, int(5 * step_alone(3))))
    # Step alone before and after the run, so both sides see the same machine load.
    steps = [step_alone(count)]
    pipeline = pipeline_alone(plan, count)
    e2e = end_to_end(config, scratch / name)
    steps.append(step_alone(count))
    step = statistics.median(steps)
    return {
        "experiment": name,
        "steps": config.train.num_steps,
        "step_alone": step,
        "pipeline": pipeline,
        "end_to_end": e2e,
        "ratio": e2e / step,
    }


def measure_streaming(quick: bool, scratch: Path) -> list[dict]:
    """Batches/s of 64 from mnist streamed through Grain, with 0 and 2 worker processes."""
    # Quick mode skips the worker processes (seconds to start); tests cover them elsewhere.
    num_examples, count, worker_counts = (600, 5, (0,)) if quick else (60_000, 200, (0, 2))
    rows = []
    with tfds.testing.mock_data(num_examples=num_examples):
        config = ml_collections.ConfigDict(
            {
                "name": "mnist",
                "data_dir": str(scratch / "tfds"),
                "pipeline": "stream",
                "validation_fraction": 0.1,
                "input_kind": "auto",
            }
        )
        spec = data.load_dataset(config)
        for workers in worker_counts:
            iterator = data.train_iterator(spec, batch_size=64, seed=0, worker_count=workers)
            rate = _timed(lambda it=iterator: next(it), count)
            iterator.close()
            rows.append(
                {
                    "dataset": "mnist",
                    "examples": num_examples,
                    "workers": workers,
                    "batches_per_second": rate,
                }
            )
    return rows


def cpu_description() -> str:
    """'N CPU cores (model name)': the cores this process may use, named from /proc/cpuinfo."""
    cpu = platform.processor() or platform.machine()
    try:
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores} CPU cores ({cpu})"


def _machine() -> str:
    device = jax.devices()[0]
    return f"{cpu_description()}, {device.platform} ({device.device_kind}), JAX {jax.__version__}"


def report(experiments: Sequence[dict], streaming: Sequence[dict], quick: bool) -> str:
    """The markdown section written to RESULTS.md (and printed)."""
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        BEGIN,
        "## Engine throughput (`make bench`)" + (" — quick smoke run" if quick else ""),
        "",
        f"Measured {when} on {_machine()}. Step alone is the median of a measurement before and one after the end-to-end run; "
        "ratio = end to end / step alone.",
        "",
        "| Experiment | Steps | Step alone (steps/s) | Pipeline alone (batches/s) | "
        "End to end (steps/s) | Ratio |",
        "|---|---|---|---|---|---|",
    ]
    for row in experiments:
        lines.append(
            f"| {row['experiment']} | {row['steps']} | {row['step_alone']:.1f} | "
            f"{row['pipeline']:.0f} | {row['end_to_end']:.1f} | {row['ratio']:.2f} |"
        )
    lines += [
        "",
        "Streaming path (TFDS `data_source` + Grain, batches of 64, no in-memory decoding):",
        "",
        "| Dataset | Examples | Workers | Batches/s |",
        "|---|---|---|---|",
    ]
    for row in streaming:
        lines.append(
            f"| {row['dataset']} (mock_data) | {row['examples']:,} | {row['workers']} | "
            f"{row['batches_per_second']:.1f} |"
        )
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str, begin: str = BEGIN, end: str = END) -> None:
    """Replaces the section of `path` between the markers `begin` and `end` (other sections
    stay), or appends it."""
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs; writes nothing")
    parser.add_argument("--experiments", default=",".join(EXPERIMENTS))
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help=f"markdown file to update (default {RESULTS}; none with --quick)",
    )
    args = parser.parse_args(argv)
    results = args.results or (None if args.quick else RESULTS)
    absl_logging.set_verbosity(absl_logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="jaxdl-bench-") as tmp:
        scratch = Path(tmp)
        rows = [
            measure_experiment(name, args.quick, scratch)
            for name in args.experiments.split(",")
            if name
        ]
        streaming = measure_streaming(args.quick, scratch)
    section = report(rows, streaming, args.quick)
    print(section)
    if results is not None:
        write_section(results, section)
        print(f"wrote {results}")
    return 0


if __name__ == "__main__":
    reexec_with_huge_pages()  # The process the `jaxdl` command runs in.
    sys.exit(main())

"""Training throughput of ResNet-50 and ViT-B/16 in bfloat16, in images per second (issue 8).

For each of `imagenet_resnet50` and `imagenet_vit_b16` (their configs as they are, except the
batch size and step counts given here), side by side in one process:
  * data on the device: the engine's jitted train step (augmentations included) run back to
    back on batches already on the device;
  * with the input pipeline: batches read through Grain from TFDS `imagenet2012` records
    (tfds.testing.mock_data: random images of mixed sizes, resized and centre-cropped per
    example by the reader as real ImageNet is, but with no JPEG decoding) and then the step.

    python -m benchmarks.vision_throughput                # needs an accelerator; updates RESULTS.md
    python -m benchmarks.vision_throughput --quick        # CPU smoke run of the :quick variants
"""

import argparse
import datetime
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import tensorflow_datasets as tfds
from absl import logging as absl_logging

from benchmarks.throughput import RESULTS, _machine, step_timer, write_section
from jaxdl import cli
from jaxdl.engine import loop
from jaxdl.engine import steps as steps_lib
from jaxdl.engine.setup import init_state

EXPERIMENTS = ("imagenet_resnet50", "imagenet_vit_b16")
BEGIN, END = "<!-- vision:begin -->", "<!-- vision:end -->"


def _plan(name: str, batch: int, workers: int, quick: bool, data_dir: Path) -> loop.Setup:
    overrides = [
        f"--config.data.batch_size={batch}",
        f"--config.data.worker_count={workers}",
        f"--config.data.data_dir={data_dir}",
        "--config.data.validation_fraction=0.01",
    ]
    # The quick variants: 32 px images, a small model, float32.
    return loop.setup(cli.parse_config(f"{name}:quick" if quick else name, overrides))


def with_pipeline(plan: loop.Setup, count: int) -> float:
    """Steps/s of the step fed by the train pipeline, as the loop feeds it (engine/feed.py)."""
    feed = steps_lib.open_batch_feed(plan)
    step = steps_lib.make_train_step(plan)
    state, sums = init_state(plan), steps_lib.zero_tally(plan)
    state, sums = step(state, feed.next_chunk(0), sums)  # Compiles.
    jax.block_until_ready(sums)
    start = time.perf_counter()
    for index in range(1, count + 1):
        state, sums = step(state, feed.next_chunk(index), sums)
    jax.block_until_ready(sums)
    feed.close()
    return count / (time.perf_counter() - start)


def measure(name: str, args: argparse.Namespace, data_dir: Path) -> dict:
    with tfds.testing.mock_data(num_examples=max(4 * args.batch, 64)):
        plan = _plan(name, args.batch, args.workers, args.quick, data_dir)
        device_rate = step_timer(plan)(args.steps)
        pipeline_rate = with_pipeline(plan, args.steps)
    return {
        "experiment": name,
        "dtype": plan.config.model.dtype,
        "image_size": plan.dataset.input_shape[0],
        "batch": args.batch,
        "on_device": device_rate * args.batch,
        "with_pipeline": pipeline_rate * args.batch,
    }


def report(rows: Sequence[dict], args: argparse.Namespace) -> str:
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        BEGIN,
        "## Vision training throughput (`python -m benchmarks.vision_throughput`)"
        + (" — quick smoke run" if args.quick else ""),
        "",
        f"Measured {when} on {_machine()}; {args.steps} steps each, "
        f"{args.workers} Grain worker processes. Images per second.",
        "",
        "| Experiment | dtype | Image size | Batch | Data on device (img/s) | With input pipeline (img/s) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['experiment']} | {row['dtype']} | {row['image_size']} | {row['batch']} | "
            f"{row['on_device']:.0f} | {row['with_pipeline']:.0f} |"
        )
    lines.append(END)
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU smoke run; writes nothing")
    parser.add_argument("--batch", type=int, default=None, help="global batch (default 256)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 50)")
    parser.add_argument("--workers", type=int, default=None, help="Grain workers (default 8)")
    parser.add_argument("--experiments", default=",".join(EXPERIMENTS))
    args = parser.parse_args(argv)
    args.batch = args.batch or (4 if args.quick else 256)
    args.steps = args.steps or (3 if args.quick else 50)
    args.workers = args.workers if args.workers is not None else (0 if args.quick else 8)
    absl_logging.set_verbosity(absl_logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="jaxdl-vision-bench-") as tmp:
        rows = [measure(name, args, Path(tmp)) for name in args.experiments.split(",") if name]
    section = report(rows, args)
    print(section)
    if not args.quick:
        write_section(RESULTS, section, BEGIN, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Decoder-LM training throughput in tokens per second and model FLOPs utilisation (issue 9).

`lm1b_gpt` (8 blocks of width 512, sequence 256, bfloat16) as configured, on
tfds.testing.mock_data, with each attention implementation given (`--attention cudnn,xla` by
default on a GPU), its jitted train step run back to back on a batch already on the device.

Model FLOPs per token follow PaLM's accounting (Chowdhery et al. 2022, appendix B): 6 N for the
N non-embedding parameters (the output head included) plus 12 L T d for attention scores and
values, so MFU = tokens/s x FLOPs per token / the chip's dense bfloat16 peak (the table below;
other chips get no MFU).

    python -m benchmarks.lm_throughput                    # needs a GPU; updates RESULTS.md
    python -m benchmarks.lm_throughput --quick            # CPU smoke run of lm1b_gpt:quick
"""

import argparse
import datetime
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

import jax
import tensorflow_datasets as tfds
from absl import logging as absl_logging
from flax import traverse_util

from benchmarks.throughput import RESULTS, _machine, step_timer, write_section
from jaxdl import cli
from jaxdl.engine import loop
from jaxdl.engine.setup import init_state

EXPERIMENT = "lm1b_gpt"
BEGIN, END = "<!-- lm:begin -->", "<!-- lm:end -->"
# Dense bfloat16 peaks without sparsity, from the vendors' data sheets (FLOP/s).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def model_flops_per_token(plan: loop.Setup) -> float:
    """6 N (non-embedding parameters) + 12 L T d, per trained token."""
    params = traverse_util.flatten_dict(jax.device_get(init_state(plan).params), sep="/")
    embedding = sum(
        math.prod(leaf.shape)
        for path, leaf in params.items()
        if path.startswith("embed/") or "position_embedding" in path
    )
    total = sum(math.prod(leaf.shape) for leaf in params.values())
    model = plan.config.model
    length = plan.dataset.input_shape[0]
    return 6.0 * (total - embedding) + 12.0 * model.num_layers * length * model.hidden_size


def peak_flops() -> float | None:
    kind = jax.devices()[0].device_kind
    return next((peak for name, peak in PEAK_BF16.items() if name in kind), None)


def measure(attention: str, args: argparse.Namespace, data_dir: Path) -> dict:
    overrides = [
        f"--config.data.batch_size={args.batch}",
        f"--config.data.data_dir={data_dir}",
        f"--config.model.attention={attention}",
    ]
    name = f"{EXPERIMENT}:quick" if args.quick else EXPERIMENT
    with tfds.testing.mock_data(num_examples=max(4 * args.batch, 64)):
        plan = loop.setup(cli.parse_config(name, overrides))
        steps_per_second = step_timer(plan)(args.steps)
    tokens = steps_per_second * args.batch * plan.dataset.input_shape[0]
    flops = model_flops_per_token(plan)
    peak = peak_flops()
    return {
        "attention": attention,
        "dtype": plan.config.model.dtype,
        "batch": args.batch,
        "tokens_per_second": tokens,
        "flops_per_token": flops,
        "mfu": tokens * flops / peak if peak else None,
    }


def report(rows: Sequence[dict], args: argparse.Namespace) -> str:
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        BEGIN,
        "## Decoder-LM training throughput (`python -m benchmarks.lm_throughput`)"
        + (" — quick smoke run" if args.quick else ""),
        "",
        f"Measured {when} on {_machine()}; `{EXPERIMENT}`, {args.steps} steps, data on device.",
        "",
        "| Attention | dtype | Batch | Tokens/s | Model GFLOPs/token | MFU |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        mfu = f"{row['mfu']:.1%}" if row["mfu"] is not None else "n/a (unknown peak)"
        lines.append(
            f"| {row['attention']} | {row['dtype']} | {row['batch']} | "
            f"{row['tokens_per_second']:,.0f} | {row['flops_per_token'] / 1e9:.4f} | {mfu} |"
        )
    lines.append(END)
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU smoke run; writes nothing")
    parser.add_argument("--batch", type=int, default=None, help="global batch (default 64)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 30)")
    parser.add_argument("--attention", default=None, help="comma-separated implementations")
    args = parser.parse_args(argv)
    args.batch = args.batch or (8 if args.quick else 64)  # 8: divides the test suite's devices.
    args.steps = args.steps or (2 if args.quick else 30)
    args.attention = args.attention or ("xla" if args.quick else "cudnn,xla")
    absl_logging.set_verbosity(absl_logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="jaxdl-lm-bench-") as tmp:
        rows = [measure(name, args, Path(tmp)) for name in args.attention.split(",") if name]
    section = report(rows, args)
    print(section)
    if not args.quick:
        write_section(RESULTS, section, BEGIN, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

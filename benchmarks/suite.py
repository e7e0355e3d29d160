"""The model suite: jaxdl against PyTorch (eager and torch.compile) and the matmul peak.

For each reference model (reference.py) it starts one worker process per framework (worker.py),
each building and compiling once, then times them in turn, round after round, rotating which
goes first, so that all of them see the same machine load. It reports medians and spreads
(min-max over rounds) of training steps/s, the jaxdl/PyTorch ratios (of the medians), jaxdl's
compile time, peak host memory, achieved FLOP/s from the analytic count (cross-checked against
XLA's cost analysis) as a fraction of the 2048x2048 matmul peak measured in the same run, and
jaxdl's steps/s with batches taken from the input pipeline as the engine's loop takes them.

PyTorch is a benchmark-only extra (`pip install -e '.[bench]'`); without it the torch columns
are empty and the suite says so.
"""

import dataclasses
import datetime
import importlib.util
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.reference import REFERENCES
from benchmarks.throughput import cpu_description

TORCH_FRAMEWORKS = ("torch_eager", "torch_compile")
BEGIN, END = "<!-- suite:begin -->", "<!-- suite:end -->"
HERE = Path(__file__).resolve().parent


@dataclasses.dataclass
class Settings:
    rounds: int = 5
    window_s: float = 3.0  # Seconds per timed window (at least MIN_STEPS steps).
    min_steps: int = 3
    torch_frameworks: tuple[str, ...] = TORCH_FRAMEWORKS


class Worker:
    """A worker.py process, speaking one JSON line per command."""

    def __init__(self, framework: str, model: str, scratch: Path):
        self.framework = framework
        self._process = subprocess.Popen(
            [
                *(sys.executable, "-m", "benchmarks.worker", framework, model),
                *("--scratch", str(scratch)),
            ],
            cwd=HERE.parent,
            env=_cold_cache_env(scratch),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.facts = self._reply()

    def _reply(self) -> dict[str, Any]:
        line = self._process.stdout.readline()
        if not line:
            code = self._process.wait()
            raise RuntimeError(f"benchmark worker {self.framework} exited with code {code}")
        return json.loads(line)

    def ask(self, command: str, count: int) -> float:
        self._process.stdin.write(f"{command} {count}\n")
        self._process.stdin.flush()
        return self._reply()["steps_per_s"]

    def close(self) -> float:
        """Ends the process; returns its peak resident memory in MB."""
        self._process.stdin.write("quit\n")
        self._process.stdin.flush()
        peak = self._reply()["peak_mem_mb"]
        self._process.wait()
        return peak


def _cold_cache_env(scratch: Path) -> dict[str, str]:
    """The environment with no warm compilation cache: reported compile times are cold ones."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["TORCHINDUCTOR_CACHE_DIR"] = str(scratch / "inductor")
    return env


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def _count(rate: float, settings: Settings) -> int:
    return max(settings.min_steps, round(rate * settings.window_s))


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure_peak(scratch: Path, settings: Settings) -> dict[str, float]:
    """FLOP/s of XLA's 2048x2048 float32 matmul: median and spread over the rounds."""
    worker = Worker("matmul", "-", scratch)
    flops = worker.facts["flops_per_call"]
    count = _count(worker.ask("time", 2), settings)
    rates = [worker.ask("time", count) * flops for _ in range(settings.rounds)]
    worker.close()
    return _spread(rates)


def measure_model(name: str, scratch: Path, settings: Settings, peak: float) -> dict[str, Any]:
    """One record of results.json: every framework of one model, alternated round by round."""
    reference = REFERENCES[name]
    frameworks = ["jaxdl", *settings.torch_frameworks]
    # Started one at a time: a compile never shares the cores with another.
    workers = {fw: Worker(fw, name, scratch) for fw in frameworks}
    counts = {
        fw: _count(worker.ask("time", settings.min_steps), settings)
        for fw, worker in workers.items()
    }
    rates: dict[str, list[float]] = {fw: [] for fw in [*frameworks, "jaxdl_pipeline"]}
    for round_index in range(settings.rounds):
        shift = round_index % len(frameworks)
        for fw in frameworks[shift:] + frameworks[:shift]:
            rates[fw].append(workers[fw].ask("time", counts[fw]))
            if fw == "jaxdl":
                rates["jaxdl_pipeline"].append(workers[fw].ask("pipeline", counts[fw]))
    facts = {fw: worker.facts for fw, worker in workers.items()}
    peaks = {fw: worker.close() for fw, worker in workers.items()}
    spreads = {fw: _spread(values) for fw, values in rates.items()}

    def median(fw: str) -> float | None:
        return spreads[fw]["median"] if fw in spreads else None

    jaxdl = median("jaxdl")
    eager, compiled = median("torch_eager"), median("torch_compile")
    flops = reference.train_flops_per_step
    return {
        "model": name,
        "description": reference.description,
        "batch_size": reference.batch_size,
        "jaxdl_steps_per_s": jaxdl,
        "jaxdl_samples_per_s": jaxdl * reference.batch_size,
        "jaxdl_pipeline_steps_per_s": median("jaxdl_pipeline"),
        "torch_eager_steps_per_s": eager,
        "torch_compile_steps_per_s": compiled,
        "ratio_vs_eager": jaxdl / eager if eager else None,
        "ratio_vs_compile": jaxdl / compiled if compiled else None,
        "compile_s": facts["jaxdl"]["compile_s"],
        "torch_compile_s": facts.get("torch_compile", {}).get("compile_s"),
        "peak_mem_mb": peaks["jaxdl"],
        "torch_peak_mem_mb": {fw: peaks[fw] for fw in TORCH_FRAMEWORKS if fw in peaks},
        "train_flops_per_step": flops,
        "xla_flops_per_step": facts["jaxdl"]["xla_flops_per_step"],
        "flops_per_s": flops * jaxdl,
        "flops_fraction_of_peak": flops * jaxdl / peak,
        "parameters": {fw: fact["parameters"] for fw, fact in facts.items()},
        "rounds": {fw: spread for fw, spread in spreads.items()},
        "steps_per_window": counts,
    }


def versions() -> str:
    import jax

    parts = [f"JAX {jax.__version__} ({jax.default_backend()})"]
    if torch_available():
        import torch

        parts.append(f"PyTorch {torch.__version__}")
    return ", ".join(parts)


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def report(records: Sequence[dict], peak: dict[str, float], settings: Settings) -> str:
    """The markdown section of RESULTS.md."""
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        BEGIN,
        "## Model suite against PyTorch (`make bench`, `python -m benchmarks`)",
        "",
        f"Measured {when} on {cpu_description()}, {versions()}, float32, {settings.rounds} rounds "
        f"of about {settings.window_s:g} s per framework, alternated; medians (min-max). "
        f"Matmul peak (XLA, 2048x2048): {peak['median'] / 1e9:.0f} GFLOP/s "
        f"({peak['min'] / 1e9:.0f}-{peak['max'] / 1e9:.0f}).",
        "",
        "| Model | jaxdl steps/s | with input pipeline | torch eager | torch.compile | "
        "vs eager | vs compile | compile s | peak MB | % of matmul peak |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in records:
        rounds = row["rounds"]

        def cell(fw: str, rounds: dict = rounds) -> str:
            if fw not in rounds:
                return "n/a"
            r = rounds[fw]
            return f"{r['median']:.3g} ({r['min']:.3g}-{r['max']:.3g})"

        lines.append(
            f"| {row['model']} | {cell('jaxdl')} | {cell('jaxdl_pipeline')} | "
            f"{cell('torch_eager')} | {cell('torch_compile')} | {_fmt(row['ratio_vs_eager'])} | "
            f"{_fmt(row['ratio_vs_compile'])} | {row['compile_s']:.1f} | "
            f"{row['peak_mem_mb']:.0f} | {100 * row['flops_fraction_of_peak']:.0f}% |"
        )
    lines += [
        "",
        "FLOPs per training step, analytic (reference.py) and XLA's cost analysis (which counts "
        "a loop's body once, so it undercounts the LSTM's scan):",
        "",
    ]
    for row in records:
        lines.append(
            f"- {row['model']} ({row['description']}): {row['train_flops_per_step'] / 1e9:.2f} "
            f"GFLOP analytic, {row['xla_flops_per_step'] / 1e9:.2f} GFLOP XLA"
        )
    if not settings.torch_frameworks:
        lines += ["", "No PyTorch columns: left out by --frameworks, or PyTorch is not installed."]
    lines.append(END)
    return "\n".join(lines) + "\n"


def chart(records: Sequence[dict], path: Path) -> None:
    """Bar chart of steps/s relative to PyTorch eager (1.0), one group per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [
        ("jaxdl", "jaxdl_steps_per_s"),
        ("torch eager", "torch_eager_steps_per_s"),
        ("torch.compile", "torch_compile_steps_per_s"),
    ]
    figure, axes = plt.subplots(figsize=(1.6 * len(records) + 2, 3.6))
    width = 0.27
    for index, (label, key) in enumerate(series):
        values = []
        for row in records:
            base = row["torch_eager_steps_per_s"] or row["jaxdl_steps_per_s"]
            values.append((row[key] or 0.0) / base)
        positions = [i + (index - 1) * width for i in range(len(records))]
        axes.bar(positions, values, width, label=label)
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_xticks(range(len(records)), [row["model"] for row in records])
    axes.set_ylabel("training steps/s vs torch eager")
    axes.legend(frameon=False, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)

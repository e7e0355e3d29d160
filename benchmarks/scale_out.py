"""Scale-out check: the same experiment on 1 device, on 8 virtual CPU devices in every mesh
layout and in the shard_map mode, and in 2 processes; test loss and steps/s side by side.

Every run is the real CLI in a fresh process (`XLA_FLAGS=--xla_force_host_platform_device_count`
sets the device count), so the figures are what a user's run reports in summary.json.

    python -m benchmarks.scale_out                   # both experiments; updates RESULTS.md
    python -m benchmarks.scale_out --experiments digits_mlp --quick   # a smoke run
"""

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import tempfile
from pathlib import Path

from jaxdl import train

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
BEGIN, END = "<!-- scale-out:begin -->", "<!-- scale-out:end -->"

# (name, devices per process, overrides)
LAYOUTS = (
    ("1 device", 1, ()),
    ("data=8", 8, ("--config.mesh.data=8",)),
    ("data=4 fsdp=2", 8, ("--config.mesh.data=4", "--config.mesh.fsdp=2")),
    ("data=2 tensor=4", 8, ("--config.mesh.data=2", "--config.mesh.tensor=4")),
    ("data=8 shard_map", 8, ("--config.mesh.data=8", "--config.mesh.mode=shard_map")),
)


def _command(experiment: str, workdir: Path, overrides: tuple[str, ...]) -> list[str]:
    return train.command(experiment, workdir, "--config.train.progress_bar=False", *overrides)


def _env(devices: int) -> dict[str, str]:
    return {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
    }


def _summary(workdir: Path, processes: list[subprocess.Popen]) -> dict:
    for process in processes:
        _, err = process.communicate(timeout=3600)
        if process.returncode:
            raise SystemExit(f"{' '.join(process.args)} failed:\n{err[-3000:]}")
    return json.loads((workdir / "summary.json").read_text())


def run_layout(experiment: str, workdir: Path, devices: int, overrides: tuple[str, ...]) -> dict:
    process = subprocess.Popen(
        _command(experiment, workdir, overrides),
        cwd=REPO,
        env=_env(devices),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return _summary(workdir, [process])


def run_two_processes(experiment: str, workdir: Path, overrides: tuple[str, ...]) -> dict:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    processes = [
        subprocess.Popen(
            [
                *_command(experiment, workdir, overrides),
                f"--coordinator_address=127.0.0.1:{port}",
                "--num_processes=2",
                f"--process_id={rank}",
            ],
            cwd=REPO,
            env=_env(1),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    return _summary(workdir, processes)


def measure(experiments: list[str], quick: bool) -> list[dict]:
    rows = []
    extra = ("--config.train.num_steps=60", "--config.train.eval_every=30") if quick else ()
    with tempfile.TemporaryDirectory(prefix="jaxdl-scale-out-") as tmp:
        for experiment in experiments:
            runs = [
                (name, run_layout(experiment, Path(tmp) / experiment / name, devices, extra + o))
                for name, devices, o in LAYOUTS
            ]
            if experiment == "digits_mlp":
                runs.append(
                    (
                        "2 processes x 1 device",
                        run_two_processes(experiment, Path(tmp) / experiment / "two", extra),
                    )
                )
            reference = runs[0][1]["final_metrics"]["test/loss"]
            for name, summary in runs:
                loss = summary["final_metrics"]["test/loss"]
                rows.append(
                    {
                        "experiment": experiment,
                        "layout": name,
                        "test_loss": loss,
                        "relative_to_1_device": abs(loss - reference) / reference,
                        "test_accuracy": summary["final_metrics"]["test/accuracy"],
                        "steps_per_second": summary["steps_per_second"],
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| experiment | layout | test loss | vs 1 device (relative) | test accuracy | steps/s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['experiment']} | {r['layout']} | {r['test_loss']:.5f} | "
            f"{r['relative_to_1_device']:.1e} | {100 * r['test_accuracy']:.2f}% | "
            f"{r['steps_per_second']:.1f} |"
        )
    return "\n".join(lines)


def write_results(rows: list[dict]) -> None:
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    stamp = datetime.date.today().isoformat()
    block = (
        f"{BEGIN}\nMeasured {stamp} on {machine} (CPU; `python -m benchmarks.scale_out`; the 8 "
        "devices are virtual, all sharing the same cores).\n\n" + table(rows) + f"\n{END}"
    )
    text = RESULTS.read_text()
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text = (
            text.rstrip()
            + "\n\n## Scale-out (`python -m benchmarks.scale_out`, issue 7)\n\n"
            + block
            + "\n"
        )
    RESULTS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", default="digits_mlp,digits_cnn")
    parser.add_argument("--quick", action="store_true", help="60 steps each; nothing written")
    args = parser.parse_args()
    rows = measure(args.experiments.split(","), args.quick)
    print(table(rows))
    if not args.quick:
        write_results(rows)


if __name__ == "__main__":
    main()

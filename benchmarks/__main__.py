"""`make bench`: the model suite against PyTorch, then the engine's end-to-end throughput.

    python -m benchmarks                          # everything; writes benchmarks/RESULTS.md,
                                                  # results.json and suite.png
    python -m benchmarks --models cnn,resnet18    # some reference models only
    python -m benchmarks --quick                  # a smoke run: the MLP, one short round,
                                                  # nothing written unless --out is given

Models: mlp, cnn, resnet18, gpt, lstm (benchmarks/reference.py). PyTorch comes from the
benchmark-only extra: `pip install -e '.[bench]'`.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks import suite, throughput
from benchmarks.reference import REFERENCES

FRAMEWORKS = ("jaxdl", *suite.TORCH_FRAMEWORKS)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--models", default="", help="comma-separated; default all (quick: mlp)")
    parser.add_argument("--quick", action="store_true", help="one short round, nothing written")
    parser.add_argument("--rounds", type=int, default=0, help="default 5 (quick: 1)")
    parser.add_argument("--window", type=float, default=0.0, help="seconds per timed window")
    parser.add_argument(
        "--frameworks", default="", help=f"comma-separated subset of {','.join(FRAMEWORKS)}"
    )
    parser.add_argument("--out", type=Path, default=None, help="folder for the results")
    parser.add_argument("--skip-engine", action="store_true", help="model suite only")
    args = parser.parse_args(argv)

    names = [
        n for n in (args.models or ("mlp" if args.quick else ",".join(REFERENCES))).split(",") if n
    ]
    unknown = [n for n in names if n not in REFERENCES]
    if unknown:
        return _fail(
            f"--models: unknown model(s) {', '.join(unknown)}; choose from {', '.join(REFERENCES)}."
        )
    frameworks = [f for f in (args.frameworks or ",".join(FRAMEWORKS)).split(",") if f]
    if "jaxdl" not in frameworks or not set(frameworks) <= set(FRAMEWORKS):
        return _fail(
            f"--frameworks={args.frameworks!r}: give jaxdl plus any of {', '.join(suite.TORCH_FRAMEWORKS)}."
        )
    if args.rounds < 0 or args.window < 0:
        return _fail("--rounds and --window must be positive.")
    out = args.out if args.out is not None else (None if args.quick else suite.HERE)
    if out is not None and out.exists() and not out.is_dir():
        return _fail(f"--out {out} is a file; give a folder.")

    torch_wanted = [f for f in frameworks if f != "jaxdl"]
    if torch_wanted and not suite.torch_available():
        print("PyTorch is not installed (pip install -e '.[bench]'): jaxdl only.", file=sys.stderr)
        torch_wanted = []
    full = suite.Settings()
    settings = suite.Settings(
        rounds=args.rounds or (1 if args.quick else full.rounds),
        window_s=args.window or (0.2 if args.quick else full.window_s),
        min_steps=2 if args.quick else full.min_steps,
        torch_frameworks=tuple(torch_wanted),
    )
    with tempfile.TemporaryDirectory(prefix="jaxdl-suite-") as tmp:
        scratch = Path(tmp)
        peak = suite.measure_peak(scratch, settings)
        records = []
        for name in names:
            print(f"benchmarking {name} ...", file=sys.stderr, flush=True)
            records.append(suite.measure_model(name, scratch, settings, peak["median"]))
    section = suite.report(records, peak, settings)
    print(section)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        payload = {
            "machine": throughput.cpu_description(),
            "versions": suite.versions(),
            "matmul_peak_flops": peak,
            "models": records,
        }
        (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
        suite.chart(records, out / "suite.png")
        throughput.write_section(out / "RESULTS.md", section, suite.BEGIN, suite.END)
        print(f"wrote {out / 'results.json'}, {out / 'suite.png'} and {out / 'RESULTS.md'}")
    if not (args.quick or args.skip_engine):
        # In a process of its own, which starts as the `jaxdl` command does (huge pages, see
        # jaxdl/huge_pages.py); this one also starts the PyTorch workers and must not pass it on.
        results = str((out or suite.HERE) / "RESULTS.md")
        command = [sys.executable, "-m", "benchmarks.throughput", "--results", results]
        return subprocess.call(command)
    return 0


if __name__ == "__main__":
    sys.exit(main())

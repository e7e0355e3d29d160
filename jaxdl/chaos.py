"""Chaos test: kill a training run again and again; it must end exactly where an unbroken run does.

    python -m jaxdl.chaos                    # 20 kills of experiments/digits_cnn.py (`make chaos`)
    python -m jaxdl.chaos --config digits_cnn:quick --kills 3 --override --config.seed=1

Three runs of one command under --dir: `clean` runs uninterrupted; `chaos` gets a seeded mix of
SIGTERM (it must save and exit 75), SIGKILL from outside, SIGKILL inside a checkpoint save
(JAXDL_FAULTS=kill_during_save) and one truncated checkpoint file, and is started again after
each; `nan` gets a few non-finite updates, which must be skipped and counted. After every kill
the next process must resume at or after the newest checkpoint complete when the kill was sent,
and the chaos run must end with the clean run's parameters and metrics.jsonl. The last line sums
up; <dir>/chaos.json holds every figure. Exit 0 if all passed, 1 if not, 2 on bad arguments.
"""

import argparse
import datetime
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from jaxdl import train
from jaxdl.cli import parse_config
from jaxdl.engine.metrics_log import read_records
from jaxdl.engine.preemption import EXIT_PREEMPTED
from jaxdl.errors import UserInputError

REPO = Path(__file__).resolve().parents[1]
_START = re.compile(r"resuming at step (\d+)|, (starting)$|(already holds a finished run)", re.M)
_EVAL = re.compile(r"^step (\d+): val ", re.M)
Record = dict[str, Any]


def complete_steps(workdir: Path) -> list[int]:
    """Steps whose checkpoint Orbax finished (one being saved has an .orbax-checkpoint-tmp name)."""
    steps = []
    for path in (workdir / "checkpoints").glob("*"):
        try:  # The running process may delete an old checkpoint while we look.
            if path.name.isdigit() and not any("checkpoint-tmp" in p.name for p in path.iterdir()):
                steps.append(int(path.name))
        except OSError:
            continue
    return sorted(steps)


def start_step(log: Path, workdir: Path) -> int | None:
    """Where a process began, by its start line: 0 if fresh, None if killed before it got there."""
    match = _START.search(log.read_text())
    if match is None:
        return None
    if match[3]:  # The process before it finished the run: nothing left to do.
        return json.loads((workdir / "summary.json").read_text())["steps"]
    return int(match[1]) if match[1] else 0


def catches_sigterm(pid: int) -> bool:
    """Whether jaxdl's SIGTERM handler is installed (Linux /proc; elsewhere assumed).

    Before it is (interpreter start, imports: about 1.5 s) and after it is removed again, SIGTERM
    does Python's default and kills like a SIGKILL: not the preemption this tests."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    caught = int(re.search(r"^SigCgt:\s*([0-9a-f]+)", status, re.M)[1], 16)
    return bool(caught >> (signal.SIGTERM - 1) & 1)


class Harness:
    def __init__(self, args: argparse.Namespace, overrides: list[str], train: Any):
        self.args, self.overrides, self.train = args, overrides, train
        self.workdir = args.dir / "chaos"
        (args.dir / "logs").mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # A SIGKILL must not eat log lines.
        # Restarts skip compiling; executables, hence results, are the same (as in tests/conftest).
        self.cache = (
            None
            if "JAX_COMPILATION_CACHE_DIR" in os.environ
            else tempfile.mkdtemp(prefix="jaxdl-chaos-")
        )
        self.env.setdefault("JAX_COMPILATION_CACHE_DIR", self.cache or "")
        self.env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        self.children, self.limit = 0, 600.0  # The limit per process, until the clean run ran.
        self.kills: list[Record] = []
        self.pending: list[Record] = []  # Kills whose next process has not yet said where it began.
        self.truncated: Record | None = None

    def say(self, message: str) -> None:
        if not self.args.quiet:
            print(f"chaos: {message}", flush=True)

    def spawn(self, run: str, faults: str = "") -> tuple[subprocess.Popen, Path, float]:
        self.children += 1
        out = self.args.dir / "logs" / f"{self.children:02d}-{run}{faults and '-' + faults}.out"
        command = train.command(self.args.config, self.args.dir / run, *self.overrides)
        env = {**self.env, "JAXDL_FAULTS": faults}
        with out.open("w") as stdout, out.with_suffix(".err").open("w") as stderr:
            process = subprocess.Popen(command, cwd=REPO, stdout=stdout, stderr=stderr, env=env)
        if self.truncated is not None:
            self.truncated["logs"].append(str(out))
        return process, out, time.monotonic()

    def wait(self, process: subprocess.Popen, timeout: float | None = None) -> int | None:
        """The exit code; with no timeout, a process still running after `limit` is killed."""
        try:
            return process.wait(timeout=self.limit if timeout is None else max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            if timeout is not None:
                return None
            process.kill()
            process.wait()
            raise RuntimeError(f"pid {process.pid} still ran after {self.limit:.0f} s") from None

    def clean(self) -> Record:
        """The reference run; also times startup (to the start line) and steady training."""
        process, out, began = self.spawn("clean")
        startup, evals = None, {}
        while process.poll() is None:  # The log's lines, as they come, say when things happened.
            text, now = out.read_text(), time.monotonic()
            startup = startup or (now - began if _START.search(text) else None)
            evals.update({int(s): now for s in _EVAL.findall(text) if int(s) not in evals})
            time.sleep(0.05)
        wall = time.monotonic() - began
        if process.returncode != 0:
            raise RuntimeError(f"the clean run exited {process.returncode}; see {out}")
        summary = json.loads((self.args.dir / "clean" / "summary.json").read_text())
        # Training time from the evaluations' spacing: wall_seconds includes compiling, which
        # restarts skip, and would put the kills late.
        training, first, last = summary["wall_seconds"], min(evals or [0]), max(evals or [0])
        if last > first:
            training = (evals[last] - evals[first]) / (last - first) * self.train.num_steps
        self.limit = 60.0 + 3.0 * wall
        startup = startup or wall - summary["wall_seconds"]
        record = {"wall_s": wall, "startup_s": startup, "training_s": training}
        return {**record, "fingerprint": summary["params_fingerprint"]}

    def resolve(self, out: Path) -> None:
        """Checks the pending kills against where the process logged in `out` began."""
        step = start_step(out, self.workdir)
        if step is None:
            return  # Killed before it restored: a later process answers for these kills.
        for kill in self.pending:
            kill.update(resumed_at=step, lost=step < (kill["newest_complete"] or 0))
            kill["survived"] = kill["exit_ok"] and not kill["lost"]
            verdict = "survived" if kill["survived"] else "FAILED"
            self.say(f"kill {kill['kill']}: next process resumed at step {step}: {verdict}")
        self.pending.clear()
        if self.truncated is not None:
            self.truncated.setdefault("resumed_at", step)

    def newest_readable(self, steps: list[int]) -> int | None:
        """The newest of `steps` a restart can restore: not the checkpoint truncated on purpose
        while its file is still cut (a kill after the truncation must not be held to it)."""
        if self.truncated is not None:
            cut = Path(self.truncated["file"])
            if cut.exists() and cut.stat().st_size == self.truncated["size"] // 2:
                steps = [step for step in steps if step != self.truncated["step"]]
        return max(steps, default=None)

    def truncate(self) -> None:
        """Halves the largest file of the newest checkpoint's state; the next start must skip it."""
        steps = complete_steps(self.workdir)
        if self.truncated or len(steps) < 2 or (self.workdir / "summary.json").exists():
            return  # Once; only with an older one to fall back to; never when none would read it.
        state = self.workdir / "checkpoints" / str(steps[-1]) / "state"
        target = max((p for p in state.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
        size = target.stat().st_size
        os.truncate(target, size // 2)
        self.truncated = {"step": steps[-1], "file": str(target), "size": size, "logs": []}
        for kill in self.pending:  # Broken on purpose: the one before it is what they can expect.
            if kill["newest_complete"] == steps[-1]:
                kill["newest_complete"] = steps[-2]
        self.say(f"truncated {target} of checkpoint {steps[-1]} to {size // 2} bytes")

    def kill(self, kill: Record, delay: float) -> bool:
        """Starts a process and ends it with kill['signal']; False if it finished first."""
        process, out, began = self.spawn("chaos", kill["faults"])
        kill["log"], name = str(out), kill["signal"]
        if kill["faults"]:  # kill_during_save: it kills itself.
            code = self.wait(process)
            kill["checkpoints"] = complete_steps(self.workdir)  # On CPU earlier saves completed.
            save = kill["faults"].partition("=")[2]
            tmp = (self.workdir / "checkpoints" / f"{save}.orbax-checkpoint-tmp").exists()
            kill["landed_in_save"] = tmp and int(save) not in kill["checkpoints"]
        else:
            code = self.wait(process, delay - (time.monotonic() - began))
            if code is None and name == "SIGTERM":
                waited = time.monotonic()
                while process.poll() is None and not catches_sigterm(process.pid):
                    time.sleep(0.02)
                kill["waited_for_handler_s"] = round(time.monotonic() - waited, 3)
                code = process.poll()
            if code == 0:
                return False
            kill["checkpoints"] = complete_steps(self.workdir)
            if code is None:
                sent = time.monotonic()
                process.send_signal(getattr(signal, name))
                code = self.wait(process)
                kill["sent_after_s"] = round(sent - began, 3)
                kill["exit_s"] = round(time.monotonic() - sent, 3)
        expected = -signal.SIGKILL if name == "SIGKILL" else EXIT_PREEMPTED
        kill.update(exit_code=code, expected_exit=expected, exit_ok=code == expected)
        kill["newest_complete"] = self.newest_readable(kill["checkpoints"])
        after = f" {kill['exit_s']:.1f} s after it" if "exit_s" in kill else ""
        after += "" if kill["exit_ok"] else f" (expected {expected})"
        self.say(
            f"kill {kill['kill']}/{self.args.kills}: {name} ({kill['faults'] or 'external'}) at "
            f"{time.monotonic() - began:.1f} s: exit {code}{after}; complete {kill['checkpoints']}"
        )
        return True

    def chaos(self, clean: Record) -> str | None:
        """The chaos run; returns what went wrong beyond the kills' own records, if anything."""
        rng, kills = random.Random(self.args.seed), self.args.kills
        signals = ["SIGTERM"] * (kills // 2) + ["SIGKILL"] * (kills - kills // 2)
        rng.shuffle(signals)
        # A quarter of the SIGKILLs strike inside a save, at a checkpoint step 1 or 2 intervals
        # past the newest: external kills rarely hit that short window.
        sigkills = [i for i, name in enumerate(signals) if name == "SIGKILL"]
        in_save = set(rng.sample(sigkills, int(len(sigkills) / 4 + 0.5)))
        fractions, ahead = [rng.random() for _ in signals], [rng.randint(1, 2) for _ in signals]
        truncate_after = rng.randrange(kills)
        # Some kills land in startup; the rest spread over the training time.
        low, high = 0.5 * clean["startup_s"], clean["startup_s"] + 1.5 * clean["training_s"] / kills
        for index, name in enumerate(signals):
            if self.args.truncate and index >= truncate_after:
                self.truncate()
            newest = max(complete_steps(self.workdir), default=0)
            every = self.train.checkpoint_every
            saves = [s for s in range(every, self.train.num_steps, every) if s > newest]
            saves.append(self.train.num_steps)  # The last step always saves.
            save = saves[min(ahead[index], len(saves)) - 1]
            faults = f"kill_during_save={save}" if index in in_save and save > newest else ""
            kill = {"kill": index + 1, "signal": name, "faults": faults}
            delivered = self.kill(kill, low + fractions[index] * (high - low))
            self.resolve(Path(kill["log"]))
            if not delivered:
                self.say(f"the run finished before kill {index + 1}; {index} kills delivered")
                return None
            self.kills.append(kill)
            self.pending.append(kill)
            if kill["exit_code"] not in (-signal.SIGKILL, -signal.SIGTERM, EXIT_PREEMPTED):
                return f"kill {index + 1}: exit {kill['exit_code']}, see {kill['log']} and .err"
        if self.args.truncate:
            self.truncate()
        process, out, _ = self.spawn("chaos")
        code = self.wait(process)
        self.resolve(out)
        return None if code == 0 else f"the last chaos process exited {code}, see {out} and .err"

    def check_truncation(self) -> bool:
        """The broken checkpoint was reported, moved aside, and an older one used instead."""
        if self.truncated is None:
            self.say("no truncation: never two complete checkpoints in an unfinished run")
            return True
        step, logs = self.truncated["step"], map(Path, self.truncated["logs"])
        reported = any(f"checkpoint step {step} cannot be read" in p.read_text() for p in logs)
        moved = any((self.workdir / "unreadable_checkpoints").glob(f"{step}-*"))
        survived = reported and moved and self.truncated.get("resumed_at", step) < step
        self.say(f"truncated checkpoint {step}: {'survived' if survived else 'FAILED'}")
        self.truncated["survived"] = survived
        return survived

    def nan(self, first: int, last: int) -> Record:
        """Non-finite updates at steps first..last: the run must skip, count, and finish."""
        process, _, _ = self.spawn("nan", f"nan_at_step={first}-{last}")
        code = self.wait(process)
        path = self.args.dir / "nan" / "summary.json"
        summary = json.loads(path.read_text()) if path.exists() else {"nonfinite": {}}
        skipped = summary["nonfinite"].get("skipped_updates")
        passed = code == 0 and skipped == last - first + 1
        return {"steps": [first, last], "exit_code": code, "skipped": skipped, "passed": passed}


def nan_steps(spec: str, train: Any) -> tuple[int, int] | None:
    """`A-B`, `A` or `off`; by default three steps a tenth of the way in."""
    if spec == "off":
        return None
    start = train.num_steps // 10 + 1
    spec = spec or f"{start}-{start + 2}"
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", spec)
    first, last = (int(match[1]), int(match[2] or match[1])) if match else (0, 0)
    # Fewer than train.nonfinite_patience in a row: more would roll back, not just skip.
    if not (1 <= first <= last <= train.num_steps and last - first < train.nonfinite_patience - 1):
        raise UserInputError(
            f"--nan-steps {spec}: expected A-B, A or off, with 1 <= A <= B <= {train.num_steps} "
            f"and fewer than train.nonfinite_patience={train.nonfinite_patience} steps."
        )
    return first, last


def run(harness: Harness, nan: tuple[int, int] | None) -> int:
    args = harness.args
    harness.say(f"{args.kills} kills of {args.config} {' '.join(harness.overrides)} in {args.dir}")
    clean = harness.clean()
    harness.say(
        f"clean run: {clean['wall_s']:.1f} s, startup {clean['startup_s']:.1f} s, training "
        f"{clean['training_s']:.1f} s, fingerprint {clean['fingerprint'][:16]}"
    )
    error = harness.chaos(clean)
    if error:
        harness.say(f"ERROR: {error}")
    truncation_ok = not args.truncate or harness.check_truncation()
    kills = harness.kills
    survived = sum(bool(kill.get("survived")) for kill in kills)
    lost = sum(bool(kill.get("lost")) for kill in kills)
    path = args.dir / "chaos" / "summary.json"
    fingerprint = json.loads(path.read_text())["params_fingerprint"] if path.exists() else None
    words = {None: "MISSING", clean["fingerprint"]: "identical"}.get(fingerprint, "DIFFERENT")
    if read_records(args.dir / "chaos") != read_records(args.dir / "clean"):
        words += " but metrics.jsonl DIFFERENT"
    sigterm = [kill["exit_s"] for kill in kills if kill["signal"] == "SIGTERM" and "exit_s" in kill]
    median = statistics.median(sigterm) if sigterm else 0.0
    sigterm_text = f"median {median:.1f} s (max {max(sigterm):.1f} s)" if sigterm else "n/a"
    nan_result = harness.nan(*nan) if nan else None
    nan_text = f"{nan_result['skipped']} skipped updates reported" if nan_result else "off"
    if nan_result and not nan_result["passed"]:
        nan_text += f" (expected {nan[1] - nan[0] + 1}; exit {nan_result['exit_code']})"
    passed = error is None and survived == len(kills) and lost == 0 and words == "identical"
    passed = passed and median < 10.0 and truncation_ok and (not nan or nan_result["passed"])
    figures = {
        "config": args.config, "overrides": harness.overrides, "seed": args.seed,
        "kills_planned": args.kills, "kills_delivered": len(kills), "survived": survived,
        "checkpoints_lost": lost, "fingerprint": words, "sigterm_exit_s": sigterm, "error": error,
        "clean": clean, "kills": kills, "truncated": harness.truncated, "nan": nan_result,
        "passed": passed,
    }  # fmt: skip
    (args.dir / "chaos.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(
        f"chaos: {survived}/{len(kills)} kills survived, fingerprint {words}, {lost} checkpoints "
        f"lost, sigterm exit {sigterm_text}, nan: {nan_text}",
        flush=True,
    )
    return 0 if passed else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser("python -m jaxdl.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="digits_cnn", help="experiment, as for jaxdl train")
    parser.add_argument("--kills", type=int, default=20, help="half SIGTERM, half SIGKILL")
    parser.add_argument("--seed", type=int, default=0, help="seeds the signals, delays and steps")
    parser.add_argument("--dir", type=Path, help="a new or empty dir (default runs/chaos-<stamp>)")
    parser.add_argument(
        "--override", action="append", default=[], metavar="--config.FIELD=VALUE",
        help="a config override for all three runs (repeatable). train.checkpoint_every defaults "
        "to a tenth of train.num_steps: ten checkpoints per run, a few between kills",
    )  # fmt: skip
    parser.add_argument("--nan-steps", default="", help="A-B, A or off (default: 3 steps early)")
    parser.add_argument("--no-truncate", dest="truncate", action="store_false", help="no bad file")
    parser.add_argument("--quiet", action="store_true", help="print the last line only")
    argv = list(sys.argv[1:] if argv is None else argv)
    for i in range(len(argv) - 1):  # argparse reads `--override --config.x=1` as two options.
        if argv[i] == "--override" and argv[i + 1].startswith("--config."):
            argv[i : i + 2] = [f"--override={argv[i + 1]}", None]
    args = parser.parse_args([arg for arg in argv if arg is not None])
    try:
        if args.kills < 1:
            raise UserInputError("--kills must be at least 1.")
        overrides = list(args.override)
        if not any(o.startswith("--config.train.checkpoint_every") for o in overrides):
            # The harness must know it (kill_during_save steps), and every run must use it.
            every = max(1, parse_config(args.config, overrides).train.num_steps // 10)
            overrides.insert(0, f"--config.train.checkpoint_every={every}")
        train = parse_config(args.config, overrides).train
        nan = nan_steps(args.nan_steps, train)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        args.dir = (args.dir or Path("runs") / f"chaos-{stamp}").absolute()
        if args.dir.exists() and any(args.dir.iterdir()):
            raise UserInputError(f"--dir {args.dir} is not empty; name a new one.")
    except UserInputError as error:
        print(f"chaos: error: {error}", file=sys.stderr)
        return 2
    harness = Harness(args, overrides, train)
    try:
        return run(harness, nan)
    except RuntimeError as error:  # A run that hung, or a clean run that failed.
        print(f"chaos: error: {error}", file=sys.stderr)
        return 1
    finally:
        if harness.cache:
            shutil.rmtree(harness.cache, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""One sweep trial: `python -m jaxdl.studies.trial --dir D --trial N [--cpus 0,1] -- TRAIN ARGS`.

Started by `jaxdl sweep` (sweep.py), never by hand. It is `jaxdl train` with one evaluation
callback (engine/loop_state.py) that reports the validation metric to the study after every
evaluation and stops the run as "pruned" when the study's pruner says so. The storage URL comes
in the environment (JAXDL_SWEEP_STORAGE), not on the command line other users can read.

The process stops with the worker that started it (Linux's parent-death signal, turned into
one SIGTERM, so it saves a checkpoint first), and holds a lock on its trial while it trains, so a restarted sweep's
new process for the same trial waits for the old one's last checkpoint instead of writing beside it.
"""

import argparse
import ctypes
import fcntl
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

from jaxdl.studies import sweep as sweep_lib
from jaxdl.studies import sweep_definition

PR_SET_PDEATHSIG = 1


class Reporter:
    """The engine's evaluation callback for one trial: report, then ask the pruner."""

    def __init__(self, study: Any, storage: Any, trial_id: int, metric: str):
        self.study, self.storage, self.trial_id, self.metric = study, storage, trial_id, metric

    def __call__(self, step: int, metrics: dict[str, float]) -> str | None:
        value = metrics.get(self.metric)
        if value is None or not math.isfinite(value):
            return None  # The run's own non-finite handling decides about it.
        self.storage.set_trial_intermediate_value(self.trial_id, step, float(value))
        trial = self.storage.get_trial(self.trial_id)
        return "pruned" if self.study.pruner.prune(self.study, trial) else None


def reporter_for(out: Path, number: int, url: str) -> Reporter:
    """The callback for trial `number` of the sweep in `out` (its sweep.json)."""
    import optuna

    from jaxdl.studies import study_store

    definition = sweep_definition.read_definition(out)
    storage = study_store.open_storage(url)
    study = optuna.load_study(
        study_name=definition.study,
        storage=storage,
        pruner=sweep_definition.make_pruner(definition),
    )
    study_id = storage.get_study_id_from_name(definition.study)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
    return Reporter(study, storage, trial_id, definition.metric)


def _die_with_parent(parent: int) -> None:
    """Arms Linux's parent-death signal. It can arrive more than once (the kernel sends it again
    as the orphan is passed between reapers), and a second SIGTERM means "exit now, no
    checkpoint" to `jaxdl train`: so it comes as SIGUSR2, turned into one SIGTERM here."""
    forwarded = []

    def forward(signum: int, frame: object) -> None:
        if not forwarded:
            forwarded.append(signum)
            signal.raise_signal(signal.SIGTERM)

    signal.signal(signal.SIGUSR2, forward)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGUSR2)
    except (OSError, AttributeError):
        pass  # Not Linux: the worker's own SIGTERM forwarding still stops it.
    if os.getppid() != parent:  # The worker died before the signal was armed.
        sys.exit(1)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxdl.studies.trial")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--trial", type=int, required=True)
    parser.add_argument("--parent", type=int)
    parser.add_argument("--cpus", help="cores this trial may use, e.g. 0,1")
    args, train_args = parser.parse_known_args(argv)
    train_args = train_args[1:] if train_args[:1] == ["--"] else train_args
    if args.parent:
        _die_with_parent(args.parent)
    if args.cpus and hasattr(os, "sched_setaffinity"):  # Before JAX sizes its thread pools.
        os.sched_setaffinity(0, {int(cpu) for cpu in args.cpus.split(",")})
    out = Path(args.dir)
    from jaxdl import cli
    from jaxdl.studies.commands import optuna_quiet

    optuna_quiet()
    lock_path = sweep_lib.trial_dir(out, args.trial).with_suffix(".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        reporter = reporter_for(out, args.trial, os.environ["JAXDL_SWEEP_STORAGE"])
        return cli.main(["train", *train_args], evaluation_callbacks=[reporter])


if __name__ == "__main__":
    from jaxdl import huge_pages

    huge_pages.reexec_with_huge_pages()  # As `jaxdl train` does (jaxdl/huge_pages.py).
    sys.exit(main(sys.argv[1:]))

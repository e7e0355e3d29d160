"""`jaxdl sweep`: an Optuna study whose trials are ordinary jaxdl runs.

Each worker (a thread here, `--workers` of them) takes a trial under the study-wide lock
(study_store.py), draws its overrides from the space (space.py) and trains it as
`python -m jaxdl.studies.trial` (trial.py) in `DIR/trials/NNNN/`, where the engine's evaluation
callback reports the validation metric to the study and stops the run if the pruner says so.
The trial's value is its best validation value of the experiment's `train.monitor` (the one its
best checkpoint was chosen by), in the monitor's direction.

The study lives in the storage (SQLite in DIR by default), so the same command continues a
stopped sweep and, given one `--storage` URL, several machines share one: `--trials` counts
every trial of the study. A trial interrupted anywhere is taken again with the same values and
resumes from its checkpoint. Samplers are re-seeded per trial from `--seed` and the trial's
number, so a sweep that was killed and continued draws what an uninterrupted one draws.
"""

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from jaxdl.engine.preemption import EXIT_PREEMPTED
from jaxdl.errors import EXIT_DIVERGED, UserInputError
from jaxdl.studies import space as space_lib
from jaxdl.studies import study_store
from jaxdl.studies.sweep_definition import (
    OVERRIDES_ATTR,
    RESULT_ATTR,
    Definition,
    make_pruner,
    make_sampler,
    open_study,
)


@dataclasses.dataclass(frozen=True)
class Job:
    number: int
    trial_id: int
    overrides: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Slot:
    """What one worker's trials may use: CPU cores, and GPUs where there are enough."""

    cpus: tuple[int, ...]
    env: dict[str, str]


def _gpu_ids() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [part for part in visible.split(",") if part.strip()]
    gpus = Path("/proc/driver/nvidia/gpus")
    return [str(i) for i in range(len(list(gpus.iterdir())))] if gpus.is_dir() else []


def worker_slots(workers: int) -> list[Slot]:
    """Splits this machine's CPU cores (and GPUs, if at least one each) between the workers."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    gpus = _gpu_ids()
    slots = []
    for index in range(workers):
        share = tuple(cpus[index::workers]) if len(cpus) >= workers else tuple(cpus)
        env = {}
        if len(gpus) >= workers:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[index::workers])
        slots.append(Slot(share, env))
    return slots


def trial_dir(out: Path, number: int) -> Path:
    return out / "trials" / f"{number:04d}"


RunTrial = Callable[[Job, Slot], int]


class Sweep:
    """Runs the study's trials with `workers` threads until it holds `trials` finished ones."""

    def __init__(
        self,
        definition: Definition,
        space: space_lib.Space,
        url: str,
        out: Path,
        trials: int,
        report: Callable[[str], None] = print,
    ):
        self.definition, self.space, self.url, self.out = definition, space, url, out
        self.trials, self.report = trials, report
        self.grid = space.grid() if definition.sampler == "grid" else None
        self.storage = study_store.open_storage(url)
        self.study = open_study(self.storage, definition)
        self.study_id = self.storage.get_study_id_from_name(definition.study)
        self.lock = study_store.AskLock(url, definition.study)
        self.stopping = threading.Event()
        self.children: dict[int, subprocess.Popen] = {}
        self.failed = 0
        self._count_lock = threading.Lock()

    def take(self) -> Job | None:
        """The next trial for this worker: a waiting one, else a new one while under budget."""
        with self.lock.held():
            released = study_store.release_orphans(self.storage, self.study_id)
            if released:
                self.report(f"taking up interrupted trial(s) {', '.join(map(str, released))}")
            everything = self.storage.get_all_trials(self.study_id, deepcopy=False)
            waiting = any(t.state == TrialState.WAITING for t in everything)
            if not waiting and len(everything) >= self.trials:
                return None
            study = optuna.load_study(
                study_name=self.definition.study,
                storage=self.storage,
                sampler=make_sampler(self.definition, len(everything), self.trials, self.grid),
                pruner=make_pruner(self.definition),
            )
            trial = study.ask()
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(
                self.study_id, trial.number
            )
            study_store.mark_taken(self.storage, trial_id, os.getpid())
            try:
                overrides = self.space.overrides(trial)
            except UserInputError:
                self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
                raise
            self.storage.set_trial_user_attr(trial_id, OVERRIDES_ATTR, overrides)
            return Job(trial.number, trial_id, tuple(overrides))

    def command(self, job: Job, slot: Slot) -> list[str]:
        cpus = ["--cpus", ",".join(map(str, slot.cpus))] if slot.cpus else []
        return [
            sys.executable,
            "-m",
            "jaxdl.studies.trial",
            "--dir",
            str(self.out),
            "--trial",
            str(job.number),
            "--parent",
            str(os.getpid()),
            *cpus,
            "--",
            "--config",
            self.definition.config,
            "--workdir",
            str(trial_dir(self.out, job.number)),
            *self.definition.fixed,
            *job.overrides,
            "--config.train.progress_bar=False",
        ]

    def run_subprocess(self, job: Job, slot: Slot) -> int:
        """Trains the trial in its own process; refreshes the heartbeat while it runs."""
        log_path = trial_dir(self.out, job.number).with_suffix(".log")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **slot.env, "JAXDL_SWEEP_STORAGE": self.url}
        with open(log_path, "a") as log:
            child = subprocess.Popen(
                self.command(job, slot), stdout=log, stderr=subprocess.STDOUT, env=env
            )
            self.children[job.number] = child
            try:
                while True:
                    try:
                        return child.wait(timeout=study_store.HEARTBEAT_SECONDS)
                    except subprocess.TimeoutExpired:
                        self._beat(job)
            finally:
                self.children.pop(job.number, None)

    def _beat(self, job: Job) -> None:
        try:
            study_store.beat(self.storage, job.trial_id)
        except Exception as error:  # A storage hiccup must not stop a trial that trains on.
            self.report(f"trial {job.number}: heartbeat not written ({type(error).__name__})")

    def finish(self, job: Job, code: int) -> str:
        """Tells the study how the trial ended; returns a word for the progress line."""
        summary_path = trial_dir(self.out, job.number) / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
        # summary.json is the run's last write: with it the trial is over, whatever the exit
        # code (a SIGTERM after it is a stop that came too late to matter).
        if summary is None and (code == EXIT_PREEMPTED or (code != 0 and self.stopping.is_set())):
            # Stopped with a checkpoint: it waits for this or another worker to resume it.
            self.storage.set_trial_state_values(job.trial_id, TrialState.WAITING)
            return "stopped (resumes on the next start)"
        if summary is not None:
            result = {
                "status": summary.get("status"),
                "steps": summary.get("steps"),
                "wall_seconds": summary.get("wall_seconds"),
                "final_metrics": summary.get("final_metrics", {}),
            }
            self.storage.set_trial_user_attr(job.trial_id, RESULT_ATTR, result)
        value = (summary or {}).get("best_metrics", {}).get(f"val/{self.definition.metric}")
        status = (summary or {}).get("status")
        if status == "pruned":
            self.study.tell(job.number, state=TrialState.PRUNED)
            return f"pruned at step {summary.get('steps')}"
        if status in ("completed", "stopped_early") and value is not None and math.isfinite(value):
            self.study.tell(job.number, value)
            return f"val/{self.definition.metric} {value:.4g}"
        self.study.tell(job.number, state=TrialState.FAIL)
        with self._count_lock:
            self.failed += 1
        why = status or ("diverged" if code == EXIT_DIVERGED else f"exit code {code}")
        return f"failed ({why}; see {trial_dir(self.out, job.number)}.log)"

    def running_elsewhere(self) -> list[int]:
        """Unfinished trials another process holds: the sweep is not over until they are (and
        if their worker is gone, `take` gets them once that is known)."""
        mine = study_store.owner()
        return [
            trial.number
            for trial in self.storage.get_all_trials(
                self.study_id, deepcopy=False, states=(TrialState.RUNNING,)
            )
            if trial.user_attrs.get(study_store.OWNER_ATTR) != mine
        ]

    def work(self, slot: Slot, run_trial: RunTrial) -> None:
        waited_for: list[int] = []
        while not self.stopping.is_set():
            job = self.take()
            if job is None:
                elsewhere = self.running_elsewhere()
                if not elsewhere:
                    return
                if elsewhere != waited_for:
                    self.report(f"waiting for trial(s) {', '.join(map(str, elsewhere))} elsewhere")
                    waited_for = elsewhere
                self.stopping.wait(study_store.HEARTBEAT_SECONDS)
                continue
            self.report(f"trial {job.number}: {' '.join(job.overrides)}")
            start = time.perf_counter()
            outcome = self.finish(job, run_trial(job, slot))
            self.report(f"trial {job.number}: {outcome} ({time.perf_counter() - start:.0f} s)")

    def run(self, workers: int, run_trial: RunTrial | None = None) -> None:
        """Runs until the budget is spent; SIGINT/SIGTERM stop it with every trial resumable."""
        run_trial = run_trial or self.run_subprocess
        errors: list[BaseException] = []

        def work(slot: Slot) -> None:
            try:
                self.work(slot, run_trial)
            except BaseException as error:  # Stop the others; raised in the main thread.
                errors.append(error)
                self.stopping.set()

        threads = [
            threading.Thread(target=work, args=(slot,), daemon=True)
            for slot in worker_slots(workers)
        ]
        previous = self._catch_signals()
        try:
            for thread in threads:
                thread.start()
            while any(thread.is_alive() for thread in threads):
                for thread in threads:
                    thread.join(timeout=0.2)
        finally:
            self._restore_signals(previous)
            self.lock.close()
        if errors:
            raise errors[0]

    def _catch_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def stop(signum: int, frame: Any) -> None:
            self.report(f"stopping ({signal.Signals(signum).name}): the trials save and pause")
            self.stopping.set()
            for child in list(self.children.values()):
                child.send_signal(signal.SIGTERM)  # Each saves a checkpoint and exits 75.

        return {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    @staticmethod
    def _restore_signals(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

"""`jaxdl sweep` with real training: pruning through the engine's evaluation callback, a sweep
killed with SIGKILL mid-trial and started again, and two sweep processes sharing one study on a
real PostgreSQL server (tests/postgres_server.py)."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna

from jaxdl.studies import space as space_lib
from jaxdl.studies import study_store, sweep_definition, trial
from jaxdl.studies import sweep as sweep_lib
from tests.test_cli_errors import QUICK

# Quick runs (40 steps, evaluated and saved every 20) of the digits MLP.
PARAMS = [
    "--param",
    "optimizer.learning_rate=loguniform(1e-3,3e-2)",
    "--param",
    "model.dropout_rate=uniform(0,0.3)",
]
JAXDL = str(Path(sys.executable).parent / "jaxdl")


def sweep_command(out: Path, trials: int, *extra: str) -> list[str]:
    command = [JAXDL, "sweep", "--config", QUICK, "--dir", str(out), "--trials", str(trials)]
    return [*command, *PARAMS, *extra]


def completed(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=name, storage=url)
    return study.get_trials(deepcopy=False)


def outcome(trials: list[optuna.trial.FrozenTrial]) -> list[tuple]:
    return [(t.number, t.state.name, sorted(t.params.items()), t.value) for t in trials]


def test_pruner_stops_a_real_run_through_the_evaluation_callback(tmp_path, monkeypatch):
    from jaxdl.cli import parse_config

    out = tmp_path / "pruned"
    space = space_lib.load(None, ["optimizer.learning_rate=loguniform(1e-3,3e-2)"])
    definition = sweep_definition.make_definition(
        QUICK, [], space, parse_config(QUICK, []), "tpe", "median", 0, "p"
    )
    url = study_store.default_url(out)
    sweep = sweep_lib.Sweep(definition, space, url, out, trials=5, report=lambda line: None)
    sweep_definition.write_record(out, definition, url)
    # Four finished trials whose validation loss was 0 at every evaluation: any real run is
    # worse than their median at its first evaluation past the warm-up (step 20 of 40).
    for _ in range(4):
        done = sweep.study.ask()
        done.suggest_float("optimizer.learning_rate", 1e-3, 3e-2, log=True)
        for step in (20, 40):
            done.report(0.0, step)
        sweep.study.tell(done, 0.0)
    job = sweep.take()
    monkeypatch.setenv("JAXDL_SWEEP_STORAGE", url)
    workdir = sweep_lib.trial_dir(out, job.number)
    argv = ["--dir", str(out), "--trial", str(job.number), "--", "--config", QUICK]
    assert trial.main([*argv, "--workdir", str(workdir), *job.overrides]) == 0
    summary = (workdir / "summary.json").read_text()
    assert '"status": "pruned"' in summary and '"steps": 20' in summary
    assert sweep.finish(job, 0) == "pruned at step 20"
    pruned = sweep.storage.get_trial(job.trial_id)
    assert pruned.state == optuna.trial.TrialState.PRUNED
    assert list(pruned.intermediate_values) == [20]


def _trial_saved(workdir: Path) -> bool:
    return (workdir / "checkpoints" / "20").is_dir()  # Orbax renames a checkpoint when complete.


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_bytes().decode(
                errors="replace"
            ):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def test_a_sweep_killed_mid_trial_ends_like_an_uninterrupted_one(tmp_path):
    longer = "--config.train.num_steps=120"  # Still training when its step-20 checkpoint is done.
    whole = tmp_path / "whole"  # The uninterrupted sweep, beside the one that is killed.
    uninterrupted = subprocess.Popen(
        sweep_command(whole, 3, longer),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed = tmp_path / "killed"
    sweep = subprocess.Popen(
        sweep_command(killed, 3, longer), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not _trial_saved(sweep_lib.trial_dir(killed, 1)):
        assert sweep.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    sweep.send_signal(signal.SIGKILL)  # Mid-trial: trial 1 has a checkpoint, not a summary.
    sweep.wait()
    deadline = time.monotonic() + 60
    while _processes_mentioning(str(killed)):  # The trial's process dies with its worker.
        assert time.monotonic() < deadline, "the trial outlived its killed sweep"
        time.sleep(0.2)
    assert not (sweep_lib.trial_dir(killed, 1) / "summary.json").exists()

    result = subprocess.run(sweep_command(killed, 3, longer), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "taking up interrupted trial(s) 1" in result.stdout
    log = sweep_lib.trial_dir(killed, 1).with_suffix(".log").read_text()
    assert "resuming at step" in log  # From its checkpoint, not from the start.
    assert uninterrupted.wait(timeout=600) == 0, uninterrupted.stderr.read()[-3000:]
    reference = outcome(completed(study_store.default_url(whole), "whole"))
    assert outcome(completed(study_store.default_url(killed), "killed")) == reference
    assert [t[1] for t in reference] == ["COMPLETE"] * 3


def test_two_sweeps_share_one_postgresql_study(tmp_path, postgres_url):
    dirs = [tmp_path / "machine_a", tmp_path / "machine_b"]
    extra = ("--storage", postgres_url, "--study", "shared", "--sampler", "random")
    sweeps = [
        subprocess.Popen(
            sweep_command(out, 6, *extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for out in dirs
    ]
    logs = [sweep.communicate(timeout=600)[0] for sweep in sweeps]
    assert [sweep.returncode for sweep in sweeps] == [0, 0], logs
    trials = completed(postgres_url, "shared")
    assert [t.number for t in trials] == list(range(6))  # None lost, none beyond the budget.
    # Finished: complete, or pruned by the median of the trials either machine finished.
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    # Each trial trained in exactly one of the two directories, once, from the start.
    homes = {
        n: [out for out in dirs if (sweep_lib.trial_dir(out, n) / "summary.json").is_file()]
        for n in range(6)
    }
    assert all(len(found) == 1 for found in homes.values()), homes
    for n, (out,) in homes.items():
        log = sweep_lib.trial_dir(out, n).with_suffix(".log").read_text()
        assert log.count("starting") == 1 and "resuming" not in log
    assert {out for (out,) in homes.values()} == set(dirs)  # Both machines did work.

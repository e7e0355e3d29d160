"""`jaxdl sweep`: the search space, the study's bookkeeping (budget, samplers, orphaned trials)
with a stand-in for training, and bad input. The sweeps that train real runs (a killed sweep
continued, pruning through the engine, PostgreSQL) are in test_sweep_runs.py."""

import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import optuna
import pytest

from jaxdl.errors import UserInputError
from jaxdl.studies import space as space_lib
from jaxdl.studies import study_store, sweep_definition
from jaxdl.studies import sweep as sweep_lib
from tests.test_cli_errors import QUICK, assert_error, run_cli, snapshot

LR = "optimizer.learning_rate=loguniform(1e-4,1e-1)"
WIDTH = "model.hidden_sizes=choice((16,),(32,),(64,))"


def test_shorthands_parse():
    lr = space_lib.parse_param(LR)
    assert (lr.field, lr.kind, lr.args) == ("optimizer.learning_rate", "loguniform", (1e-4, 1e-1))
    width = space_lib.parse_param("--config." + WIDTH)
    assert width.args == ("(16,)", "(32,)", "(64,)")
    steps = space_lib.parse_param("train.num_steps=int(10,50,20)")
    assert steps.args == (10, 50, 20) and steps.grid_values() == [10, 30, 50]
    assert space_lib.parse_param("model.dropout_rate=uniform(0,0.5)").args == (0.0, 0.5)


@pytest.mark.parametrize(
    "text",
    [
        "optimizer.learning_rate",
        "optimizer.learning_rate=normal(0,1)",
        "optimizer.learning_rate=loguniform(0,1)",
        "optimizer.learning_rate=loguniform(1e-2,1e-4)",
        "optimizer.learning_rate=uniform(a,1)",
        "train.num_steps=int(1.5,3)",
        "train.num_steps=int(5,1)",
        "model.activation=choice(relu,relu)",
        "model.activation=choice()",
    ],
)
def test_bad_shorthands_are_refused(text):
    with pytest.raises(UserInputError, match="--param"):
        space_lib.parse_param(text)


def test_override_texts():
    assert space_lib.override_text("relu") == "relu"
    assert space_lib.override_text((64, 64)) == "(64, 64)"
    assert space_lib.override_text(0.001) == "0.001" and space_lib.override_text(True) == "True"


SPACE_FILE = """
def space(trial):
    width = trial.suggest_categorical("width", [16, 32])
    return {"optimizer.learning_rate": trial.suggest_float("lr", 1e-3, 1e-1, log=True),
            "model.hidden_sizes": (width,)}

GRID = {"width": [16, 32], "lr": [0.001, 0.01]}
"""


def test_space_file_draws_overrides_and_its_grid(tmp_path):
    path = tmp_path / "space.py"
    path.write_text(SPACE_FILE)
    space = space_lib.load(str(path), ["model.dropout_rate=choice(0.0,0.1)"])
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    overrides = space.overrides(trial)
    assert [o.split("=")[0] for o in overrides] == [
        "--config.optimizer.learning_rate",
        "--config.model.hidden_sizes",
        "--config.model.dropout_rate",
    ]
    assert overrides[1] in (
        "--config.model.hidden_sizes=(16,)",
        "--config.model.hidden_sizes=(32,)",
    )
    assert space.grid() == {
        "width": [16, 32],
        "lr": [0.001, 0.01],
        "model.dropout_rate": ["0.0", "0.1"],
    }


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("x = 1\n", ["defines no space(trial)"]),
        ("def space(trial):\n    return [1]\n", ["must return a dict"]),
        ("def space(trial):\n    return {'a': 1 / 0}\n", ["ZeroDivisionError", "(line 2)"]),
        ("def space(trial:\n", ["SyntaxError", "(line 1)"]),
    ],
)
def test_bad_space_files_are_named(tmp_path, text, words):
    path = tmp_path / "space.py"
    path.write_text(text)
    with pytest.raises(UserInputError) as error:
        space = space_lib.load(str(path), [])
        space.overrides(optuna.create_study().ask())
    for word in [str(path), *words]:
        assert word in str(error.value)


# The study's bookkeeping, with a stand-in for training: each trial's "run" writes the summary
# a real one would, its value a smooth function of the learning rate.


def _objective(overrides: tuple[str, ...]) -> float:
    values = dict(o.removeprefix("--config.").split("=", 1) for o in overrides)
    return (math.log10(float(values["optimizer.learning_rate"])) + 2.5) ** 2


class FakeTraining:
    def __init__(self, out: Path):
        self.out, self.runs, self.lock = out, [], threading.Lock()

    def __call__(self, job: sweep_lib.Job, slot: sweep_lib.Slot) -> int:
        with self.lock:
            self.runs.append(job.number)
        workdir = sweep_lib.trial_dir(self.out, job.number)
        workdir.mkdir(parents=True, exist_ok=True)
        summary = {
            "status": "completed",
            "steps": 40,
            "best_metrics": {"step": 40, "val/loss": _objective(job.overrides)},
            "final_metrics": {"test/accuracy": 0.5},
        }
        (workdir / "summary.json").write_text(json.dumps(summary))
        return 0


def make_sweep(out: Path, trials: int, sampler: str = "tpe", seed: int = 0, params=(LR, WIDTH)):
    from jaxdl.cli import parse_config

    space = space_lib.load(None, list(params))
    base = parse_config(QUICK, [])
    definition = sweep_definition.make_definition(
        QUICK, [], space, base, sampler, "none", seed, "s"
    )
    url = study_store.default_url(out)
    sweep_definition.check_dir(out, definition, url)
    sweep = sweep_lib.Sweep(definition, space, url, out, trials, report=lambda line: None)
    sweep_definition.write_record(out, definition, url)
    return sweep


def drawn(sweep: sweep_lib.Sweep) -> list[tuple[int, str, dict, float | None]]:
    return [
        (t.number, t.state.name, t.params, t.value)
        for t in sweep.storage.get_all_trials(sweep.study_id)
    ]


def test_samplers_draw_the_same_trials_from_the_same_seed(tmp_path):
    results = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        sweep = make_sweep(tmp_path / name, trials=6, seed=seed)
        sweep.run(1, FakeTraining(tmp_path / name))
        results[name] = drawn(sweep)
    assert results["a"] == results["b"]
    assert [t[2] for t in results["a"]] != [t[2] for t in results["c"]]
    assert [t[:2] for t in results["a"]] == [(n, "COMPLETE") for n in range(6)]


def test_grid_sampler_visits_each_point_once(tmp_path):
    sweep = make_sweep(
        tmp_path / "g", 6, "grid", params=("optimizer.learning_rate=choice(0.001,0.01)", WIDTH)
    )
    sweep.run(2, FakeTraining(tmp_path / "g"))
    points = [tuple(sorted(t[2].items())) for t in drawn(sweep)]
    assert len(points) == 6 and len(set(points)) == 6


def test_parallel_workers_keep_the_budget_exactly(tmp_path):
    fake = FakeTraining(tmp_path / "p")
    sweep = make_sweep(tmp_path / "p", trials=7, sampler="random")
    sweep.run(3, fake)
    assert sorted(fake.runs) == list(range(7))  # Each trial trained once, none beyond the budget.
    assert [t[1] for t in drawn(sweep)] == ["COMPLETE"] * 7


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_trial_whose_worker_died_is_taken_again_with_its_values(tmp_path):
    out = tmp_path / "k"
    first = make_sweep(out, trials=3, seed=3)
    first.run(1, FakeTraining(out))
    reference = drawn(first)

    out = tmp_path / "killed"
    sweep = make_sweep(out, trials=1, seed=3)
    sweep.run(1, FakeTraining(out))
    sweep.trials = 3
    job = sweep.take()  # Trial 1, taken by a worker that then died: RUNNING, owner dead.
    assert job.number == 1
    study_store.mark_taken(sweep.storage, job.trial_id, _dead_pid())
    assert drawn(sweep)[1][1] == "RUNNING"

    fake = FakeTraining(out)
    again = make_sweep(out, trials=3, seed=3)
    again.run(1, fake)
    assert fake.runs == [1, 2]  # Trial 1 taken again, trial 2 drawn; trial 0 not run again.
    assert drawn(again) == reference


def test_another_workers_running_trial_is_left_alone(tmp_path):
    sweep = make_sweep(tmp_path / "o", trials=2)
    job = sweep.take()
    study_store.mark_taken(sweep.storage, job.trial_id, os.getppid())  # A live process.
    assert study_store.release_orphans(sweep.storage, sweep.study_id) == []
    trial = sweep.storage.get_trial(job.trial_id)
    foreign = {**trial.user_attrs[study_store.OWNER_ATTR], "machine": "elsewhere:0"}
    sweep.storage.set_trial_user_attr(job.trial_id, study_store.OWNER_ATTR, foreign)
    assert study_store.release_orphans(sweep.storage, sweep.study_id) == []  # Fresh heartbeat.
    sweep.storage.set_trial_user_attr(job.trial_id, study_store.HEARTBEAT_ATTR, 0.0)
    assert study_store.release_orphans(sweep.storage, sweep.study_id) == [job.number]


def test_a_sweep_waits_for_a_trial_held_elsewhere_and_takes_it_up_if_its_holder_dies(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(study_store, "HEARTBEAT_SECONDS", 0.1)
    out = tmp_path / "w"
    sweep = make_sweep(out, trials=1)
    job = sweep.take()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"])
    study_store.mark_taken(sweep.storage, job.trial_id, holder.pid)  # Alive, for 2 s.
    lines, fake = [], FakeTraining(out)
    sweep.report = lines.append
    sweep.run(1, fake)  # The budget is spent, but trial 0 is not finished: wait, then take it.
    holder.wait()
    assert "waiting for trial(s) 0 elsewhere" in lines
    assert "taking up interrupted trial(s) 0" in lines
    assert fake.runs == [0] and drawn(sweep)[0][1] == "COMPLETE"


@pytest.mark.parametrize("pruner", ["median", "hyperband", "none"])
def test_the_trial_reporter_records_every_evaluation(tmp_path, pruner):
    from jaxdl.cli import parse_config
    from jaxdl.studies import trial

    out = tmp_path / pruner
    space = space_lib.load(None, [LR])
    definition = sweep_definition.make_definition(
        QUICK, [], space, parse_config(QUICK, []), "random", pruner, 0, "r"
    )
    url = study_store.default_url(out)
    sweep = sweep_lib.Sweep(definition, space, url, out, 3, report=lambda line: None)
    sweep_definition.write_record(out, definition, url)
    job = sweep.take()
    reporter = trial.reporter_for(out, job.number, url)
    # The first trial: no pruner stops it (nothing to compare with); NaN is not reported.
    assert [reporter(step, {"loss": 1.0 / step}) for step in (20, 40)] == [None, None]
    assert reporter(60, {"loss": float("nan")}) is None
    assert sweep.storage.get_trial(job.trial_id).intermediate_values == {20: 0.05, 40: 0.025}


# Bad input: one line, exit 2, nothing written.


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (
            ["--param", "optimizer.learnin_rate=loguniform(1e-4,1e-2)"],
            ["learnin_rate", "Did you mean"],
        ),
        (["--param", "model.activation=choice(relu,relux)"], ["--param model.activation", "relux"]),
        (["--param", "optimizer.learning_rate=gauss(1,2)"], ["unknown kind"]),
        ([], ["needs a search space"]),
        ([LR, "--sampler", "bayes"], ["--sampler bayes"]),
        ([LR, "--sampler", "grid"], ["grid needs choice"]),
        ([LR, "--pruner", "early"], ["--pruner early"]),
        ([LR, "--storage", "mysql://u@h/db"], ["SQLite or PostgreSQL"]),
        ([LR, "--config.train.num_stepz=5"], ["num_stepz", "Did you mean"]),
        ([LR, "--space", "missing.py"], ["--space missing.py"]),
        ([LR, "--trials", "0"], ["--trials 0"]),
    ],
)
def test_bad_sweeps_exit_2_before_anything_is_written(capsys, tmp_path, extra, words):
    extra = ["--param", *extra] if extra[:1] == [LR] else extra
    trials = [] if "--trials" in extra else ["--trials", "2"]
    argv = ["sweep", "--config", QUICK, "--dir", str(tmp_path / "s"), *trials, *extra]
    code, _, err = run_cli(capsys, *argv)
    assert_error(code, err, *words)
    assert not (tmp_path / "s").exists()


def test_a_dir_holding_another_sweep_or_other_files_is_refused(capsys, tmp_path):
    out = tmp_path / "s"
    make_sweep(out, trials=2)
    argv = ["sweep", "--config", QUICK, "--trials", "2", "--param"]
    code, _, err = run_cli(capsys, *argv, "model.dropout_rate=uniform(0,0.5)", "--dir", str(out))
    assert_error(code, err, "holds another sweep", "space")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, *argv, LR, "--dir", str(tmp_path / "other"))
    assert_error(code, err, "holds no sweep")
    code, _, err = run_cli(capsys, "sweep", "--dir", str(tmp_path / "none"), "--report")
    assert_error(code, err, "holds no sweep")
    assert snapshot(tmp_path) == before


def test_report_from_the_study(capsys, tmp_path):
    out = tmp_path / "r"
    sweep = make_sweep(out, trials=4, sampler="random")
    sweep.run(1, FakeTraining(out))
    code, printed, _ = run_cli(capsys, "sweep", "--dir", str(out), "--report")
    assert code == 0
    best = min(drawn(sweep), key=lambda t: t[3])
    assert f"Best: trial {best[0]}" in printed and "jaxdl train --config" in printed
    text = (out / "sweep.md").read_text()
    assert text.count("| complete |") == 4
    for name in ("history.png", "importances.png"):
        assert (out / name).stat().st_size > 1000


def test_report_of_trials_with_one_value_leaves_the_importances_out(tmp_path, monkeypatch):
    """fANOVA has no variation to ascribe when every trial scored the same: no importances.png,
    the rest of the report as usual."""
    out = tmp_path / "flat"
    sweep = make_sweep(out, trials=3, sampler="random")
    monkeypatch.setattr(sys.modules[__name__], "_objective", lambda overrides: 0.5)
    sweep.run(1, FakeTraining(out))
    from jaxdl.studies import sweep_report

    text = sweep_report.write_report(sweep.study, sweep.definition, out)
    assert "history.png" in text and "importances.png" not in text
    assert (out / "history.png").is_file() and not (out / "importances.png").exists()

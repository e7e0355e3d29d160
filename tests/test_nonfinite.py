"""Non-finite updates: dropped inside the step and counted, then a rollback with a lower learning
rate or a stop with a report, as `train.nonfinite` says; resumes stay exact throughout."""

import signal
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from jaxdl.cli import main
from jaxdl.engine import nonfinite
from jaxdl.engine.metrics_log import read_records
from jaxdl.errors import EXIT_DIVERGED
from tests.run_helpers import run_train, summary

QUICK_MLP = str(Path(__file__).resolve().parents[1] / "experiments" / "digits_mlp.py") + ":quick"
# Checkpoints every 10 of 40 steps; a streak of 5 dropped updates triggers the policy.
OVERRIDES = ("--config.train.checkpoint_every=10", "--config.train.nonfinite_patience=5")


class _State(struct.PyTreeNode):
    step: jnp.ndarray
    params: dict


def test_guard_keeps_the_old_state_but_advances_the_step():
    old = _State(jnp.int32(3), {"w": jnp.ones(2), "b": jnp.zeros(1)})
    new = _State(jnp.int32(4), {"w": jnp.array([1.0, jnp.nan]), "b": jnp.ones(1)})
    state, metrics, ok, bad = nonfinite.guard(old, new, {"loss": jnp.float32(2.0)})
    assert not ok and int(state.step) == 4
    np.testing.assert_array_equal(state.params["w"], old.params["w"])
    np.testing.assert_array_equal(state.params["b"], old.params["b"])
    assert float(metrics["loss"]) == 0.0  # Kept out of the window's sums.
    names = nonfinite.checked_names(new, ["loss"])
    assert nonfinite.describe_bad(names, bad) == "params/w"

    state, _, ok, _ = nonfinite.guard(
        old, new.replace(params={"w": jnp.ones(2), "b": jnp.ones(1)}), {"loss": jnp.float32(1.0)}
    )
    assert ok and float(state.params["b"][0]) == 1.0


def _train(capsys, monkeypatch, workdir: Path, faults: str, *overrides: str) -> int:
    monkeypatch.setenv("JAXDL_FAULTS", faults)
    code = main(["train", "--config", QUICK_MLP, "--workdir", str(workdir), *OVERRIDES, *overrides])
    capsys.readouterr()
    return code


def test_a_few_nan_updates_are_skipped_and_counted(capsys, monkeypatch, tmp_path):
    assert _train(capsys, monkeypatch, tmp_path / "run", "nan_at_step=5-7") == 0
    result = summary(tmp_path / "run")
    assert result["status"] == "completed"
    assert result["nonfinite"] == {
        "skipped_updates": 3,
        "rollbacks": [],
        "learning_rate_scale": 1.0,
    }
    train = [r for r in read_records(tmp_path / "run") if r["split"] == "train"]
    assert [r["skipped_updates"] for r in train] == [3.0, 0.0, 0.0, 0.0]
    assert all(np.isfinite(r["loss"]) for r in train)


def test_a_streak_rolls_back_to_the_last_good_checkpoint_with_a_lower_learning_rate(
    capsys, monkeypatch, tmp_path
):
    run = tmp_path / "run"
    assert _train(capsys, monkeypatch, run, "nan_at_step=14-30") == 0
    result = summary(run)
    assert result["status"] == "completed"
    # Dropped 14..20; the streak was seen at the log step 20; the step-10 checkpoint is the
    # newest before step 14.
    assert result["nonfinite"]["rollbacks"] == [
        {"at_step": 20, "streak_start": 14, "to_step": 10, "scale": 0.5}
    ]
    assert result["nonfinite"]["skipped_updates"] == 7
    records = read_records(run)
    train = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train] == [10, 20, 30, 40]  # The abandoned window is gone.
    clean = tmp_path / "clean"
    assert _train(capsys, monkeypatch, clean, "") == 0
    clean_train = [r for r in read_records(clean) if r["split"] == "train"]
    assert train[0] == clean_train[0]
    assert train[1]["learning_rate"] == pytest.approx(clean_train[1]["learning_rate"] / 2)


def test_stop_policy_reports_the_parameters_and_exits_3(capsys, monkeypatch, tmp_path):
    run = tmp_path / "run"
    monkeypatch.setenv("JAXDL_FAULTS", "nan_at_step=14-30")
    argv = ["train", "--config", QUICK_MLP, "--workdir", str(run), *OVERRIDES]
    code = main([*argv, "--config.train.nonfinite=stop"])
    out, _ = capsys.readouterr()
    assert code == EXIT_DIVERGED
    assert "stopping at step 20: 5 non-finite updates in a row from step 14" in out
    assert "params/" in out and "debug_nans" in out
    result = summary(run)
    assert result["status"] == "diverged"
    assert result["nonfinite"]["stopped"]["streak_start"] == 14
    # Running it again does not train again, and says so with the same exit code.
    assert main([*argv, "--config.train.nonfinite=stop"]) == EXIT_DIVERGED


def test_resume_after_a_rollback_is_exact(tmp_path):
    faults = "nan_at_step=14-30"
    reference = tmp_path / "reference"
    assert run_train(reference, *OVERRIDES, faults=faults, config=QUICK_MLP).returncode == 0
    run = tmp_path / "run"
    killed = run_train(run, *OVERRIDES, faults=f"{faults},kill_at_step=33", config=QUICK_MLP)
    assert killed.returncode == -signal.SIGKILL
    # The resumed process reads the rollback from the checkpoint: learning rate halved, and
    # no NaN injected again (a transient fault).
    resumed = run_train(run, *OVERRIDES, faults=faults, config=QUICK_MLP)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming at step 30" in resumed.stdout
    assert summary(run)["params_fingerprint"] == summary(reference)["params_fingerprint"]
    assert summary(run)["nonfinite"] == summary(reference)["nonfinite"]
    assert read_records(run) == read_records(reference)


def test_debug_nans_names_the_operation(tmp_path):
    result = run_train(
        tmp_path / "run", "--config.debug_nans=True", faults="nan_at_step=3", config=QUICK_MLP
    )
    assert result.returncode == 1
    assert "FloatingPointError" in result.stderr and "nan" in result.stderr.lower()

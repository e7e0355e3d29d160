"""A run killed with SIGKILL anywhere and started again ends bit for bit where an uninterrupted run does."""

import signal

import pytest

from jaxdl.engine.metrics_log import read_records
from tests.run_helpers import RESUME_OVERRIDES, run_train, summary


@pytest.mark.parametrize(
    "faults",
    [
        # Between the checkpoints of steps 20 and 30, mid-epoch and mid-chunk of the batch feed.
        # On CPU the loop waits for each save, so the run resumes from step 20 (on an
        # accelerator the step-20 save could still be in flight, and it would resume from 10).
        "kill_at_step=25",
        # While the step-30 checkpoint is being written (step 20's is complete by then:
        # Orbax finishes one save before starting the next).
        "kill_during_save=30",
    ],
)
def test_killed_run_resumes_to_identical_parameters(reference_run, tmp_path, faults):
    workdir = tmp_path / "run"
    killed = run_train(workdir, *RESUME_OVERRIDES, faults=faults)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (workdir / "summary.json").exists()
    left = [p.name for p in (workdir / "checkpoints").iterdir()]
    complete = sorted(int(name) for name in left if name.isdigit())
    assert complete, left
    if faults.startswith("kill_during_save"):
        assert "30.orbax-checkpoint-tmp" in left and complete[-1] == 20, left

    resumed = run_train(workdir, *RESUME_OVERRIDES)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming at step {complete[-1]}" in resumed.stdout
    assert summary(workdir)["params_fingerprint"] == summary(reference_run)["params_fingerprint"]
    # The metrics log is rewound to the checkpoint, then replayed: identical to the reference.
    assert read_records(workdir) == read_records(reference_run)
    assert summary(workdir)["final_metrics"] == summary(reference_run)["final_metrics"]


def test_rerunning_a_finished_run_changes_nothing(reference_run):
    before = {p: p.stat().st_mtime_ns for p in reference_run.rglob("*")}
    again = run_train(reference_run, *RESUME_OVERRIDES)
    assert again.returncode == 0
    assert "already holds a finished run" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in reference_run.rglob("*")} == before

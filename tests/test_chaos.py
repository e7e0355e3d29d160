"""The chaos harness (jaxdl/chaos.py): runs killed by SIGTERM and SIGKILL, mid-save too, and one
with a truncated checkpoint, end bit for bit like an uninterrupted run."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.run_helpers import REPO

LAST_LINE = re.compile(
    r"chaos: (\d+)/(\d+) kills survived, fingerprint (.+), (\d+) checkpoints lost, "
    r"sigterm exit (.+), nan: (.+)"
)


def run_chaos(directory: Path, *args: str, timeout: int) -> tuple[subprocess.CompletedProcess, str]:
    # Two devices, as in run_helpers: every restart restores a state sharded over a real mesh.
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    command = [sys.executable, "-m", "jaxdl.chaos", "--dir", str(directory), *args]
    result = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    lines = result.stdout.strip().splitlines()
    return result, lines[-1] if lines else ""


# About a minute of CLI runs: make test-all (test_resume.py and test_crash_recovery.py keep the
# kills at chosen moments in the fast suite).
@pytest.mark.slow
def test_three_kills_survived(tmp_path):
    # 120 quick steps with a checkpoint every 5 leave room for three kills before the end.
    # Seed 3 draws a late SIGKILL (mid-training), a SIGKILL inside a save two intervals ahead
    # (so the run gets one checkpoint further), then the truncation, then a SIGTERM.
    directory = tmp_path / "chaos"
    result, last = run_chaos(
        directory,
        "--config=digits_cnn:quick",
        "--kills=3",
        "--seed=3",
        "--override=--config.train.num_steps=120",
        "--override=--config.train.checkpoint_every=5",
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert LAST_LINE.fullmatch(last), last
    assert "3/3 kills survived, fingerprint identical, 0 checkpoints lost" in last
    assert "nan: 3 skipped updates reported" in last
    figures = json.loads((directory / "chaos.json").read_text())
    assert sorted(kill["signal"] for kill in figures["kills"]) == ["SIGKILL", "SIGKILL", "SIGTERM"]
    in_save = [kill for kill in figures["kills"] if kill["faults"].startswith("kill_during_save")]
    assert len(in_save) == 1 and in_save[0]["landed_in_save"], in_save
    assert all(kill["resumed_at"] >= (kill["newest_complete"] or 0) for kill in figures["kills"])


def test_bad_arguments_exit_2(tmp_path):
    result, _ = run_chaos(tmp_path, "--config=digits_cnn:quick", "--nan-steps=1-30", timeout=60)
    assert result.returncode == 2
    assert "nonfinite_patience" in result.stderr


@pytest.mark.slow
def test_default_twenty_kills_survived(tmp_path):
    """`make chaos`: 20 kills of the default experiment (a few minutes on 2 cores)."""
    result, last = run_chaos(tmp_path / "chaos", timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "20/20 kills survived, fingerprint identical, 0 checkpoints lost" in last


def test_a_kill_after_the_truncation_is_not_held_to_the_truncated_checkpoint(tmp_path):
    # Seen in a slow run: checkpoint 35 truncated, the next process resumed from 30, was
    # stopped by SIGTERM at step 31 and saved it; its successor resumed at 31, which is right,
    # but the kill had been checked against 35.
    from argparse import Namespace

    from jaxdl.chaos import Harness

    harness = Harness(Namespace(dir=tmp_path, quiet=True), [], None)
    cut = tmp_path / "array_data"
    cut.write_bytes(b"x" * 50)
    assert harness.newest_readable([20, 30, 35]) == 35
    harness.truncated = {"step": 35, "file": str(cut), "size": 100, "logs": []}
    assert harness.newest_readable([20, 30, 35]) == 30
    cut.write_bytes(b"x" * 100)  # Saved again whole by a later process: readable again.
    assert harness.newest_readable([20, 30, 35]) == 35
    assert harness.newest_readable([]) is None

"""Several processes (jax.distributed over gloo on 127.0.0.1) and restores onto another topology.

Every run here is the real CLI in fresh processes. A run's result must not depend on how many
processes or devices computed it: the 2-process run, a 2-process run finished by one process,
and an 8-device run finished on 2 devices all end where one process on 2 devices ends.
"""

import json
import os
import socket
import subprocess

import pytest

from tests.run_helpers import REPO, run_train, summary, train_command

QUICK_MLP = "experiments/digits_mlp.py:quick"
OVERRIDES = ("--config.train.checkpoint_every=10", "--config.train.progress_bar=False")


def _free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def _two_processes(workdir, faults: str = "") -> list[subprocess.CompletedProcess]:
    port = _free_port()
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=1",  # 2 devices in all.
        "JAXDL_FAULTS": faults,
    }
    flags = [f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2"]
    hosts = [
        subprocess.Popen(
            [
                *train_command(workdir, *OVERRIDES, config=QUICK_MLP),
                *flags,
                f"--process_id={rank}",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    results = []
    for host in hosts:
        out, err = host.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(host.args, host.returncode, out, err))
    return results


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The reference: one process, 2 devices."""
    workdir = tmp_path_factory.mktemp("one") / "run"
    result = run_train(workdir, *OVERRIDES, config=QUICK_MLP)
    assert result.returncode == 0, result.stderr[-3000:]
    return summary(workdir)


def _test_loss(run: dict) -> float:
    return run["final_metrics"]["test/loss"]


def test_two_processes_train_like_one_and_only_process_0_writes(tmp_path, one_process):
    results = _two_processes(tmp_path / "run")
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-2000:] for r in results]
    two = summary(tmp_path / "run")
    assert two["processes"] == 2 and two["devices"] == 2
    assert _test_loss(two) == pytest.approx(_test_loss(one_process), rel=1e-3)
    # One writer: every record once, not once per process.
    records = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    keys = [(r["step"], r["split"]) for r in records]
    assert len(keys) == len(set(keys))
    assert "2 device(s) in 2 process(es)" in results[0].stdout + results[0].stderr


def test_a_two_process_checkpoint_continues_in_one_process(tmp_path, one_process):
    workdir = tmp_path / "run"
    # Both processes are killed (SIGKILL) after step 25: checkpoints 10 and 20 exist.
    killed = _two_processes(workdir, faults="kill_at_step=25")
    assert all(r.returncode == -9 for r in killed), [r.stderr[-2000:] for r in killed]
    data = sorted(p.name for p in (workdir / "checkpoints" / "20" / "data").iterdir())
    assert "process_0-of-2.json" in data and "process_1-of-2.json" in data

    resumed = run_train(workdir, *OVERRIDES, config=QUICK_MLP)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    output = resumed.stdout + resumed.stderr
    assert "written on 2 device(s) in 2 process(es)" in output
    assert "continuing on 2 device(s) in 1 process(es)" in output
    assert _test_loss(summary(workdir)) == pytest.approx(_test_loss(one_process), rel=1e-3)


def test_an_eight_device_checkpoint_continues_on_two_devices(tmp_path, one_process):
    workdir = tmp_path / "run"
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAXDL_FAULTS": "kill_at_step=25",
    }
    eight = [*OVERRIDES, "--config.mesh.data=4", "--config.mesh.fsdp=2"]
    killed = subprocess.run(
        train_command(workdir, *eight, config=QUICK_MLP),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    # The mesh fields say where a run computes, not what: the resume may change them.
    resumed = run_train(workdir, *OVERRIDES, config=QUICK_MLP)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    output = resumed.stdout + resumed.stderr
    assert "written on 8 device(s) in 1 process(es) (mesh data=4 fsdp=2 tensor=1, jit)" in output
    assert "continuing on 2 device(s) in 1 process(es) (mesh data=2 fsdp=1 tensor=1" in output
    assert summary(workdir)["devices"] == 2
    assert _test_loss(summary(workdir)) == pytest.approx(_test_loss(one_process), rel=1e-3)

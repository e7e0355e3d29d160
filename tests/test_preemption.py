"""SIGTERM and SIGINT: finish the step, save, exit 75; the same command then resumes bit for bit."""

import signal
import socket
import subprocess
import sys
import time

from jaxdl.engine.metrics_log import read_records
from jaxdl.engine.preemption import EXIT_PREEMPTED
from tests.run_helpers import REPO, RESUME_OVERRIDES, run_train, summary, train_command


def test_sigterm_saves_a_checkpoint_and_the_rerun_resumes_bit_exactly(reference_run, tmp_path):
    workdir = tmp_path / "run"
    # Step 25 is between the checkpoints of steps 20 and 30 and inside a log window.
    stopped = run_train(workdir, *RESUME_OVERRIDES, faults="sigterm_at_step=25")
    assert stopped.returncode == EXIT_PREEMPTED, stopped.stderr[-3000:]
    assert "stopped by SIGTERM at step 25; run the same command to resume" in stopped.stderr
    assert (workdir / "checkpoints" / "25").is_dir()
    assert not (workdir / "summary.json").exists()

    resumed = run_train(workdir, *RESUME_OVERRIDES)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming at step 25" in resumed.stdout
    assert summary(workdir)["params_fingerprint"] == summary(reference_run)["params_fingerprint"]
    # The log window 21-30 was cut at 25: its partial sums were saved with the checkpoint.
    assert read_records(workdir) == read_records(reference_run)


def test_a_signal_from_outside_stops_the_run_within_seconds(tmp_path):
    workdir = tmp_path / "run"
    command = train_command(workdir, "--config.train.num_steps=5000")
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    for line in process.stdout:  # Setup done: the loop is about to start.
        if "starting" in line:
            break
    time.sleep(1.0)
    sent = time.perf_counter()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    seconds = time.perf_counter() - sent
    assert process.returncode == EXIT_PREEMPTED, err[-3000:]
    assert seconds < 10, seconds
    saved = [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
    assert f"stopped by SIGINT at step {max(saved)}" in err


_SECOND_SIGNAL = """
import os, signal, time
from jaxdl.engine.preemption import Preempted, Preemption
with Preemption() as preemption:
    try:
        os.kill(os.getpid(), signal.SIGTERM)  # Outside the loop: raised at once.
        time.sleep(5)
    except Preempted as stop:
        print("raised", stop.signal_name)
    preemption.signal_name = None
    with preemption.deferring():
        os.kill(os.getpid(), signal.SIGINT)  # In the loop: only a flag...
        print("reached", preemption.reached(7))
        os.kill(os.getpid(), signal.SIGINT)  # ...until the second one.
        time.sleep(5)
        print("still running")
"""


def test_second_sigint_exits_at_once():
    result = subprocess.run(
        [sys.executable, "-c", _SECOND_SIGNAL], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 128 + signal.SIGINT, result.stderr
    assert result.stdout.split("\n")[:2] == ["raised SIGTERM", "reached True"]
    assert "still running" not in result.stdout
    assert "second SIGINT: exiting now" in result.stderr


_HOST = """
import sys, time
import jax
jax.distributed.initialize(
    coordinator_address=f"127.0.0.1:{sys.argv[2]}", num_processes=2, process_id=int(sys.argv[1])
)
from jaxdl.engine.preemption import Preemption
with Preemption() as preemption, preemption.deferring():
    print("ready", flush=True)
    for step in range(1, 6000):
        time.sleep(0.005)
        if preemption.reached(step):
            print("stop", step, flush=True)
            break
jax.distributed.shutdown()
"""


def test_two_processes_agree_on_the_step_to_stop_at():
    """JAX's preemption service: SIGTERM to one host stops both at the same step."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    hosts = [
        subprocess.Popen(
            [sys.executable, "-c", _HOST, str(rank), port],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    for host in hosts:
        assert host.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    hosts[1].send_signal(signal.SIGTERM)
    outputs = [host.communicate(timeout=60) for host in hosts]
    stops = [out.strip().splitlines()[-1] for out, _ in outputs]
    assert [host.returncode for host in hosts] == [0, 0], [err[-2000:] for _, err in outputs]
    assert stops[0].startswith("stop ") and stops[0] == stops[1], stops

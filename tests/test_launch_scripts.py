"""The Cloud TPU scripts (tpu/*.sh), the SLURM batch script and the Colab notebook.

No test reaches a real gcloud: a fake one that records its arguments and exits 99 comes first
on PATH, and the dry-run tests check it was never called. The remote commands the scripts
would send over ssh are checked as shell syntax, and the one tpu/launch.sh sends is run here
against a fake jaxdl.
"""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TPU = REPO / "tpu"
SCRIPTS = ("create", "install", "launch", "logs", "fetch", "delete")
SBATCH = REPO / "slurm" / "train_multinode.sbatch"
NOTEBOOK = TPU / "colab_tpu.ipynb"
TARGET = ("--name", "my-tpu", "--zone", "us-central2-b")
FAKE_GCLOUD_EXIT = 99


@pytest.fixture
def fake_bin(tmp_path):
    """A directory of fakes that goes first on PATH; `gcloud` records its args and exits 99."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(
        '#!/bin/sh\nprintf \'%s\\n\' "$@" > "$(dirname "$0")/gcloud.args"\n'
        f"exit {FAKE_GCLOUD_EXIT}\n"
    )
    gcloud.chmod(0o755)
    return bin_dir


def gcloud_calls(fake_bin: Path) -> list[str] | None:
    """The fake gcloud's arguments, or None if it was never run."""
    path = fake_bin / "gcloud.args"
    return path.read_text().splitlines() if path.exists() else None


def script_env(fake_bin: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXDL_TPU_")}
    env["PATH"] = f"{fake_bin}{os.pathsep}{env['PATH']}"
    env.update(extra)
    return env


def run_script(fake_bin, name, *args, **env):
    return subprocess.run(
        ["bash", str(TPU / f"{name}.sh"), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=script_env(fake_bin, **env),
        timeout=60,
    )


def dry_run(fake_bin, name, *args, **env) -> list[list[str]]:
    """The commands `--dry-run` prints, each split into words as a shell would."""
    result = run_script(fake_bin, name, "--dry-run", *args, **env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert gcloud_calls(fake_bin) is None, "--dry-run ran gcloud"
    lines = result.stdout.splitlines()
    assert lines and all(line.strip() for line in lines)
    return [shlex.split(line) for line in lines]


def gcloud_lines(commands: list[list[str]]) -> list[list[str]]:
    return [c for c in commands if c[0] == "gcloud"]


def remote_command(words: list[str]) -> str:
    """The --command of a `gcloud compute tpus tpu-vm ssh` line, checked as sh syntax."""
    assert words[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"]
    command = words[words.index("--command") + 1]
    check = subprocess.run(["sh", "-n", "-c", command], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    return command


def assert_bad_input(result, script, *fragments):
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"tpu/{script}.sh: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


# Every script.


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(fake_bin, script):
    result = run_script(fake_bin, script, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: tpu/{script}.sh")
    assert "--dry-run" in result.stdout
    assert gcloud_calls(fake_bin) is None


@pytest.mark.parametrize("script", SCRIPTS)
def test_unknown_flag_is_one_line_and_exit_2(fake_bin, script):
    result = run_script(fake_bin, script, *TARGET, "--no-such-flag", "--dry-run")
    assert_bad_input(result, script, "--no-such-flag")
    assert gcloud_calls(fake_bin) is None


@pytest.mark.parametrize("script", SCRIPTS)
def test_missing_values(fake_bin, script):
    assert_bad_input(run_script(fake_bin, script, "--name"), script, "--name needs a value")
    result = run_script(fake_bin, script, "--zone", "us-central2-b", "--dry-run")
    assert_bad_input(result, script, "--name is required")
    result = run_script(fake_bin, script, "--name", "my-tpu", "--dry-run")
    assert_bad_input(result, script, "--zone is required")
    result = run_script(fake_bin, script, "--name", "My_TPU", "--zone", "z", "--dry-run")
    assert_bad_input(result, script, "--name 'My_TPU'")
    assert gcloud_calls(fake_bin) is None


@pytest.mark.parametrize("script", (*SCRIPTS, "common"))
def test_bash_syntax(script):
    result = subprocess.run(["bash", "-n", str(TPU / f"{script}.sh")], capture_output=True)
    assert result.returncode == 0, result.stderr


# create.sh


def test_create_dry_run(fake_bin):
    assert dry_run(fake_bin, "create", *TARGET) == [
        shlex.split(
            "gcloud compute tpus tpu-vm create my-tpu --zone=us-central2-b "
            "--accelerator-type=v4-8 --version=tpu-ubuntu2204-base"
        )
    ]
    commands = dry_run(
        fake_bin, "create", *TARGET, "--accelerator-type=v5litepod-8", "--spot", "--project", "p1"
    )
    assert commands == [
        shlex.split(
            "gcloud compute tpus tpu-vm create my-tpu --zone=us-central2-b --project=p1 "
            "--accelerator-type=v5litepod-8 --version=v2-alpha-tpuv5-lite --spot"
        )
    ]


def test_create_queued_dry_run(fake_bin):
    commands = dry_run(fake_bin, "create", *TARGET, "--queued", "--version", "my-runtime")
    assert commands == [
        shlex.split(
            "gcloud compute tpus queued-resources create my-tpu --node-id=my-tpu "
            "--zone=us-central2-b --accelerator-type=v4-8 --runtime-version=my-runtime"
        )
    ]


def test_create_settings_from_the_environment(fake_bin):
    commands = dry_run(
        fake_bin,
        "create",
        JAXDL_TPU_NAME="env-tpu",
        JAXDL_TPU_ZONE="europe-west4-a",
        JAXDL_TPU_ACCELERATOR_TYPE="v6e-8",
        JAXDL_TPU_QUEUED="1",
        JAXDL_TPU_SPOT="1",
    )
    assert commands == [
        shlex.split(
            "gcloud compute tpus queued-resources create env-tpu --node-id=env-tpu "
            "--zone=europe-west4-a --accelerator-type=v6e-8 --runtime-version=v2-alpha-tpuv6e "
            "--spot"
        )
    ]
    # A flag wins over the environment.
    commands = dry_run(fake_bin, "create", "--name", "flag-tpu", JAXDL_TPU_ZONE="z-a")
    assert commands[0][5:7] == ["flag-tpu", "--zone=z-a"]


def test_create_rejects_a_bad_accelerator_type(fake_bin):
    result = run_script(fake_bin, "create", *TARGET, "--accelerator-type", "h100", "--dry-run")
    assert_bad_input(result, "create", "--accelerator-type 'h100'")


# install.sh


def test_install_from_a_repo_url(fake_bin):
    url = "https://example.com/org/jaxdl.git"
    commands = dry_run(fake_bin, "install", *TARGET, "--repo", url)
    assert len(commands) == 1
    ssh = commands[0]
    assert ssh[:9] == [
        "gcloud",
        "compute",
        "tpus",
        "tpu-vm",
        "ssh",
        "my-tpu",
        "--zone=us-central2-b",
        "--worker=all",
        "--command",
    ]
    command = remote_command(ssh)
    assert f"git clone {url} ~/jaxdl" in command
    assert "git -C ~/jaxdl pull --ff-only" in command
    assert "python3.11 -m venv .venv" in command
    assert ".venv/bin/pip install -q -e '.[tpu]'" in command


def test_install_copies_a_source_dir(fake_bin, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "pyproject.toml").write_text("[project]\nname = 'jaxdl'\n")
    commands = dry_run(
        fake_bin, "install", *TARGET, "--source", str(source), "--remote-dir", "work/jaxdl"
    )
    assert [c[0] for c in commands] == ["tar", "gcloud", "gcloud", "rm"]
    tar, scp, ssh, rm = commands
    tarball = tar[tar.index("-czf") + 1]
    assert tar[-3:] == ["-C", str(source), "."]
    assert "--exclude=./.venv" in tar and "--exclude=./.git" in tar
    assert scp == [
        "gcloud",
        "compute",
        "tpus",
        "tpu-vm",
        "scp",
        tarball,
        "my-tpu:jaxdl-src.tar.gz",
        "--zone=us-central2-b",
        "--worker=all",
    ]
    assert "--worker=all" in ssh
    command = remote_command(ssh)
    assert "tar -xzf ~/jaxdl-src.tar.gz -C ~/work/jaxdl" in command
    assert "pip install -q -e '.[tpu]'" in command
    assert rm == ["rm", "-f", tarball]


def test_install_input_errors(fake_bin, tmp_path):
    result = run_script(fake_bin, "install", *TARGET, "--repo", "u", "--source", ".", "--dry-run")
    assert_bad_input(result, "install", "not both")
    result = run_script(fake_bin, "install", *TARGET, "--source", str(tmp_path), "--dry-run")
    assert_bad_input(result, "install", "no pyproject.toml")
    result = run_script(fake_bin, "install", *TARGET, "--remote-dir", "../x", "--dry-run")
    assert_bad_input(result, "install", "--remote-dir")


# launch.sh


def test_launch_dry_run(fake_bin):
    args = ["--config", "digits_cnn:quick", "--workdir", "runs/x", "--config.mesh.data=-1"]
    commands = dry_run(fake_bin, "launch", *TARGET, "--", *args)
    assert len(commands) == 1
    assert commands[0][5:8] == ["my-tpu", "--zone=us-central2-b", "--worker=all"]
    command = remote_command(commands[0])
    assert "nohup" in command
    assert ">> ~/jaxdl_logs/train.log 2>&1" in command
    assert ".venv/bin/jaxdl train " + " ".join(args) in command
    assert "--coordinator_address" not in command


def test_launch_runs_jaxdl_train_with_the_exact_args(fake_bin, tmp_path):
    """The remote command, run here with HOME=tmp_path and a fake jaxdl, passes every arg intact."""
    home = tmp_path / "home"
    venv_bin = home / "jaxdl" / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    fake_jaxdl = venv_bin / "jaxdl"
    fake_jaxdl.write_text('#!/bin/sh\nfor a in "$@"; do echo "arg:[$a]"; done\nexit 75\n')
    fake_jaxdl.chmod(0o755)
    args = ["--config", "digits_mlp", "--workdir", "runs/a b", "--config.name=it's", "$HOME;"]
    (ssh,) = dry_run(fake_bin, "launch", *TARGET, "--", *args)
    command = remote_command(ssh)
    subprocess.run(["sh", "-c", command], env={**os.environ, "HOME": str(home)}, check=True)
    log = home / "jaxdl_logs" / "train.log"
    deadline = time.monotonic() + 20
    while "exited with code" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the background job never finished"
        time.sleep(0.05)
    lines = log.read_text().splitlines()
    assert [line for line in lines if line.startswith("arg:")] == [
        f"arg:[{a}]" for a in ["train", *args]
    ]
    assert "=== jaxdl exited with code 75" in lines[-1]


def test_launch_needs_train_args(fake_bin):
    assert_bad_input(run_script(fake_bin, "launch", *TARGET, "--dry-run"), "launch", "after --")
    result = run_script(fake_bin, "launch", *TARGET, "--dry-run", "--", "train", "--config", "x")
    assert_bad_input(result, "launch", "without the word train")


# logs.sh, fetch.sh


def test_logs_dry_run(fake_bin):
    (ssh,) = dry_run(fake_bin, "logs", *TARGET)
    assert ssh[5:8] == ["my-tpu", "--zone=us-central2-b", "--worker=0"]
    assert remote_command(ssh) == "tail -n 100 -F ~/jaxdl_logs/train.log"
    (ssh,) = dry_run(fake_bin, "logs", *TARGET, "--worker", "3", "--project=p1")
    assert ssh[5:9] == ["my-tpu", "--zone=us-central2-b", "--project=p1", "--worker=3"]
    result = run_script(fake_bin, "logs", *TARGET, "--worker", "all", "--dry-run")
    assert_bad_input(result, "logs", "--worker 'all'")


def test_fetch_dry_run(fake_bin, tmp_path):
    dest = str(tmp_path / "back")
    commands = dry_run(fake_bin, "fetch", *TARGET, "--workdir", "runs/x/", "--to", dest)
    assert commands == [
        ["mkdir", "-p", dest],
        [
            "gcloud",
            "compute",
            "tpus",
            "tpu-vm",
            "scp",
            "--recurse",
            "my-tpu:jaxdl/runs/x",
            dest,
            "--zone=us-central2-b",
            "--worker=0",
        ],
    ]
    assert not Path(dest).exists()
    commands = dry_run(fake_bin, "fetch", *TARGET, "--workdir=/data/runs/y", "--to", dest)
    assert "my-tpu:/data/runs/y" in commands[1]
    result = run_script(fake_bin, "fetch", *TARGET, "--workdir", "runs/x", "--dry-run")
    assert_bad_input(result, "fetch", "--to is required")
    result = run_script(fake_bin, "fetch", *TARGET, "--to", dest, "--dry-run")
    assert_bad_input(result, "fetch", "--workdir is required")


# delete.sh


def test_delete_needs_yes_and_never_calls_gcloud_without_it(fake_bin):
    result = run_script(fake_bin, "delete", *TARGET)
    assert_bad_input(result, "delete", "--yes")
    assert gcloud_calls(fake_bin) is None


def test_delete_dry_run(fake_bin):
    assert dry_run(fake_bin, "delete", *TARGET) == [
        shlex.split("gcloud compute tpus tpu-vm delete my-tpu --zone=us-central2-b --quiet")
    ]
    assert dry_run(fake_bin, "delete", *TARGET, "--queued") == [
        shlex.split(
            "gcloud compute tpus queued-resources delete my-tpu --zone=us-central2-b "
            "--force --quiet"
        )
    ]


def test_delete_with_yes_runs_gcloud(fake_bin):
    """Without --dry-run the scripts do run gcloud (here the fake), and pass on its failure."""
    result = run_script(fake_bin, "delete", *TARGET, "--yes")
    assert result.returncode == FAKE_GCLOUD_EXIT
    assert gcloud_calls(fake_bin) == (
        shlex.split("compute tpus tpu-vm delete my-tpu --zone=us-central2-b --quiet")
    )
    assert "+ gcloud compute tpus tpu-vm delete my-tpu" in result.stderr
    assert result.stdout == ""


# slurm/train_multinode.sbatch


def sbatch_options() -> dict[str, str]:
    options = {}
    for line in SBATCH.read_text().splitlines():
        if match := re.match(r"#SBATCH --([\w-]+)(?:=(\S+))?", line):
            options[match[1]] = match[2]
    return options


def test_sbatch_syntax_and_options():
    result = subprocess.run(["bash", "-n", str(SBATCH)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    options = sbatch_options()
    assert int(options["nodes"]) >= 2
    # JAX's SLURM detection gives each process the GPU at index SLURM_LOCALID.
    assert options["ntasks-per-node"] == options["gpus-per-node"]
    assert "requeue" in options
    assert options["signal"] == "B:TERM@120"
    text = SBATCH.read_text()
    assert "--config.mesh.data=-1" in text
    assert "pip install -e '.[cuda]'" in text


def fake_slurm(tmp_path: Path, srun_body: str) -> dict[str, str]:
    bin_dir = tmp_path / "slurm-bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(
        '#!/bin/bash\nprintf \'%s\\n\' "$@" > "$FAKE_DIR/srun.args"\n' + srun_body
    )
    (bin_dir / "scontrol").write_text(
        '#!/bin/sh\nprintf \'%s\\n\' "$@" > "$FAKE_DIR/scontrol.args"\n'
    )
    for path in bin_dir.iterdir():
        path.chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_DIR": str(tmp_path),
        "SLURM_JOB_ID": "4242",
        "SLURM_SUBMIT_DIR": str(tmp_path),
        "CONFIG": "digits_mlp",
    }


def test_sbatch_requeues_after_a_preemption_checkpoint(tmp_path):
    """SIGTERM to the batch script reaches srun; exit 75 becomes `scontrol requeue JOBID`."""
    env = fake_slurm(
        tmp_path,
        "trap 'exit 75' TERM\ntouch \"$FAKE_DIR/started\"\n"
        "for _ in $(seq 400); do sleep 0.05; done\nexit 1\n",
    )
    process = subprocess.Popen(
        ["bash", str(SBATCH), "--config.seed=1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 15
    while not (tmp_path / "started").exists():
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert (tmp_path / "scontrol.args").read_text().split() == ["requeue", "4242"]
    srun_args = (tmp_path / "srun.args").read_text().splitlines()
    assert srun_args[0] == str(tmp_path / ".venv" / "bin" / "jaxdl")
    assert srun_args[1:] == [
        "train",
        "--config",
        "digits_mlp",
        "--workdir",
        "runs/digits_mlp_multinode",
        "--config.mesh.data=-1",
        "--config.seed=1",
    ]


def test_sbatch_passes_other_exit_codes_through(tmp_path):
    env = fake_slurm(tmp_path, "exit 3\n")
    result = subprocess.run(
        ["bash", str(SBATCH)], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert not (tmp_path / "scontrol.args").exists()


# tpu/colab_tpu.ipynb


def notebook_code() -> list[str]:
    notebook = json.loads(NOTEBOOK.read_text())
    return ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]


def test_notebook_is_nbformat_4_with_empty_outputs():
    notebook = json.loads(NOTEBOOK.read_text())
    assert notebook["nbformat"] == 4
    assert notebook["metadata"]["kernelspec"]["language"] == "python"
    cells = notebook["cells"]
    assert {c["cell_type"] for c in cells} <= {"code", "markdown", "raw"}
    code = [c for c in cells if c["cell_type"] == "code"]
    assert len(code) >= 4
    for cell in code:
        assert cell["outputs"] == [] and cell["execution_count"] is None
        assert isinstance(cell["source"], list)
    for i, source in enumerate(notebook_code()):
        compile(source, f"cell {i}", "exec")  # plain Python, no shell escapes or magics
    joined = "\n".join(notebook_code())
    assert "jax.make_mesh" in joined
    assert '"digits_mlp:quick"' in joined and '"--fresh"' in joined


@pytest.mark.slow
def test_notebook_runs_top_to_bottom_on_cpu(tmp_path):
    """Every code cell, in order, in a fresh interpreter; the run goes to tmp_path, not runs/."""
    script = "\n\n".join(notebook_code())
    workdir_line = 'WORKDIR = Path("runs/colab_digits_mlp")'
    assert workdir_line in script
    script = script.replace(workdir_line, f"WORKDIR = Path({str(tmp_path / 'run')!r})")
    path = tmp_path / "notebook.py"
    path.write_text(script)
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAXDL_REPO")}
    env.update(JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
    result = subprocess.run(
        [sys.executable, str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "jaxdl is already installed" in result.stdout
    assert "Mesh(" in result.stdout
    assert "final_metrics:" in result.stdout and "test/accuracy" in result.stdout
    assert (tmp_path / "run" / "summary.json").is_file()

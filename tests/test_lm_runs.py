"""Language-model runs through the real CLI: bits_per_char in summary.json, exact resume after a
kill, and `jaxdl sample` with its error conventions."""

import json
import signal

import pytest

from jaxdl.cli import EXIT_BAD_INPUT, main
from tests.run_helpers import run_train, summary

QUICK_GPT = "experiments/stdlib_gpt.py:quick"


def _overrides(data_dir: str) -> tuple[str, ...]:
    return (f"--config.data.data_dir={data_dir}", "--config.train.checkpoint_every=10")


@pytest.fixture(scope="module")
def gpt_run(sequence_data_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("gpt") / "run"
    result = run_train(workdir, *_overrides(sequence_data_dir), config=QUICK_GPT)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_summary_reports_bits_per_char(gpt_run):
    facts = summary(gpt_run)
    bits = facts["bits_per_char"]
    assert bits == facts["final_metrics"]["test/bits_per_char"]
    # 40 steps on a tiny corpus of repeated lines: well below the 8 bits of a uniform byte.
    assert 0.0 < bits < 6.0, bits


# Two more CLI runs (about 25 s); the engine's resume is covered for every task in the fast suite.
@pytest.mark.slow
def test_killed_lm_run_resumes_to_identical_parameters(gpt_run, sequence_data_dir, tmp_path):
    workdir = tmp_path / "run"
    overrides = _overrides(sequence_data_dir)
    killed = run_train(workdir, *overrides, faults="kill_at_step=25", config=QUICK_GPT)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = run_train(workdir, *overrides, config=QUICK_GPT)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming at step 20" in resumed.stdout
    assert summary(workdir)["params_fingerprint"] == summary(gpt_run)["params_fingerprint"]
    assert summary(workdir)["final_metrics"] == summary(gpt_run)["final_metrics"]


def _sample(capsys, *args: str) -> tuple[int, str, str]:
    """`jaxdl sample ARGS` in this process (the compiled generation is reused between calls):
    (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(["sample", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_sample_is_fixed_by_the_seed(gpt_run, capsys):
    common = ("--workdir", str(gpt_run), "--prompt", "def ", "--max_new_tokens", "12")
    code, first, errors = _sample(capsys, *common, "--seed", "0", "--num", "2", "--top_k", "20")
    assert code == 0, errors[-2000:]
    assert _sample(capsys, *common, "--seed", "0", "--num", "2", "--top_k", "20")[1] == first
    assert first.count("--- sample") == 2 and "\ndef " in first
    code, greedy, _ = _sample(capsys, *common, "--temperature", "0")
    assert code == 0 and greedy.startswith("def ")


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (("--max_new_tokens", "5000"), "max_length"),
        (("--top_p", "0"), "--top_p"),
        (("--checkpoint", "7"), "--checkpoint 7"),
    ],
)
def test_bad_sample_requests_exit_2_with_one_line(gpt_run, capsys, args, names):
    before = sorted(p.name for p in gpt_run.rglob("*"))
    code, _, errors = _sample(capsys, "--workdir", str(gpt_run), "--prompt", "x", *args)
    assert code == EXIT_BAD_INPUT
    lines = [line for line in errors.strip().splitlines() if line.startswith("jaxdl:")]
    assert len(lines) == 1 and names in lines[0], errors
    assert sorted(p.name for p in gpt_run.rglob("*")) == before


def test_text_sample_needs_a_prompt_and_no_image_flags(gpt_run, tmp_path, capsys):
    code, _, errors = _sample(capsys, "--workdir", str(gpt_run))
    assert code == EXIT_BAD_INPUT and "--prompt" in errors
    out = str(tmp_path / "x.png")
    code, _, errors = _sample(capsys, "--workdir", str(gpt_run), "--prompt", "x", "--out", out)
    assert code == EXIT_BAD_INPUT and "--out is for runs of generative tasks" in errors


def test_sample_refuses_a_classification_run(run_dir, capsys):
    code, _, errors = _sample(capsys, "--workdir", str(run_dir), "--prompt", "x")
    assert code == EXIT_BAD_INPUT
    assert "language_model" in errors


def test_summary_is_json_with_perplexity(gpt_run):
    final = json.loads((gpt_run / "summary.json").read_text())["final_metrics"]
    assert {"test/loss", "test/accuracy", "test/perplexity", "test/bits_per_char"} <= set(final)

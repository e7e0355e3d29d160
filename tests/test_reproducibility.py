"""Same seed, same bits, in separate processes; another seed, other bits."""

from jaxdl.engine.metrics_log import read_records
from tests.run_helpers import RESUME_OVERRIDES, run_train, summary


def test_same_seed_in_a_new_process_gives_identical_parameters(reference_run, tmp_path):
    again = tmp_path / "again"
    result = run_train(again, *RESUME_OVERRIDES)
    assert result.returncode == 0, result.stderr[-3000:]
    assert summary(again)["params_fingerprint"] == summary(reference_run)["params_fingerprint"]
    assert read_records(again) == read_records(reference_run)


def test_another_seed_gives_different_parameters(reference_run, tmp_path):
    other = tmp_path / "other"
    result = run_train(other, *RESUME_OVERRIDES, "--config.seed=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert summary(other)["params_fingerprint"] != summary(reference_run)["params_fingerprint"]

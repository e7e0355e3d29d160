"""Tests run on CPU. Eight virtual devices let one process test sharding over a real mesh."""

import os

# Must be set before JAX initialises its backend; no test may import jax before this file.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest

from tests.run_helpers import RESUME_OVERRIDES, run_train


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
    """One uninterrupted quick CNN run (seed 0), shared by the reproducibility and resume tests."""
    workdir = tmp_path_factory.mktemp("reference") / "run"
    result = run_train(workdir, *RESUME_OVERRIDES)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir

"""Tests run on CPU. Eight virtual devices let one process test sharding over a real mesh."""

import atexit
import os
import shutil
import tempfile

# Must be set before JAX initialises its backend; no test may import jax before this file.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for the session, shared with the CLI subprocesses the tests
# start: the quick CNN compiles once instead of once per process. Executables are the same
# either way, so results are too.
_COMPILATION_CACHE = tempfile.mkdtemp(prefix="jaxdl-test-xla-cache-")
atexit.register(shutil.rmtree, _COMPILATION_CACHE, ignore_errors=True)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _COMPILATION_CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# Feature classifiers that generative runs train for their sample quality: one per session,
# shared with subprocesses, never in the user's ~/.cache.
_CLASSIFIER_CACHE = tempfile.mkdtemp(prefix="jaxdl-test-classifiers-")
atexit.register(shutil.rmtree, _CLASSIFIER_CACHE, ignore_errors=True)
os.environ["JAXDL_CACHE_DIR"] = _CLASSIFIER_CACHE

import pytest  # noqa: E402 (after the environment above)

from tests.postgres_server import postgres_url  # noqa: E402, F401 (fixture: a throwaway PostgreSQL server)
from tests.run_helpers import RESUME_OVERRIDES, run_train  # noqa: E402


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
    """One uninterrupted quick CNN run (seed 0), shared by the reproducibility and resume tests."""
    workdir = tmp_path_factory.mktemp("reference") / "run"
    result = run_train(workdir, *RESUME_OVERRIDES)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """A finished `digits_mlp.py:quick` run (the CLI error tests); tests copy it, never change it."""
    from jaxdl.cli import main
    from tests.test_cli_errors import QUICK

    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", "--config", QUICK, "--workdir", str(run_dir)]) == 0
    assert (run_dir / "summary.json").is_file()
    return run_dir


@pytest.fixture
def run_dir(finished_run, tmp_path):
    """This test's own copy of the finished run, at tmp_path/run (symlinks kept as links)."""
    target = tmp_path / "run"
    shutil.copytree(finished_run, target, symlinks=True)
    return target


# jaxdl's graph builders: prepared into one data_dir by whichever test needs each first.


@pytest.fixture(scope="session")
def graph_data_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("graph_data"))


# Digits: a real TFDS builder prepared into a temporary data_dir once for the session.


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="session")
def digits(digits_dir):
    """Streamed: its splits are the builder's raw records."""
    from jaxdl.data import load_dataset
    from tests.data_helpers import data_config

    return load_dataset(data_config("digits", digits_dir))


@pytest.fixture(scope="session")
def digits_in_memory(digits_dir):
    """Decoded into arrays, as `data.pipeline='auto'` does for digits."""
    from jaxdl.data import load_dataset
    from tests.data_helpers import data_config

    return load_dataset(data_config("digits", digits_dir, pipeline="auto"))


@pytest.fixture(scope="session")
def sequence_data_dir(tmp_path_factory) -> str:
    """stdlib_chars and algorithmic/{brackets,reverse}, small (tests/text_helpers.py)."""
    from tests.text_helpers import prepare_small_sequence_data

    return prepare_small_sequence_data(tmp_path_factory.mktemp("sequences") / "tfds")

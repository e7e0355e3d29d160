# The two commands a newcomer needs: `make train` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
WORKDIR ?= runs/digits_cnn
EXPERIMENT ?= experiments/digits_cnn.py

.PHONY: install train test test-all lint format bench chaos clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "jaxdl needs Python 3.11+, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

train: install
	$(PY) -m jaxdl.train --config $(EXPERIMENT) --workdir $(WORKDIR)

# --durations: CI's budget is 25 minutes; the slowest tests are listed on every run.
# The sweep tests start a throwaway PostgreSQL server: its binaries are installed here if missing
# (as root with apt-get; elsewhere those tests skip, and say how to install them).
test: install lint
	scripts/ensure_postgres.sh
	$(PY) -m pytest -m "not slow" -q --durations=15

test-all: install lint
	scripts/ensure_postgres.sh
	$(PY) -m pytest -q

# The model suite against PyTorch, then the engine's throughput (step alone, pipeline alone,
# end to end); writes benchmarks/RESULTS.md, results.json and suite.png (python -m benchmarks -h).
BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m benchmarks

# 20 kills (SIGTERM, SIGKILL, mid-save) of the default experiment, which must still end bit for
# bit like an uninterrupted run; runs/chaos-<stamp>/chaos.json has the figures (jaxdl/chaos.py).
chaos: install
	$(PY) -m jaxdl.chaos

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache *.egg-info

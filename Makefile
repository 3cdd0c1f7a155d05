# Two commands matter: `make demo` (the main job) and `make test` (everything CI runs).
# Each creates .venv and installs qroll into it on first use, and again when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

QLIB_VENV := .venv-qlib

.PHONY: demo test test-fast lint typecheck venv oracle bench-alpha158 bench-rolling bench-backtest bench-demo-evaluation bench-pool bench-collect-server clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "qroll needs Python 3.10 or newer; set PYTHON=python3.x")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

## the main job: the full rolling experiment on the bundled synthetic market (a few minutes)
demo: $(STAMP)
	$(BIN)/qroll demo

## everything CI runs: lint, type check, and the whole test suite (slow tests included)
test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest --durations=15

## quick iteration: unit tests and doctests only, stop at the first failure
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -x -q tests/unit src/qroll

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

## Qlib 0.9.7 as an oracle, in its own venv (never a dependency of qroll)
$(QLIB_VENV)/.installed:
	@test -x $(QLIB_VENV)/bin/python || $(PYTHON) -m venv $(QLIB_VENV)
	$(QLIB_VENV)/bin/python -m pip install --quiet pyqlib==0.9.7
	@touch $@

## regenerate tests/fixtures/qlib_rolling_oracle.json from Qlib itself
oracle: $(QLIB_VENV)/.installed
	$(QLIB_VENV)/bin/python benchmarks/oracle/qlib_rolling_cases.py

## Alpha158 speed and fidelity, qroll against Qlib side by side (writes benchmarks/results/alpha158.json)
bench-alpha158: $(STAMP) $(QLIB_VENV)/.installed
	$(BIN)/python benchmarks/bench_alpha158.py

## the whole rolling experiment (Alpha158 + LightGBM, 5 windows), qroll against Qlib side by side
## (several minutes; writes benchmarks/results/rolling.json)
bench-rolling: $(STAMP) $(QLIB_VENV)/.installed
	$(BIN)/python benchmarks/bench_rolling.py

## the daily portfolio backtest (CSI300, 2019-2020, topk 50), qroll against Qlib side by side
## (about 30 s; writes benchmarks/results/backtest.json)
bench-backtest: $(STAMP) $(QLIB_VENV)/.installed
	$(BIN)/python benchmarks/bench_backtest.py

## what the merged-signal backtests and the report add to the demo's `qroll run` (a few minutes;
## writes benchmarks/results/demo_evaluation.json)
bench-demo-evaluation: $(STAMP)
	$(BIN)/python benchmarks/bench_demo_evaluation.py

## task-pool throughput on SQLite and PostgreSQL, against Procrastinate (in .venv-procrastinate)
## and a bare SKIP LOCKED loop (writes benchmarks/results/pool.json)
.venv-procrastinate/.installed:
	@test -x .venv-procrastinate/bin/python || $(PYTHON) -m venv .venv-procrastinate
	.venv-procrastinate/bin/python -m pip install --quiet 'procrastinate==3.*'
	@touch $@

bench-pool: $(STAMP) .venv-procrastinate/.installed
	$(BIN)/python benchmarks/bench_pool.py

## collecting 200 runs through a local mlflow server against a local SQLite store
## (writes benchmarks/results/collect_server.json)
bench-collect-server: $(STAMP)
	$(BIN)/python benchmarks/bench_collect_server.py

clean:
	rm -rf $(VENV) $(QLIB_VENV) .pytest_cache .mypy_cache .ruff_cache

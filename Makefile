# Two commands matter: `make demo` (the main job) and `make test` (everything CI runs).
# Each creates .venv and installs qroll into it on first use, and again when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

QLIB_VENV := .venv-qlib

.PHONY: demo test test-fast lint typecheck venv qlib-venv oracle bench-alpha158 bench-rolling bench-backtest bench-demo-evaluation bench-pool bench-collect-server bench-online clean

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

## everything CI runs: lint, type check, and the whole test suite (slow tests included); builds
## Qlib's venv first so the oracle tests run (they skip, quoting why, where it cannot be installed)
test: $(STAMP) lint typecheck qlib-venv
	QROLL_QLIB_VENV=$(QLIB_VENV) $(BIN)/python -m pytest --durations=15

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
	@rm -f $(QLIB_VENV)/unavailable.txt
	@touch $@

## the same venv for `make test`, never failing: where the install fails (PyPI unreachable, no
## wheel for this Python) the reason goes to $(QLIB_VENV)/unavailable.txt, which the oracle tests'
## skip message quotes (tests/qlib_venv.py); the next `make test` tries again. pip gives up after
## 3 tries of 30 s on a network that drops packets.
qlib-venv:
	@if [ ! -f $(QLIB_VENV)/.installed ]; then \
	  echo "Building Qlib 0.9.7's venv in $(QLIB_VENV) for the oracle tests (once, 1-2 minutes)"; \
	  mkdir -p $(QLIB_VENV); log=$(QLIB_VENV)/install.log; \
	  if { test -x $(QLIB_VENV)/bin/python || $(PYTHON) -m venv $(QLIB_VENV); } > $$log 2>&1 && \
	     $(QLIB_VENV)/bin/python -m pip install --quiet --retries 2 --timeout 30 pyqlib==0.9.7 >> $$log 2>&1; then \
	    rm -f $$log $(QLIB_VENV)/unavailable.txt; touch $(QLIB_VENV)/.installed; \
	  else \
	    why=$$(grep -iE '^error' $$log | tail -n 3); [ -n "$$why" ] || why=$$(tail -n 3 $$log); \
	    when=$$(date -u +%Y-%m-%d); \
	    printf '%s\n%s\n' "installing pyqlib==0.9.7 into $(QLIB_VENV) with $(PYTHON) failed on $$when" \
	      "(full log: $$log): $$why" > $(QLIB_VENV)/unavailable.txt; \
	    echo "WARNING: the Qlib oracle tests will be skipped:"; cat $(QLIB_VENV)/unavailable.txt; \
	  fi; \
	fi

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

## `qroll update` after one new day (300 instruments x 13 years, Alpha158 + LightGBM): no window due,
## nothing new, one window due; against Qlib 0.9.7's OnlineManager.routine on a copy of the same data
## (several minutes; writes benchmarks/results/online.json)
bench-online: $(STAMP) $(QLIB_VENV)/.installed
	$(BIN)/python benchmarks/bench_online.py

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

# `make demo` and `make test` build the virtual environment from uv.lock when it is missing
# or stale, then run. Nothing else needs to be installed by hand.
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
SYNCED := $(VENV)/.synced
BIN := $(VENV)/bin

.PHONY: setup demo demo-loop bench test test-fast lint lock clean

setup: $(SYNCED)

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Bytecode is written on first import, for the modules a process imports: with
# PYTHONDONTWRITEBYTECODE set (as on CI machines) every process would compile each module it
# imports from source again, about 8 s of CPU for a flow run, the CLI or a server. Compiling
# all 35,000 modules of the environment up front (`uv sync --compile-bytecode`) takes 50 s.
export PYTHONDONTWRITEBYTECODE :=

$(SYNCED): uv.lock pyproject.toml | $(UV)
	$(UV) sync --locked
	touch $@

demo: $(SYNCED)
	$(BIN)/mlops demo

demo-loop: $(SYNCED)
	$(BIN)/mlops demo --loop

# `make bench` measures every stage at a small size (a few minutes); `make bench FULL=1` at the
# issue's sizes (1M rows). The report goes to .mlops/reports/benchmarks/<UTC time>/report.md.
bench: $(SYNCED)
	$(BIN)/python -m benchmarks.run $(if $(FULL),--full) $(if $(ONLY),--only $(ONLY)) $(if $(SKIP),--skip $(SKIP))

lint: $(SYNCED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports  # the layers of pyproject.toml's [tool.importlinter]

# The whole suite on two workers, with line and branch coverage of the library (`mlops`
# subprocesses included; not the e2e and fault tiers' workers) printed at the end. In the
# modules' own order:
# `.venv/bin/pytest` alone runs them in a random order (pytest-randomly).
test: lint
	mkdir -p .coverage
	$(BIN)/pytest --cov --cov-report=term --randomly-dont-reorganize

# The inner loop: the unit tier in one process (well under a minute).
test-fast: $(SYNCED)
	$(BIN)/pytest tests/unit --numprocesses=0

lock: $(UV)
	$(UV) lock

clean:
	rm -rf $(VENV) $(TOOLS) .mlops .coverage

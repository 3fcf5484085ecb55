# Two commands on a fresh machine: `make run` (the whole stack with demo calls) and
# `make test` (the whole suite). Both create the virtualenv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench screenshot clean

# The first run installs for a minute or so: pip shows what it fetches as it goes.
$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing Switchboard and its dependencies (first run only)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --progress-bar on -e ".[dev]"
	@touch $(STAMP)
	@echo "==> installed in $(VENV)/ (use $(BIN)/python, $(BIN)/pytest, $(BIN)/switchboard)"

run: $(STAMP)
	$(BIN)/switchboard dev --calls $(or $(CALLS),3) $(ARGS)

# Two test processes, one per core: most tests wait on sockets and child processes, so the
# suite takes about 7.5 minutes instead of 13 (`pytest` alone runs one process, as usual).
test: $(STAMP)
	$(BIN)/pytest -q -n 2 --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m bench

# Re-take docs/console.png (the README's) with the console's browser test.
screenshot: $(STAMP)
	SWITCHBOARD_UPDATE_SCREENSHOT=1 $(BIN)/pytest -q tests/services/ingress/console/test_browser.py

clean:
	rm -rf $(VENV) .switchboard .pytest_cache .ruff_cache .mypy_cache

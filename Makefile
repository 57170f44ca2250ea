# Two commands for a fresh machine: `make demo` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: demo test lint typecheck services install clean bench ui

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install only when pyproject.toml changed.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/maintenance/demo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy

typecheck: lint

# Starts (idempotently) what the tests need, then runs lint and every test, slow ones included.
services:
	bash scripts/services.sh

test: $(STAMP) services lint
	$(BIN)/pytest --cov --cov-report=term $(PYTEST_ARGS)

bench: $(STAMP)
	@echo "Each benchmark is one command in benchmarks/; see the Performance section of README.md"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The dashboard: rebuild the committed bundle in src/modelyard/server/static (needs node/npm;
# users of the installed package never do).
ui:
	cd frontend && npm ci && npm run build

# casbak: every target sets up what it needs in .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_REPO := .demo/repo

.PHONY: demo test lint typecheck layers unit bench bench-compare soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh $(DEMO_REPO)

lint: $(STAMP)
	$(BIN)/ruff check casbak tests benchmarks
	$(BIN)/ruff format --check casbak tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy --strict casbak

layers: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest --cov=casbak --cov-branch --cov-report=term --cov-fail-under=90

test: lint typecheck layers unit

bench-compare: $(STAMP)
	$(BIN)/python -m benchmarks.compare

bench: $(STAMP)
	$(BIN)/pytest benchmarks --benchmark-enable --benchmark-only -p no:cacheprovider

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache .coverage

# Longer reliability run: more racing processes and rounds, more fuzz examples.
soak: $(STAMP)
	CASBAK_SOAK=5 CASBAK_FUZZ_EXAMPLES=5000 $(BIN)/pytest -p no:cacheprovider \
		tests/test_concurrency.py tests/test_fuzz.py tests/test_crash.py

# casbak: every target sets up what it needs in .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_REPO := .demo/repo

.PHONY: demo test lint typecheck layers unit bench bench-compare soak clean

LOCK := requirements.lock
PIP_TOOLS := pip-tools==7.6.2

.PHONY: lock

# Exactly the locked versions (hash-checked), then casbak itself without
# resolving anything again: a fresh clone gets what CI tested.
$(STAMP): $(LOCK) pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Refresh the lock file from pyproject's ranges (newest versions the registry serves).
lock:
	rm -rf .lockenv
	$(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet $(PIP_TOOLS)
	.lockenv/bin/pip-compile --quiet --upgrade --generate-hashes --allow-unsafe \
		--extra dev --all-build-deps --strip-extras --no-emit-find-links --no-emit-index-url \
		-o $(LOCK) pyproject.toml
	rm -rf .lockenv

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
	rm -rf $(VENV) .lockenv .demo .pytest_cache .mypy_cache .ruff_cache .coverage

# Longer reliability run: more racing processes and rounds, more fuzz examples.
soak: $(STAMP)
	CASBAK_SOAK=5 CASBAK_FUZZ_EXAMPLES=5000 $(BIN)/pytest -p no:cacheprovider \
		tests/test_concurrency.py tests/test_fuzz.py tests/test_crash.py

# casbak: every target sets up what it needs in .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_REPO := .demo/repo

.PHONY: demo test lint typecheck layers unit bench bench-compare soak clean

LOCK := requirements.lock
RUN_LOCK := requirements-run.lock
RUN_STAMP := $(VENV)/.installed-run
PIP_TOOLS := pip-tools==7.6.2
COMPILE := .lockenv/bin/pip-compile --quiet --generate-hashes --allow-unsafe --all-build-deps \
	--strip-extras --no-emit-find-links --no-emit-index-url

.PHONY: lock

# Two locks, both exact and hash-checked: $(RUN_LOCK) holds what casbak runs on
# (msgspec, zstandard, blake3, click, and the build backend for the editable
# install), $(LOCK) that plus the development tools. The demo installs only the
# first; test targets add the second on top, so switching targets installs
# only what is missing. casbak itself goes in without resolving anything
# again: a fresh clone gets what CI tested. The editable install is a plain
# path entry (compat mode), not an import hook: the hook imported pathlib, re
# and urllib into every casbak process, a third of the CLI's start-up.
$(RUN_STAMP): $(RUN_LOCK) pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(RUN_LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e . \
		--config-settings editable_mode=compat
	touch $(RUN_STAMP)

$(STAMP): $(LOCK) $(RUN_STAMP)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(LOCK)
	touch $(STAMP)

# Refresh both locks from pyproject's ranges (newest versions the registry
# serves): the full one first, then the runtime one starting from its pins, so
# a package in both has one version. The only way to regenerate either.
lock:
	rm -rf .lockenv
	$(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet $(PIP_TOOLS)
	$(COMPILE) --upgrade --extra dev -o $(LOCK) pyproject.toml
	cp $(LOCK) $(RUN_LOCK)
	$(COMPILE) -o $(RUN_LOCK) pyproject.toml
	rm -rf .lockenv

demo: $(RUN_STAMP)
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

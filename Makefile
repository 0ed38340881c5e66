# Every target installs what it needs into .venv first, so a fresh clone needs only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test lint demo bench dist clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest

demo: install
	$(BIN)/python scripts/demo.py

bench: install
	$(BIN)/python -m bench

# The folder to deploy: the connector and its runtime needs only. The package holds nothing else (the Dune
# emulator, tests, benchmarks and dev tools live beside it), so this is a plain copy.
# `make dist DIST=<dir>` builds elsewhere (the tests build into a temporary folder).
DIST ?= dist/connector

dist:
	# Replace the code, keep the local runner's files/ (warehouse and state) between builds.
	rm -rf $(DIST)/connector.py $(DIST)/requirements.txt $(DIST)/dune_async
	mkdir -p $(DIST)
	cp -R connector.py requirements.txt dune_async $(DIST)/
	find $(DIST) -name __pycache__ -prune -exec rm -rf {} +
	# Your settings, if you keep them in the git-ignored configuration.local.json (the SDK never uploads this file).
	if [ -f configuration.local.json ]; then cp configuration.local.json $(DIST)/configuration.json; \
	else cp configuration.json $(DIST)/configuration.json; fi
	@echo "$(DIST) is ready to deploy (see README: Getting started)"

clean:
	rm -rf $(VENV) files dist .sdk-home .pytest_cache .ruff_cache bench/.work

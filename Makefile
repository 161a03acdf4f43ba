# flowpbx developer entry points. Everything runs from the project-local .venv,
# which scripts/bootstrap creates/updates on demand.

SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
BENCHMARKS := $(sort $(wildcard benchmarks/bench_*.py))

.PHONY: all test bootstrap install-servers run validate flows-test graph reload bench lint-container clean distclean

all: test

test:
	scripts/test

bootstrap:
	scripts/bootstrap

install-servers:
	scripts/install-servers

run:
	scripts/run

validate: bootstrap
	$(BIN)/flowpbx validate flows/

# The flow authors' scenario tests (flows/tests/), with their coverage.
flows-test: bootstrap
	$(BIN)/flowpbx test --min-coverage 100

# A flow's diagram: make graph FLOW=seguros FORMAT=svg (writes seguros.svg; mermaid to stdout).
FLOW ?= seguros
FORMAT ?= mermaid
graph: bootstrap
	@if [ "$(FORMAT)" = mermaid ] || [ "$(FORMAT)" = dot ]; then $(BIN)/flowpbx graph $(FLOW) --format $(FORMAT); \
	else $(BIN)/flowpbx graph $(FLOW) --format $(FORMAT) -o $(FLOW).$(FORMAT) && echo "wrote $(FLOW).$(FORMAT)"; fi

# Check the flows and make the running `make run` serve them now (it also notices saved files).
reload: bootstrap
	$(BIN)/flowpbx reload

# hadolint on the Dockerfile; docker-compose config -q and the compose schema on
# docker-compose.yml (docs/operations.md section 1); make test runs it through
# tests/test_container.py.
lint-container: bootstrap
	scripts/lint-container

bench: bootstrap
	@set -e; for f in $(BENCHMARKS); do echo "==> $$f"; $(BIN)/python "$$f"; done

# Remove caches and build artefacts (keeps .venv; see distclean).
clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name "*.egg-info" \) -prune -exec rm -rf {} +

# clean, and also remove the virtualenv.
distclean: clean
	rm -rf $(VENV)

# hybridmesh: `make demo` and `make test` work on a fresh machine with only Python 3.11+.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test fuzz-api contracts record-contracts chaos-quick bench lint format install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# `make demo EVENTS=kafka` runs the demo's bus on a local Kafka-protocol broker.
demo: $(STAMP)
	$(BIN)/hybridmesh demo $(if $(EVENTS),--events $(EVENTS))

# Two workers: the suite mostly waits on servers and subprocesses, so it takes about half
# the time; every test makes its own databases, streams, topics and ports.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --durations=15

# Schemathesis against a real `hybridmesh serve`: no 5xx, no answer outside the OpenAPI document.
fuzz-api: $(STAMP)
	scripts/fuzz-api

# The committed Pact contracts (contracts/) against the reference services on loopback.
contracts: $(STAMP)
	scripts/verify-contracts

# Re-record the reference contracts from the reference system's traffic into
# .hybridmesh/recorded-contracts and compare them with contracts/: no change, exit 0.
record-contracts: $(STAMP)
	HYBRIDMESH_LOG_LEVEL=WARNING $(BIN)/python -m hybridmesh.contracts.reference record \
	  .hybridmesh/recorded-contracts contracts/contracts.yaml
	$(BIN)/hybridmesh contracts diff --dir contracts --new .hybridmesh/recorded-contracts

# Three of the reference system's chaos experiments, quick (about a minute): fails when a
# hypothesis that experiments/expected.json says held no longer does. Reports in
# .hybridmesh/chaos/ (docs/resilience.md: the other two, and the full runs).
chaos-quick: $(STAMP)
	$(BIN)/hybridmesh chaos lab --quick legacy-erp-down worker-killed bad-version-at-25 \
	  --expected experiments/expected.json

bench: $(STAMP)
	$(BIN)/python -m benchmarks

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests examples benchmarks
	$(BIN)/ruff check --fix src tests examples benchmarks

clean:
	rm -rf $(VENV) .hybridmesh .pytest_cache .mypy_cache .ruff_cache

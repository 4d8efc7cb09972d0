# Mexican Deep DICOM — `make run` starts the embedded system, `make test` sets up and runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export MDD_CACHE_DIR ?= $(CURDIR)/.cache

.PHONY: setup run demo test unit integration e2e faults servers lint compose-check clean

$(BIN)/mdd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# compat: the checkout itself is on the path, so a package that a pull adds is importable without reinstalling
	$(BIN)/pip install --quiet --config-settings editable_mode=compat -e '.[test]'
	touch $@

## setup: the virtualenv with the project and its test tools
setup: $(BIN)/mdd

## run: set up and start all five services in one process (embedded mode)
run: setup
	$(BIN)/mdd up

## demo: send a synthetic study to a running system and watch its lights
demo: setup
	$(BIN)/mdd demo

## servers: Debian packages (PostgreSQL, dcmtk, Orthanc, Chromium, nginx, npm), the Kafka and HAPI FHIR validator jars, MinIO,
## the Compose plugin, MLServer, Triton (PyPI's nvidia-pytriton), the OHIF viewer (npm); cached
servers:
	bash infra/setup-debian.sh
	bash infra/kafka/fetch.sh
	bash infra/fhir/fetch.sh
	bash infra/ohif/fetch.sh
	bash infra/minio/fetch.sh
	bash infra/compose/fetch.sh
	bash infra/mlserver/setup.sh
	bash infra/pytriton/setup.sh

## test: set up everything and run unit, integration, end-to-end and fault tests
test: setup servers
	$(BIN)/pytest -p no:cacheprovider tests/unit tests/integration tests/e2e tests/faults

unit: setup
	$(BIN)/pytest tests/unit

integration: setup servers
	$(BIN)/pytest tests/integration

e2e: setup servers
	$(BIN)/pytest tests/e2e

faults: setup servers
	$(BIN)/pytest tests/faults

compose-check:
	docker compose config --quiet

clean:
	rm -rf var test-artifacts

# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup services browser crowdsec flink demo live test lint bench bench-month clean

setup: $(STAMP)

# A fresh virtual environment with the pinned dependencies (constraints.txt pins every
# transitive package too) and ecomwatch installed in editable mode.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/ecomwatch demo --dir demo-output

# The live service: serve + an attack scenario replayed into it; open http://127.0.0.1:8080/
live: setup
	$(BIN)/ecomwatch demo --live --dir demo-output

lint: setup
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples
	$(BIN)/mypy src

# The dashboard test drives Debian's Chromium (Playwright uses it; it downloads no browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }

# Servers the tests start on loopback (kinesis-local, pinned in services/package-lock.json).
SERVICES_STAMP := services/node_modules/.installed
services: $(SERVICES_STAMP)

$(SERVICES_STAMP): services/package.json services/package-lock.json
	npm ci --prefix services --no-audit --no-fund --loglevel=error
	touch $(SERVICES_STAMP)

# CrowdSec for `ecomwatch evaluate-logs --crowdsec .tools/crowdsec` (the comparison on real
# logs): Debian's package unpacked, never installed (its post-install step registers with
# CrowdSec's central API, which needs the internet).
CROWDSEC_VERSION := 1.4.6-6~deb12u1+b1
CROWDSEC := .tools/crowdsec/usr/bin/crowdsec
crowdsec: $(CROWDSEC)

$(CROWDSEC):
	rm -rf .tools/download && mkdir -p .tools/download
	cd .tools/download && { apt-get download -q 'crowdsec=$(CROWDSEC_VERSION)' || \
		{ apt-get update -q && apt-get download -q 'crowdsec=$(CROWDSEC_VERSION)'; }; }
	dpkg-deb -x .tools/download/crowdsec_*.deb .tools/crowdsec
	rm -rf .tools/download

# The Flink job's environment (`ecomwatch flink run`, the parity tests): PyFlink 2.3 pins
# pyarrow and pandas versions ecomwatch cannot share, so it gets a venv of its own (~850 MB),
# created once and kept while flink-requirements.txt is unchanged.
FLINK_VENV := .venv-flink
FLINK_STAMP := $(FLINK_VENV)/.installed
flink: $(FLINK_STAMP)

$(FLINK_STAMP): flink-requirements.txt
	$(PYTHON) -m venv $(FLINK_VENV)
	$(FLINK_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r flink-requirements.txt
	touch $(FLINK_STAMP)

# Two workers (pytest-xdist), each running a test file at a time: the suite waits on servers,
# subprocesses and Flink about half of the time, which the other worker fills.
test: setup lint browser services crowdsec flink
	$(BIN)/pytest -n 2 --dist loadfile

bench: setup
	$(BIN)/ecomwatch bench ingest --events 10000000 --json

bench-month: setup  # 67.5 M events: about 17 GB of CSV in the temporary directory, 15 minutes
	$(BIN)/ecomwatch bench month --json

clean:
	rm -rf $(VENV) $(FLINK_VENV) demo-output .pytest_cache .ruff_cache .hypothesis services/node_modules .tools

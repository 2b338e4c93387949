# headwater: the two commands a new user runs are `make demo` and `make test`.
# Everything else here is a step they take for you.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
JARS_STAMP := infra/jars/.resolved
BROWSER_STAMP := $(VENV)/.browser
CHROMIUM := /usr/bin/chromium
POSTGRES_STAMP := $(VENV)/.postgres
JVM_ARCHIVE_STAMP := infra/jars/.jvm-archive
PYTEST_ARGS ?=

.PHONY: setup demo bench test test-unit lint jars jvm-archive browser postgres up down status clean

## setup: virtualenv with headwater and its pinned dependencies, the JVM jars, PostgreSQL,
## the Spark driver's class-data-sharing archive
setup: $(PY_STAMP) $(JARS_STAMP) $(POSTGRES_STAMP) $(JVM_ARCHIVE_STAMP)

$(PY_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null || \
	  { echo "headwater: Python 3.11 is needed as '$(PYTHON)': install it or run make PYTHON=/path/to/python3.11"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip 'uv>=0.13,<0.14'
	@# uv resolves and downloads in parallel: about 30 s on a fresh machine, where pip takes
	@# over three minutes; pip stays the fallback (same pins, same result, slower).
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[dev]' || \
	  { echo "headwater: uv could not install the dependencies (above); trying pip"; \
	    $(BIN)/python -m pip install -q -e '.[dev]'; }
	touch $@

## jars: Delta, the Spark Kafka connector, the Kafka broker, Kafka Connect and Debezium from
## Maven Central
jars: $(JARS_STAMP)

$(JARS_STAMP): infra/pom.xml infra/maven/spark/pom.xml infra/maven/kafka/pom.xml infra/maven/connect/pom.xml infra/maven/debezium/pom.xml infra/maven/localfs/pom.xml $(wildcard infra/maven/localfs/src/main/java/io/headwater/fs/*.java)
	@command -v java >/dev/null || { echo "headwater: Java was not found: install a JDK 17 (apt-get install openjdk-17-jdk-headless)"; exit 2; }
	@command -v mvn >/dev/null || { echo "headwater: Maven was not found: install it (apt-get install maven)"; exit 2; }
	rm -rf infra/jars
	mvn -q -B -f infra/pom.xml package
	touch $@

## jvm-archive: the classes a Spark driver loads, recorded once so every later driver maps
## them instead of loading them from jars (a cold start takes about half as long). Optional:
## without it Spark starts as before.
jvm-archive: $(JVM_ARCHIVE_STAMP)

$(JVM_ARCHIVE_STAMP): $(PY_STAMP) $(JARS_STAMP)
	@echo "headwater: recording the Spark driver's class-data-sharing archive (one to two minutes)"
	@$(BIN)/headwater jvm-archive || echo "headwater: Spark will start without the archive (the reason is above)"
	touch $@

## browser: Debian's Chromium for the browser test of the Dagster UI (Playwright drives it;
## no browser download)
browser: $(BROWSER_STAMP)

$(BROWSER_STAMP): | $(PY_STAMP)
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "headwater: installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	  else \
	    echo "headwater: Chromium was not found at $(CHROMIUM): install it (as root: apt-get install --no-install-recommends chromium)"; exit 2; \
	  fi; \
	fi
	touch $@

## postgres: Debian's PostgreSQL server programs (initdb, pg_ctl) for the project's own
## cluster, the source of change data capture (headwater up runs it under .headwater/)
postgres: $(POSTGRES_STAMP)

$(POSTGRES_STAMP): | $(PY_STAMP)
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "headwater: installing Debian's postgresql for the local source database"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; \
	  else \
	    echo "headwater: PostgreSQL's server programs were not found: install them (as root: apt-get install --no-install-recommends postgresql)"; exit 2; \
	  fi; \
	fi
	touch $@

## demo: set up, start the broker, the generator and the streams in the foreground (Ctrl-C stops all)
demo: setup
	$(BIN)/headwater demo

## bench: the benchmark (bench/README.md): limit, baseline and headwater, results in bench/results/
bench: setup
	$(BIN)/headwater bench $(BENCH_ARGS)

## test: set up, lint, type-check and run every test tier
test: setup lint browser
	$(BIN)/pytest $(PYTEST_ARGS)

## test-unit: the fast tier (seconds)
test-unit: setup
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check streaming devstack orchestration tests bench
	$(BIN)/mypy

up down status: setup
	$(BIN)/headwater $@

## clean: stop the broker and delete all local state (.headwater/), keeping the venv and jars
clean:
	-[ -x $(BIN)/headwater ] && $(BIN)/headwater down
	rm -rf .headwater

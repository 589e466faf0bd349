# tradelake: two commands on a fresh machine — `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo up test lint broker dagster notebooks chromium clean
PORT   ?= 3000
NOTEBOOK_PORT ?= 8888
NOTEBOOK_STAMP := $(VENV)/.notebooks-installed

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tradelake demo

# The live local lakehouse: broker + streaming simulator + tradelake run + Dagster UI (Ctrl-C stops all).
up: $(STAMP)
	$(BIN)/tradelake up --ui-port $(PORT)

# Debian's Chromium for the Dagster UI test (a registry package: no browser download).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: $(STAMP) lint chromium
	$(BIN)/tradelake contracts check
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check pipelines tests benchmarks

broker: $(STAMP)
	$(BIN)/tradelake broker

dagster: $(STAMP)
	$(BIN)/tradelake ui --port $(PORT)

# JupyterLab (the `notebooks` extra, not in `make demo`: CI does not need it) on notebooks/,
# reading the demo's warehouse; the demo is run first when there is no warehouse yet.
$(NOTEBOOK_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,notebooks]'
	touch $(NOTEBOOK_STAMP)

notebooks: $(NOTEBOOK_STAMP)
	@test -f "$${TRADELAKE_HOME:-.tradelake}/warehouse.duckdb" || $(BIN)/tradelake demo
	$(BIN)/jupyter lab --notebook-dir=notebooks --port $(NOTEBOOK_PORT) $(if $(filter 0,$(shell id -u)),--allow-root)

clean:
	rm -rf .tradelake .dagster_home

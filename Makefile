# tradelake: two commands on a fresh machine — `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo up test lint broker dagster chromium clean
PORT   ?= 3000

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

clean:
	rm -rf .tradelake .dagster_home

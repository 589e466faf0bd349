# tradelake: two commands on a fresh machine — `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint broker clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tradelake demo

test: $(STAMP) lint
	$(BIN)/tradelake contracts check
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check pipelines tests benchmarks

broker: $(STAMP)
	$(BIN)/tradelake broker

clean:
	rm -rf .tradelake .dagster_home

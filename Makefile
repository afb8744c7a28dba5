# The two commands of the README's quick start. Both build .venv from nothing on a machine with Python 3.11.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# torch first and pinned: a bare "torch" requirement pulls the multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: demo test setup setup-test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q $(TORCH) -e '.[dev,lmeval,postgres,server]'
	touch $@

setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test

demo: setup
	$(BIN)/loopgate demo --workspace demo-workspace

test: setup-test
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: setup-test
	$(BIN)/ruff check loopgate tests bench
	$(BIN)/mypy loopgate

clean:
	rm -rf $(VENV) demo-workspace .pytest_cache

# The two commands of the README's quick start. Both build .venv from nothing on a machine with Python 3.11.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# pinned in every install: a bare "torch" requirement pulls the multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: demo test setup setup-test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)

# one pip run with the torch pin in it, so nothing in the resolution can pull a CUDA build
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH) -e '.[dev,lmeval,postgres,server,ray,tune,judge]'
	touch $@

setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test
	@# the dashboard's browser test drives Debian's headless Chromium (root on these machines and in CI)
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || (apt-get update && apt-get install -y chromium chromium-driver)
	@# the store, ledger and concurrency tests start their own PostgreSQL server (tests/pg.py): Debian's package
	@# (the package also creates the unprivileged 'postgres' user the tests run the server as)
	@if { ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } \
	    || ! id postgres >/dev/null 2>&1; then \
	  echo "installing PostgreSQL for the tests (apt-get install postgresql)"; \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; } || { \
	    echo "make test needs PostgreSQL's initdb and pg_ctl and could not install them: install Debian's" \
	         "postgresql package (apt-get install postgresql) and run make test again"; exit 1; }; \
	fi

# the demo is the only thing running: two torch threads train ~25 % faster than one on an idle 2-core
# machine (on a busy one, one thread is faster — hence the default of 1 everywhere else)
demo: setup
	LOOPGATE_THREADS=$${LOOPGATE_THREADS:-2} $(BIN)/loopgate demo --workspace demo-workspace

test: setup-test
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

# heavier measurements, not tests (figures go to docs/benchmarks.md)
bench: setup-test
	LOOPGATE_THREADS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python bench/eval_throughput.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/update_throughput.py

lint: setup-test
	$(BIN)/ruff check loopgate tests bench
	$(BIN)/mypy loopgate

clean:
	rm -rf $(VENV) demo-workspace .pytest_cache

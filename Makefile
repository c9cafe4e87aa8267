# maskset: every stage is a make target over one dataset folder, DATA (default: data).
# `make help` lists every target and variable. A target runs `maskset --make <target>`, which
# reads the make variables given on the command line from the environment (make exports them):
# no value ever passes through a shell, so a DATA path with quotes or backquotes is just a path.
SHELL      := /bin/bash
PYTHON     ?= python3.11
VENV       := .venv
PY         := $(VENV)/bin/python
MASKSET    := $(VENV)/bin/maskset
STAMP      := $(VENV)/.maskset-setup
export TF_CPP_MIN_LOG_LEVEL ?= 2

STAGES := sample scrape import dedupe restore takedown annotate prelabel validate relabel export split leakcheck train \
          train-classifier evaluate detect export-model weights report card package demo

.PHONY: help setup check-system test bench bench-setup clean-venv $(STAGES)

help:
	@$(if $(wildcard $(PY)),$(PY),$(PYTHON)) -m dataset.cli --make-help

# -- set-up -----------------------------------------------------------------------------------
# `make setup GPU=1` installs TensorFlow's CUDA build (same version) instead of the CPU one, and
# `GPU=0` goes back; the venv keeps its choice (.venv/.maskset-tensorflow) until told otherwise.
SETUP_FILES := requirements.txt requirements-nodeps.txt requirements-gpu.txt pyproject.toml scripts/setup.sh

setup:
	@if [ -n "$${GPU:-}" ] || [ ! -f $(STAMP) ] || [ -n "$$(find $(SETUP_FILES) -newer $(STAMP))" ]; then \
	  bash scripts/setup.sh "$(PYTHON)" "$(VENV)" "$${GPU:-}" && touch $(STAMP); fi

$(STAMP): $(SETUP_FILES)
	@bash scripts/setup.sh "$(PYTHON)" "$(VENV)"
	@touch $(STAMP)

check-system: $(STAMP)
	@$(PY) scripts/check_system.py --devices

clean-venv:
	rm -rf $(VENV)

# -- every stage, and the demo: the maskset command ---------------------------------------------
$(STAGES): $(STAMP)
	@$(MASKSET) --make $@

# -- the tests, the benchmarks ----------------------------------------------------------------
test: $(STAMP)
	@$(PY) scripts/check_system.py --require test --install
	$(PY) -m pytest tests $(PYTEST_ARGS)

bench-setup: $(STAMP)
	@$(PY) -m pip install -q -r requirements-bench.txt
	@$(PY) -m pip install -q --no-deps -r requirements-bench-nodeps.txt

bench: bench-setup
	@missed=""; for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b $(BENCH_ARGS) || missed="$$missed $$b"; done; \
	  if [ -n "$$missed" ]; then echo "bench: target missed (or failed) in:$$missed"; exit 1; fi; \
	  echo "bench: every target met"

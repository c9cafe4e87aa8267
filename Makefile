# maskset: every stage is a make target over one dataset folder, DATA (default: data).
# Variables are passed to the stage only when set; `make help` lists them.
SHELL      := /bin/bash
PYTHON     ?= python3.11
VENV       := .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.maskset-setup
DATA       ?= data
export PYTHONPATH := $(CURDIR)
export TF_CPP_MIN_LOG_LEVEL ?= 2

# $(call opt,--flag,VALUE): the flag and its value, only when VALUE is set
opt  = $(if $(strip $(2)),$(1) "$(strip $(2))")
# $(call flag,--flag,VAR): the bare flag when VAR is 1/yes/true
flag = $(if $(filter 1 yes true,$(strip $(2))),$(1))

.PHONY: help setup check-system sample scrape import dedupe restore annotate prelabel validate \
        export split train evaluate detect weights report demo test bench bench-setup clean-venv

help:
	@echo "maskset: make setup | demo | test | bench"
	@echo "  stages (DATA=folder, default data):"
	@echo "  scrape QUERY= LIMIT= [ENGINE=requests|selenium BING_URL= FILTERS= MIN_SIDE= MARKET=en-US"
	@echo "         OPTOUT=respect|ignore USER_AGENT=]"
	@echo "  import SRC=folder [IMAGES= ANNOTATIONS=]   dedupe [THRESHOLD= DHASH_THRESHOLD= DRY_RUN=1]   restore"
	@echo "  annotate [ALL=1 PRELABEL=]   prelabel [RUN= SCORE= CLASS=]   validate [FIX=1 INCLUDE_DRAFTS=1]"
	@echo "  export [SKIP_DIFFICULT=1 INCLUDE_DRAFTS=1 RESIZE=800x1333]   split [VAL=0.2 SEED=0 THRESHOLD= DHASH_THRESHOLD=]"
	@echo "  train [EPOCHS STEPS BATCH BACKBONE WEIGHTS LR IMAGE_MIN_SIDE IMAGE_MAX_SIDE"
	@echo "         FREEZE_BACKBONE RANDOM_TRANSFORM RESUME TRAIN_SEED CONFIG RUNS]   weights"
	@echo "  evaluate [RUN= IOU=]   detect [RUN=] IMAGE=|DIR=|VIDEO= [SCORE=]   report"

# -- set-up -----------------------------------------------------------------------------------
setup: $(STAMP)

$(STAMP): requirements.txt scripts/setup.sh
	@bash scripts/setup.sh "$(PYTHON)" "$(VENV)"
	@touch $(STAMP)

check-system: $(STAMP)
	@$(PY) scripts/check_system.py $(if $(REQUIRE),--require $(REQUIRE))

clean-venv:
	rm -rf $(VENV)

# -- stages -----------------------------------------------------------------------------------
sample: $(STAMP)
	$(PY) -m dataset.sample $(or $(OUT),sample) $(call opt,--count,$(COUNT)) $(call opt,--seed,$(SEED))

scrape: $(STAMP)
	$(PY) -m scraping.cli --data "$(DATA)" $(call opt,--query,$(QUERY)) $(call opt,--limit,$(LIMIT)) \
	  $(call opt,--engine,$(ENGINE)) $(call opt,--bing-url,$(BING_URL)) \
	  $(call opt,--filters,$(FILTERS)) $(call opt,--min-side,$(MIN_SIDE)) $(call opt,--market,$(MARKET)) \
	  $(call opt,--optout,$(OPTOUT)) $(call opt,--user-agent,$(USER_AGENT))

import: $(STAMP)
	$(PY) -m dataset.importer --data "$(DATA)" $(call opt,--src,$(SRC)) \
	  $(call opt,--images,$(IMAGES)) $(call opt,--annotations,$(ANNOTATIONS))

dedupe: $(STAMP)
	$(PY) -m dataset.dedupe --data "$(DATA)" $(call opt,--threshold,$(THRESHOLD)) \
	  $(call opt,--dhash-threshold,$(DHASH_THRESHOLD)) $(call flag,--dry-run,$(DRY_RUN))

restore: $(STAMP)
	$(PY) -m dataset.dedupe --data "$(DATA)" --restore

annotate: $(STAMP)
	$(PY) -m annotation.annotate --data "$(DATA)" $(call flag,--all,$(ALL)) $(call opt,--prelabel,$(PRELABEL))

prelabel: $(STAMP)
	$(PY) -m annotation.prelabel --data "$(DATA)" $(call opt,--run,$(RUN)) $(call opt,--score,$(SCORE)) \
	  $(call opt,--runs,$(RUNS)) $(call opt,--class,$(CLASS))

validate: $(STAMP)
	$(PY) -m dataset.validate --data "$(DATA)" $(call flag,--fix,$(FIX)) \
	  $(call flag,--include-drafts,$(INCLUDE_DRAFTS))

export: $(STAMP)
	$(PY) -m dataset.export --data "$(DATA)" $(call flag,--skip-difficult,$(SKIP_DIFFICULT)) \
	  $(call flag,--include-drafts,$(INCLUDE_DRAFTS)) $(call opt,--resize,$(RESIZE))

split: $(STAMP)
	$(PY) -m dataset.split --data "$(DATA)" $(call opt,--val,$(VAL)) $(call opt,--seed,$(SEED)) \
	  $(call opt,--threshold,$(THRESHOLD)) $(call opt,--dhash-threshold,$(DHASH_THRESHOLD))

train: $(STAMP)
	$(PY) -m training.train --data "$(DATA)" $(call opt,--epochs,$(EPOCHS)) $(call opt,--steps,$(STEPS)) \
	  $(call opt,--batch,$(BATCH)) $(call opt,--backbone,$(BACKBONE)) $(call opt,--weights,$(WEIGHTS)) \
	  $(call opt,--lr,$(LR)) $(call opt,--image-min-side,$(IMAGE_MIN_SIDE)) \
	  $(call opt,--image-max-side,$(IMAGE_MAX_SIDE)) $(call opt,--freeze-backbone,$(FREEZE_BACKBONE)) \
	  $(call opt,--random-transform,$(RANDOM_TRANSFORM)) $(call opt,--resume,$(RESUME)) \
	  $(call opt,--runs,$(RUNS)) $(call opt,--seed,$(TRAIN_SEED)) $(call opt,--config,$(CONFIG))

evaluate: $(STAMP)
	$(PY) -m training.evaluate --data "$(DATA)" $(call opt,--run,$(RUN)) $(call opt,--score,$(SCORE)) \
	  $(call opt,--runs,$(RUNS)) $(call opt,--iou,$(IOU))

detect: $(STAMP)
	$(PY) -m training.detect --data "$(DATA)" $(call opt,--run,$(RUN)) $(call opt,--image,$(IMAGE)) \
	  $(call opt,--dir,$(DIR)) $(call opt,--video,$(VIDEO)) $(call opt,--score,$(SCORE)) \
	  $(call opt,--runs,$(RUNS))

weights: $(STAMP)
	$(PY) -m training.weights $(call opt,--url,$(WEIGHTS_URL)) $(call opt,--cache,$(WEIGHTS_CACHE))

report: $(STAMP)
	$(PY) -m dataset.report --data "$(DATA)" $(call opt,--runs,$(RUNS))

# -- the main job, the tests, the benchmarks --------------------------------------------------
demo: $(STAMP)
	$(PY) demo.py $(call opt,--data,$(DEMO_DATA)) $(call flag,--quick,$(QUICK))

test: $(STAMP)
	@$(PY) scripts/check_system.py --require test
	$(PY) -m pytest tests $(PYTEST_ARGS)

bench-setup: $(STAMP)
	@$(PY) -m pip install -q -r requirements-bench.txt
	@$(PY) -m pip install -q --no-deps -r requirements-bench-nodeps.txt

bench: bench-setup
	@missed=""; for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b $(BENCH_ARGS) || missed="$$missed $$b"; done; \
	  if [ -n "$$missed" ]; then echo "bench: target missed (or failed) in:$$missed"; exit 1; fi; \
	  echo "bench: every target met"

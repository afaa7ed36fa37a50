# yfbench: every target builds the local .venv from pyproject.toml on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SCALE ?= mini
# Seeds of the reproduction grids: empty = the experiment's own (the paper's 3); e.g. SEEDS=1.
SEEDS ?=
# Offline copies of the real datasets sit beside the repository; override to use your own.
export YFBENCH_DATA_DIR ?= $(abspath ../shared/data)
export WANDB_MODE ?= offline

.PHONY: venv demo test test-all lint figures bench reproduce-all \
        reproduce-cifar reproduce-cifar100 reproduce-ptb reproduce-tinyshakespeare reproduce-wsj clean

venv: $(VENV)/.installed

# PIP_FIND_LINKS is cleared so pip takes torch from the package index (the CUDA build,
# which also runs on CPU) rather than any local CPU-only wheel directory.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	PIP_FIND_LINKS= $(VENV)/bin/pip install --quiet --upgrade pip
	PIP_FIND_LINKS= $(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

demo: venv
	$(PY) scripts/demo.py

test: venv
	$(PY) -m pytest -q

test-all: venv
	$(PY) -m pytest -q -m ''

lint: venv
	$(VENV)/bin/ruff check yfbench tests scripts
	$(VENV)/bin/ruff format --check yfbench tests scripts

bench: venv
	$(PY) scripts/bench_optimizer.py --threads 1 --repeats 30 --out results/bench_optimizer_cpu.md

figures: venv
	$(PY) -m yfbench.analysis synthetic --out results/synthetic
	$(PY) -m yfbench.analysis report --runs results/runs --out results/README.md

# reproduce-<name>: run the task's speedup grid at $(SCALE), then the analysis.
define reproduce
reproduce-$(1): venv
	$(PY) -m yfbench -m +experiment=$(2)_speedup scale=$(SCALE) trainer.checkpoint_every=$(3) \
		$(if $(SEEDS),seed=$(SEEDS)) \
		hydra.sweep.dir=results/runs/$(4)/$(SCALE)
	$(PY) -m yfbench.analysis speedup results/runs/$(4)/$(SCALE) --baseline adam \
		--out results/$(4)/$(SCALE)/speedup.csv
	$(PY) -m yfbench.analysis plot results/runs/$(4)/$(SCALE) --out results/$(4)/$(SCALE)
endef
$(eval $(call reproduce,cifar,cifar10,500,cifar10_resnet))
$(eval $(call reproduce,cifar100,cifar100,500,cifar100_resnet))
$(eval $(call reproduce,ptb,ptb,500,ptb_lstm))
$(eval $(call reproduce,tinyshakespeare,tinyshakespeare,500,tinyshakespeare_lstm))
$(eval $(call reproduce,wsj,wsj,500,wsj_parse_lstm))

reproduce-all: reproduce-cifar reproduce-cifar100 reproduce-ptb reproduce-tinyshakespeare reproduce-wsj

clean:
	rm -rf runs multirun outputs .cache .pytest_cache

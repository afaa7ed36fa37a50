# yfbench: every target builds the local .venv from pyproject.toml on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SCALE ?= cpu
# Reproduction grids. GRID=two-stage: every grid point with seed 1, then the tuned point of
# each optimizer with SEEDS; GRID=full: every grid point with the experiment's seeds (1,2,3).
GRID ?= two-stage
SEEDS ?= 2,3
# Runs side by side (Hydra's joblib launcher), each with THREADS torch threads: by default
# the machine's cores shared among the jobs, so jobs x threads <= cores.
JOBS ?= 1
THREADS ?= $(shell n=$$(nproc); t=$$((n / $(JOBS))); echo $$(( t > 0 ? t : 1 )))
LAUNCHER = $(if $(filter-out 1,$(JOBS)),hydra/launcher=joblib hydra.launcher.n_jobs=$(JOBS))
# Offline copies of the real datasets sit beside the repository; override to use your own.
export YFBENCH_DATA_DIR ?= $(abspath ../shared/data)
export WANDB_MODE ?= offline

.PHONY: venv demo test test-all lint figures bench bench-training reproduce-all \
        reproduce-cifar reproduce-cifar100 reproduce-ptb reproduce-tinyshakespeare reproduce-wsj clean \
        peers-tinyshakespeare peers-ptb peers-cifar10 peers-overhead leaderboard

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
	$(PY) scripts/bench_optimizer.py --threads 1 --repeats 30 --cold-compile

bench-training: venv
	$(PY) scripts/bench_training.py --out results/perf/cpu.md

figures: venv
	$(PY) -m yfbench.analysis synthetic --out results/synthetic
	$(PY) -m yfbench.analysis report --runs results/runs --out results/README.md

# reproduce-<name>: the task's speedup grid at $(SCALE) into results/runs/<task>/<scale>,
# then its tables, speedup curve, seed check and plots under results/<task>/<scale>.
SWEEP = $(PY) -m yfbench -m experiment=$(1)_speedup scale=$(SCALE) \
	trainer.checkpoint_every=500 trainer.threads=$(THREADS) $(LAUNCHER) \
	hydra.sweep.dir=results/runs/$(2)/$(SCALE)
define reproduce
reproduce-$(1): venv
ifeq ($(GRID),full)
	$(call SWEEP,$(2),$(3))
else
	$(call SWEEP,$(2),$(3)) seed=1
	$(call SWEEP,$(2),$(3)) seed=$(SEEDS) \
		grid_point=$$$$($(PY) -m yfbench.analysis tuned results/runs/$(3)/$(SCALE))
endif
	$(PY) scripts/compress_runs.py results/runs/$(3)/$(SCALE)
	$(PY) -m yfbench.analysis speedup results/runs/$(3)/$(SCALE) --baseline adam \
		--out results/$(3)/$(SCALE)/speedup.csv
	$(PY) -m yfbench.analysis seeds results/runs/$(3)/$(SCALE) \
		--out results/$(3)/$(SCALE)/seeds.csv
	$(PY) -m yfbench.analysis plot results/runs/$(3)/$(SCALE) --out results/$(3)/$(SCALE)
endef
$(eval $(call reproduce,cifar,cifar10,cifar10_resnet))
$(eval $(call reproduce,cifar100,cifar100,cifar100_resnet))
$(eval $(call reproduce,ptb,ptb,ptb_lstm))
$(eval $(call reproduce,tinyshakespeare,tinyshakespeare,tinyshakespeare_lstm))
$(eval $(call reproduce,wsj,wsj,wsj_parse_lstm))

reproduce-all: reproduce-cifar reproduce-cifar100 reproduce-ptb reproduce-tinyshakespeare reproduce-wsj

# peers-<name>: YellowFin and its peers (conf/experiment/peers_<name>.yaml) at $(SCALE) into
# results/runs/peers/<task>/<scale>: every grid point on the tuning seed 1, then each
# optimizer's tuned point on PEER_SEEDS (never the tuning seed). `make leaderboard` reads them.
PEER_SEEDS ?= 2,3,4
PEERS_SWEEP = $(PY) -m yfbench -m experiment=peers_$(1) scale=$(SCALE) \
	trainer.checkpoint_every=500 trainer.threads=$(THREADS) $(LAUNCHER) \
	hydra.sweep.dir=results/runs/peers/$(2)/$(SCALE)
define peers
peers-$(1): venv
	$(call PEERS_SWEEP,$(1),$(2)) seed=1
	$(call PEERS_SWEEP,$(1),$(2)) seed=$(PEER_SEEDS) \
		grid_point=$$$$($(PY) -m yfbench.analysis tuned results/runs/peers/$(2)/$(SCALE))
	$(PY) scripts/compress_runs.py results/runs/peers/$(2)/$(SCALE)
endef
$(eval $(call peers,tinyshakespeare,tinyshakespeare_lstm))
$(eval $(call peers,ptb,ptb_lstm))
$(eval $(call peers,cifar10,cifar10_resnet))

# Optimizer-state bytes per parameter and host syncs per step, measured per task.
peers-overhead: venv
	$(PY) scripts/measure_peers.py --out results/peers/overhead.json

leaderboard: venv
	$(PY) -m yfbench.analysis leaderboard results/runs/peers \
		--overhead results/peers/overhead.json --out results/leaderboard.md

clean:
	rm -rf runs multirun outputs .cache .pytest_cache

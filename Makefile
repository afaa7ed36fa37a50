# yfbench: every target builds the local .venv from pyproject.toml on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SCALE ?= cpu
# Reproduction grids. GRID=two-stage: every grid point with seed 1, then the tuned point of
# each optimizer with SEEDS (three evaluation seeds, none the tuning seed); GRID=full: every
# grid point with the experiment's seeds (1,2,3).
GRID ?= two-stage
SEEDS ?= 2,3,4
# Evaluation seeds of the paper's other claims (make claims): each experiment tunes its
# baseline on seed 1 and runs the tuned point, and every method compared with it, on these;
# its tables report only them (yfbench/analysis/protocol.py), three so that a paired
# difference has an interval. The reproductions' evaluation seeds unless set.
CLAIM_SEEDS ?= $(SEEDS)
# Runs side by side (Hydra's joblib launcher), each with THREADS torch threads: by default
# the machine's cores shared among the jobs, so jobs x threads <= cores.
JOBS ?= 1
# Values that land in recipes are checked first: digits (and commas for SEEDS) only.
comma := ,
strip_digits = $(subst 0,,$(subst 1,,$(subst 2,,$(subst 3,,$(subst 4,,$(subst 5,,$(subst 6,,$(subst 7,,$(subst 8,,$(subst 9,,$(1)))))))))))
digits_only = $(and $(filter 1,$(words $(1))),$(if $(subst $(comma),,$(call strip_digits,$(1))),,ok))
is_count = $(and $(call digits_only,$(1)),$(if $(findstring $(comma),$(1)),,ok),$(filter-out 0,$(1)),ok)
ifneq ($(call is_count,$(JOBS)),ok)
$(error JOBS must be a positive integer (runs side by side), got '$(JOBS)')
endif
ifneq ($(call digits_only,$(SEEDS)),ok)
$(error SEEDS must be comma-separated seeds like 2,3, got '$(SEEDS)')
endif
ifneq ($(call digits_only,$(CLAIM_SEEDS)),ok)
$(error CLAIM_SEEDS must be comma-separated seeds like 2,3,4, got '$(CLAIM_SEEDS)')
endif
THREADS ?= $(shell n=$$(nproc); t=$$((n / $(JOBS))); echo $$(( t > 0 ? t : 1 )))
ifneq ($(call is_count,$(THREADS)),ok)
$(error THREADS must be a positive integer, got '$(THREADS)')
endif
LAUNCHER = $(if $(filter-out 1,$(JOBS)),hydra/launcher=joblib hydra.launcher.n_jobs=$(JOBS))
# Offline copies of the real datasets sit beside the repository; override to use your own.
export YFBENCH_DATA_DIR ?= $(abspath ../shared/data)
export WANDB_MODE ?= offline

.PHONY: venv demo test test-all lint figures bench bench-training reproduce-all \
        reproduce-cifar reproduce-cifar100 reproduce-ptb reproduce-tinyshakespeare reproduce-wsj clean \
        claims asynchrony lr-robustness momentum-ablation clipping \
        peers-tinyshakespeare peers-ptb peers-cifar10 \
        peers-bracket-tinyshakespeare peers-bracket-ptb peers-bracket-cifar10 peers-overhead peers-speed leaderboard

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
	$(PY) -m yfbench.analysis report --runs results/runs --out results/README.md --readme README.md

# reproduce-<name>: the task's speedup grid at $(SCALE) into results/runs/<task>/<scale>,
# then its tables, speedup curve, seed check and plots under results/<task>/<scale>.
# Subnormals are flushed where the committed grid did (FLUSH_DENORMAL: paper scale yes, the
# cpu grids no), so a relaunch continues the committed runs instead of starting a new setting.
FLUSH_DENORMAL ?= $(if $(filter paper,$(SCALE)),true,false)
SWEEP = $(PY) -m yfbench -m experiment=$(1)_speedup scale=$(SCALE) \
	trainer.checkpoint_every=500 trainer.threads=$(THREADS) \
	trainer.flush_denormal=$(FLUSH_DENORMAL) $(LAUNCHER) hydra.sweep.dir=results/runs/$(2)/$(SCALE)
define reproduce
reproduce-$(1): venv
ifeq ($(GRID),full)
	$(call SWEEP,$(2),$(3))
else
	$(call SWEEP,$(2),$(3)) seed=1
	points=$$$$($(PY) -m yfbench.analysis tuned results/runs/$(3)/$(SCALE)) && [ -n "$$$$points" ] \
		|| { echo "reproduce-$(1): no tuned grid point under results/runs/$(3)/$(SCALE) (see the \
		error above); the second stage needs one" >&2; exit 1; }; \
		$(call SWEEP,$(2),$(3)) 'seed=$(SEEDS)' "grid_point=$$$$points"
endif
	$(PY) scripts/compress_runs.py results/runs/$(3)/$(SCALE)
	$(PY) -m yfbench.analysis speedup results/runs/$(3)/$(SCALE) --baseline adam \
		--out results/$(3)/$(SCALE)/speedup.csv
	$(PY) -m yfbench.analysis seeds results/runs/$(3)/$(SCALE) \
		--out results/$(3)/$(SCALE)/seeds.csv
	$(PY) -m yfbench.analysis tables results/runs/$(3)/$(SCALE) --out results/$(3)/$(SCALE)
	$(PY) -m yfbench.analysis plot results/runs/$(3)/$(SCALE) --out results/$(3)/$(SCALE)
endef
$(eval $(call reproduce,cifar,cifar10,cifar10_resnet))
$(eval $(call reproduce,cifar100,cifar100,cifar100_resnet))
$(eval $(call reproduce,ptb,ptb,ptb_lstm))
$(eval $(call reproduce,tinyshakespeare,tinyshakespeare,tinyshakespeare_lstm))
$(eval $(call reproduce,wsj,wsj,wsj_parse_lstm))

reproduce-all: reproduce-cifar reproduce-cifar100 reproduce-ptb reproduce-tinyshakespeare reproduce-wsj

# ---------------------------------------------------------------- the paper's other claims
# Each experiment (conf/experiment/<experiment>_<name>.yaml) writes its runs under
# results/<experiment>/runs/<task>/<scale>, outside results/runs so that no speedup report
# takes an ablation or an extra lr for a grid point of its own, and its tables and figures
# under results/<experiment>/<task>/<scale>/. Baselines that are runs of a speedup grid
# (YellowFin, the tuned lrs) are read, or run, in results/runs/<task>/<scale> itself: the
# same config is the same run, so a relaunch skips it. The experiments' runs must share
# the baseline grid's trainer settings: the committed cpu grids ran without flushing
# subnormals, the paper-scale Tiny Shakespeare grid with (FLUSH_DENORMAL, above).
EXPERIMENT = $(PY) -m yfbench -m experiment=$(1) scale=$(SCALE) trainer.threads=$(THREADS) \
	trainer.checkpoint_every=500 trainer.flush_denormal=$(FLUSH_DENORMAL) $(LAUNCHER)
CLAIM_RUNS = results/$(1)/runs/$(2)/$(SCALE)
CLAIM_OUT = results/$(1)/$(2)/$(SCALE)

# asynchrony-<name>: asynchronous Adam grid, open- and closed-loop YellowFin on the tuning
# seed 1, then the tuned points on CLAIM_SEEDS; synchronous YellowFin (in the speedup grid's
# directory with that grid's seeds 1,SEEDS, the same runs; or $(3) for a task without one,
# with 1,CLAIM_SEEDS: $(4) = own), then the momentum-tracking and speedup tables and figures.
define asynchrony
asynchrony-$(1): venv
	$(call EXPERIMENT,asynchrony_$(1)) seed=1 hydra.sweep.dir=$(call CLAIM_RUNS,asynchrony,$(2))
	points=$$$$($(PY) -m yfbench.analysis tuned $$(addprefix $(call CLAIM_RUNS,asynchrony,$(2))/,adam yellowfin_open_loop yellowfin_closed_loop)) \
		&& [ -n "$$$$points" ] && $(call EXPERIMENT,asynchrony_$(1)) seed=$(CLAIM_SEEDS) \
		hydra.sweep.dir=$(call CLAIM_RUNS,asynchrony,$(2)) "grid_point=$$$$points"
	$(call EXPERIMENT,asynchrony_$(1)) seed=1,$(if $(4),$(CLAIM_SEEDS),$(SEEDS)) grid_point=yellowfin \
		trainer.staleness=0 hydra.sweep.dir=$(3)
	$(PY) scripts/compress_runs.py $(call CLAIM_RUNS,asynchrony,$(2)) $(3)
	$(PY) -m yfbench.analysis.asynchrony $(call CLAIM_RUNS,asynchrony,$(2)) $(3)/yellowfin \
		--out $(call CLAIM_OUT,asynchrony,$(2))
endef
$(eval $(call asynchrony,noisy_quadratic,noisy_quadratic,results/asynchrony/runs/noisy_quadratic/$(SCALE)/sync,own))
$(eval $(call asynchrony,cifar10,cifar10_resnet,results/runs/cifar10_resnet/$(SCALE)))
$(eval $(call asynchrony,tinyshakespeare,tinyshakespeare_lstm,results/runs/tinyshakespeare_lstm/$(SCALE)))
# The paper's own setting: make asynchrony-cifar100 SCALE=paper, on a GPU (CIFAR-100 downloads).
$(eval $(call asynchrony,cifar100,cifar100_resnet,results/runs/cifar100_resnet/$(SCALE)))
asynchrony: asynchrony-noisy_quadratic asynchrony-cifar10 asynchrony-tinyshakespeare

# lr-robustness-<name> (cpu scale): the points the speedup grid lacks and the grid's points
# that lack a seed (one sweep per set of lacking seeds), all on CLAIM_SEEDS (the grid's seed 1 chose the 1x lrs and
# is never reported), then loss and validation metric vs lr multiplier.
define lr_robustness
lr-robustness-$(1): venv
	$(call EXPERIMENT,lr_robustness_$(1)) seed=$(CLAIM_SEEDS) hydra.sweep.dir=$(call CLAIM_RUNS,lr_robustness,$(2))
	sweeps=$$$$($(PY) -m yfbench.analysis.lr_robustness missing results/runs/$(2)/$(SCALE) \
		--seeds $(CLAIM_SEEDS)) || exit 1; \
	echo "$$$$sweeps" | while read -r seeds points; do [ -z "$$$$points" ] || \
		$(call EXPERIMENT,lr_robustness_$(1)) seed=$$$$seeds hydra.sweep.dir=$(call CLAIM_RUNS,lr_robustness,$(2)) \
			"grid_point=$$$$points" < /dev/null || exit 1; \
	done
	$(PY) scripts/compress_runs.py $(call CLAIM_RUNS,lr_robustness,$(2))
	$(PY) -m yfbench.analysis.lr_robustness $(call CLAIM_RUNS,lr_robustness,$(2)) \
		--tuned-from results/runs/$(2)/$(SCALE) --out $(call CLAIM_OUT,lr_robustness,$(2))
endef
$(eval $(call lr_robustness,tinyshakespeare,tinyshakespeare_lstm))
$(eval $(call lr_robustness,ptb,ptb_lstm))
lr-robustness: lr-robustness-tinyshakespeare lr-robustness-ptb

# momentum-ablation-<name>: rescaled SGD and fixed mu = 0, 0.9, seeds 1-3, against the
# speedup grid's YellowFin (run there if missing); SCALE=paper for Tiny Shakespeare.
define momentum_ablation
momentum-ablation-$(1): venv
	$(call EXPERIMENT,momentum_ablation_$(1)) hydra.sweep.dir=$(call CLAIM_RUNS,momentum_ablation,$(2))
	$(call EXPERIMENT,$(1)_speedup) grid_point=yellowfin seed=1,2,3 \
		hydra.sweep.dir=results/runs/$(2)/$(SCALE)
	$(PY) scripts/compress_runs.py $(call CLAIM_RUNS,momentum_ablation,$(2)) results/runs/$(2)/$(SCALE)
	$(PY) -m yfbench.analysis.momentum_ablation $(call CLAIM_RUNS,momentum_ablation,$(2)) \
		results/runs/$(2)/$(SCALE)/yellowfin --out $(call CLAIM_OUT,momentum_ablation,$(2))
endef
$(eval $(call momentum_ablation,cifar10,cifar10_resnet))
$(eval $(call momentum_ablation,ptb,ptb_lstm))
$(eval $(call momentum_ablation,tinyshakespeare,tinyshakespeare_lstm))
$(eval $(call momentum_ablation,wsj,wsj_parse_lstm))
momentum-ablation: momentum-ablation-cifar10 momentum-ablation-ptb momentum-ablation-tinyshakespeare \
	momentum-ablation-wsj

# clipping: momentum SGD over (lr, clip) on the tuning seed 1, then its hand-tuned point on
# CLAIM_SEEDS; YellowFin with and without its adaptive clip (no global clip), seeds 1 and
# CLAIM_SEEDS. The table reports CLAIM_SEEDS only.
clipping: venv
	$(call EXPERIMENT,clipping_pixel_lstm) seed=1 hydra.sweep.dir=$(call CLAIM_RUNS,clipping,pixel_lstm)
	tuned=$$($(PY) -m yfbench.analysis.adaptive_clipping tuned $(call CLAIM_RUNS,clipping,pixel_lstm)) \
		&& [ -n "$$tuned" ] && $(call EXPERIMENT,clipping_pixel_lstm) seed=$(CLAIM_SEEDS) \
		hydra.sweep.dir=$(call CLAIM_RUNS,clipping,pixel_lstm) $$tuned
	$(call EXPERIMENT,clipping_pixel_lstm) seed=1,$(CLAIM_SEEDS) hydra.sweep.dir=$(call CLAIM_RUNS,clipping,pixel_lstm) \
		grid_point=yellowfin,yellowfin_no_adaptive_clip task.grad_clip_norm=null
	$(PY) scripts/compress_runs.py $(call CLAIM_RUNS,clipping,pixel_lstm)
	$(PY) -m yfbench.analysis.adaptive_clipping $(call CLAIM_RUNS,clipping,pixel_lstm) \
		--out $(call CLAIM_OUT,clipping,pixel_lstm)

claims: asynchrony lr-robustness momentum-ablation clipping

# peers-<name>: YellowFin and its peers (conf/experiment/peers_<name>.yaml) at $(SCALE) into
# results/peers/runs/<task>/<scale> (outside results/runs, as the claims' runs): every grid point on the tuning seed 1, then each
# optimizer's tuned point on PEER_SEEDS (never the tuning seed). `make leaderboard` reads them.
# The peers' grids run their own YellowFin, Adam and momentum SGD, so they need not match the
# speedup grids' setting: they flush subnormals, which keeps a grid point whose values sink
# into them from running ~10x slower (results/perf/denormal_cpu.md).
PEER_SEEDS ?= $(SEEDS)
PEERS_SWEEP = $(PY) -m yfbench -m experiment=peers_$(1) scale=$(SCALE) \
	trainer.checkpoint_every=500 trainer.threads=$(THREADS) trainer.flush_denormal=true \
	$(LAUNCHER) \
	hydra.sweep.dir=results/peers/$(or $(3),runs)/$(2)/$(SCALE)
define peers
peers-$(1): venv
	$(call PEERS_SWEEP,$(1),$(2)) seed=1
	$(call PEERS_SWEEP,$(1),$(2)) seed=$(PEER_SEEDS) \
		grid_point=$$$$($(PY) -m yfbench.analysis tuned results/peers/runs/$(2)/$(SCALE))
	$(PY) scripts/compress_runs.py results/peers/runs/$(2)/$(SCALE)
endef
# peers-bracket-<name>: lrs probed outside the grids beside the tuned ones (one beyond a grid's
# edge where the tuned lr is its largest or smallest; the half-decade lrs beside a tuned lr
# whose grid steps by a decade there), on the tuning seed, into
# results/peers/bracket_runs/<task>/<scale> (apart from the grid, so the choices and the equal
# budget stay), and where one ends lower by more than the seeds' spread, the same lr on the
# evaluation seeds; results/peers/bracket.md says what each did, for every task checked so far
# (a task with nothing to probe says so). Beyond an edge it goes on while a probe ends lower
# (one more lr out each round, as a grown grid would), until a round names nothing new. It
# runs peers-<name> first (finished runs skip), so that the probes are read off a whole grid.
define peers_bracket
peers-bracket-$(1): peers-$(1)
	tuning=results/peers/runs/$(2)/$(SCALE); probed=results/peers/bracket_runs/$(2)/$(SCALE); \
	seen=; while :; do \
		probes=$$$$($(PY) -m yfbench.analysis.bracket probes $$$$tuning $$$$probed) || exit 1; \
		[ "$$$$probes" = "$$$$seen" ] && break; \
		$(call PEERS_SWEEP,$(1),$(2),bracket_runs) seed=1 grid_point=$$$$probes || exit 1; \
		lower=$$$$($(PY) -m yfbench.analysis.bracket lower $$$$tuning $$$$probed) || exit 1; \
		[ -z "$$$$lower" ] || $(call PEERS_SWEEP,$(1),$(2),bracket_runs) seed=$(PEER_SEEDS) \
			grid_point=$$$$lower || exit 1; \
		seen=$$$$probes; \
	done
	[ ! -d results/peers/bracket_runs ] || $(PY) scripts/compress_runs.py results/peers/bracket_runs
	$(PY) -m yfbench.analysis.bracket $$$$({ echo results/peers/runs/$(2)/$(SCALE); \
		ls -d results/peers/bracket_runs/*/$(SCALE) 2>/dev/null | sed s,/bracket_runs/,/runs/,; } | sort -u) \
		--probe-runs results/peers/bracket_runs --out results/peers
endef
$(eval $(call peers,tinyshakespeare,tinyshakespeare_lstm))
$(eval $(call peers_bracket,tinyshakespeare,tinyshakespeare_lstm))
$(eval $(call peers,ptb,ptb_lstm))
$(eval $(call peers_bracket,ptb,ptb_lstm))
$(eval $(call peers,cifar10,cifar10_resnet))
$(eval $(call peers_bracket,cifar10,cifar10_resnet))

# Optimizer-state bytes per parameter and host syncs per step, measured per task.
peers-overhead: venv
	$(PY) scripts/measure_peers.py --out results/peers/overhead.json

# Every leaderboard optimizer's steps/s in one interleaved benchmark, on a quiet machine: the
# leaderboard's wall-clock seconds come from it, not from the grid's runs (which share cores).
PEERS_SPEED_STEPS ?= 100
peers-speed: venv
	$(PY) scripts/bench_training.py --variants peers --steps $(PEERS_SPEED_STEPS) --rounds 3 \
		--tasks tinyshakespeare_lstm ptb_lstm cifar10_resnet \
		--out results/peers/speed.md --json results/peers/speed.json

leaderboard: venv
	$(PY) -m yfbench.analysis leaderboard results/peers/runs \
		--overhead results/peers/overhead.json --speed results/peers/speed.json \
		--probe-runs results/peers/bracket_runs --out results/leaderboard.md

clean:
	rm -rf runs multirun outputs .cache .pytest_cache

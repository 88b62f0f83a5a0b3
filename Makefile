# Set-up is automatic: every target that runs Python first makes sure an environment exists.
#  - a .venv here wins (built from PyPI with the CPU build of torch: constraints/cpu.txt);
#  - else a system Python that already holds every core package is used as it is;
#  - else, without network, a system Python with the required packages is used as it is (the
#    GPU box: a missing optional package costs its backends, `env --check` names them); a venv
#    is never built offline;
#  - else .venv is created.
# Which packages are required or optional: harness/packages.py (stdlib only).
SHELL := /bin/bash
.DEFAULT_GOAL := help
SYS_PYTHON ?= python3
VENV := .venv
PACKAGES := PYTHONPATH=$(CURDIR) $(SYS_PYTHON) -m harness.packages

ifneq ($(wildcard $(VENV)/bin/python),)
  USE_VENV := yes
else ifeq ($(shell $(PACKAGES) --all >/dev/null 2>&1 && echo yes),yes)
  USE_VENV := no
else ifeq ($(shell $(PACKAGES) --required >/dev/null 2>&1 && ! $(PACKAGES) --network >/dev/null 2>&1 && echo yes),yes)
  USE_VENV := no
else
  USE_VENV := yes
endif

ifeq ($(USE_VENV),yes)
  PY := $(VENV)/bin/python
  SETUP_STAMP := $(VENV)/.installed
else
  PY := $(SYS_PYTHON)
  SETUP_STAMP :=
endif
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

SUITE ?=
RUN_ARGS ?=
PYTEST_ARGS ?=

.PHONY: help setup test test-all reproduce smoke report list env bench bench-compare gpu-session gpu-dry-run clean figures readme

help:
	@echo "make reproduce   set up, run the default suite (gpu-quick with a GPU, else cpu) into results/<id>/ with its report"
	@echo "make reproduce SUITE=paper   the paper's full protocol (GPU box)"
	@echo "make test        the everyday test suite (slow-marked tests left out; prints the 25 slowest)"
	@echo "make test-all    every test, slow ones included (what CI and the nightly run)"
	@echo "make smoke       every problem x backend x mode once at tiny N"
	@echo "make list / env  what is available here / the environment fingerprint"
	@echo "make bench       pytest-benchmark suite; make bench-compare checks it against a baseline"
	@echo "make gpu-session one lent GPU session (tools/gpu_session.sh); make gpu-dry-run: the same on a CPU"
	@echo "make figures     headline figures of the README's reference run into figures/"
	@echo "make readme      regenerate README.md's results block from the runs its first line names"
	@echo "make readme RUN='results/<cpu> --companion results/<feature> ...'   ... from these runs instead"

$(VENV)/.installed: pyproject.toml constraints/cpu.txt
	@$(PACKAGES) --network || { echo "error: no network to build $(VENV), and $(SYS_PYTHON) lacks required packages (python -m harness.packages)"; exit 1; }
	$(SYS_PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c constraints/cpu.txt -e '.[extras,cuda,test]'
	touch $@

setup: $(SETUP_STAMP)
	@$(PY) -m harness env --check && echo "environment ready: $(PY)"

# The everyday command leaves out tests marked `slow` (long property sweeps, real clusters, the
# whole-suite runs); `make test-all` runs everything, and CI runs that.
# (on the installed environment, not `setup`: its import check takes ~20 s, and a broken
# environment fails the tests anyway)
test: $(SETUP_STAMP)
	$(PY) -m pytest -m "not slow" --durations=25 $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest --durations=25 $(PYTEST_ARGS)

# A run writes only into its own results/<run_id>/ (results, figures, report: the tracked tree is
# left as it was) and prints that folder, then its report. The top-level figures/ and README.md's
# results block are drawn from the committed reference run by `make figures` / `make readme` only.
reproduce: setup
	@suite=$${SUITE:-$$($(PY) -m harness default-suite)}; \
	out=$$($(PY) -m harness run --suite $$suite --report $(RUN_ARGS)) || exit $$?; \
	echo "run folder: $$(echo "$$out" | head -n 1)"; \
	echo "report: $$(echo "$$out" | tail -n 1)"

smoke: setup
	$(PY) -m harness run --suite smoke $(RUN_ARGS)

list: setup
	$(PY) -m harness list

env: setup
	$(PY) -m harness env

bench: setup
	$(PY) -m pytest benchmarks --benchmark-enable --benchmark-only --benchmark-json=.benchmarks/latest.json -p no:cacheprovider

bench-compare: setup
	$(PY) -m harness bench-compare .benchmarks/latest.json benchmarks/baseline.json

# One lent GPU session (within 480 s, everything packed into $$OUT/gpu-run.tgz), and its dry run
# on a CPU (the same script: device cpu, N = 8; part of .ci/run).
gpu-session: setup
	bash tools/gpu_session.sh

gpu-dry-run: setup
	bash tools/gpu_session.sh --dry-run

figures: setup
	$(PY) -m harness figures $(RUN)

readme: setup
	$(PY) -m harness readme $(RUN)

clean:
	rm -rf .cache .pytest_cache .benchmarks results/_scratch

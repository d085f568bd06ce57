# tfcore: transformer internals in ten notebooks.
#   make lab     set up .venv, then open the course in JupyterLab
#   make test    set up .venv, then run every test and every notebook
# Other targets: setup, test-fast, exercises, notebooks, grade, browser-deps, sandbox-deps, clean.
# Setup options: GPU=auto|1|0, TORCH=..., TORCH_INDEX=... (see below and the README).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
# PyTorch, installed before the package so that `torch>=2.4` is already met.
TORCH  ?= torch==2.13.0
# GPU=auto: an NVIDIA GPU where `nvidia-smi -L` works. With a GPU (or GPU=1): PyPI's torch (the
# CUDA build) and the `gpu` extra (Triton); without (or GPU=0): neither.
GPU    ?= auto
HAVE_GPU := $(if $(filter auto,$(GPU)),$(shell nvidia-smi -L >/dev/null 2>&1 && echo 1),$(filter-out 0,$(GPU)))
# On Linux x86-64 without a GPU, PyPI's torch is the CUDA build (several GB): take the CPU build
# from PyTorch's CPU wheel index instead. It is an extra index, so pip's own sources (a mirror, a
# wheel folder) still count; offline, pip warns about it and goes on. Only torch itself is looked
# up there (--no-deps): the package install after it brings torch's dependencies from pip's usual
# sources. TORCH_INDEX= turns it off, TORCH_INDEX=URL picks another (e.g. .../whl/cu128).
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
LINUX_X86 := $(and $(filter Linux,$(shell uname -s)),$(filter x86_64,$(shell uname -m)))
TORCH_INDEX ?= $(if $(HAVE_GPU),,$(if $(LINUX_X86),$(TORCH_CPU_INDEX)))
comma  := ,
EXTRAS := test$(if $(HAVE_GPU),$(comma)gpu)
# The stamp records the options; setup runs again when they (or pyproject.toml) change.
SETUP_OPTIONS := $(TORCH)$(if $(TORCH_INDEX), from $(TORCH_INDEX)), .[$(EXTRAS)]
ifneq ($(shell cat $(STAMP) 2>/dev/null),$(SETUP_OPTIONS))
.PHONY: $(STAMP)
endif
# Extra arguments for `make lab`, e.g. LAB_ARGS="--no-browser --port 8890".
LAB_ARGS ?=
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

# Every test: the unit tests in tests/, and each code cell of each notebook under
# nbval (one kernel per notebook). --dist loadfile keeps a notebook's cells on one
# xdist worker; plain -n 2 breaks nbval.
NOTEBOOK_DIRS := notebooks/ solutions/ exercises/
PYTEST_ALL := $(PY) -m pytest tests/ $(NOTEBOOK_DIRS) -n 2 --dist loadfile \
	--nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: setup lab test test-fast exercises notebooks grade browser-deps sandbox-deps clean distclean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || { echo "== creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install "$(TORCH)"$(if $(TORCH_INDEX), --no-deps --extra-index-url "$(TORCH_INDEX)")
	$(PY) -m pip install -e ".[$(EXTRAS)]"
	@echo '$(SETUP_OPTIONS)' > $@

lab: setup
	@echo "== Commands for another terminal, from this folder: .venv/bin/python -m tfcore grade|progress|doctor"
	@echo "   (or run 'source .venv/bin/activate' there first, then plain python, jupyter, pytest)"
	$(BIN)/jupyter lab --ip=127.0.0.1 --LabApp.default_url=/lab/tree/notebooks \
		$(ROOT_FLAG) $(LAB_ARGS)

test: setup
	$(PYTEST_ALL)

test-fast: setup
	$(PY) -m pytest tests/ -n 2 --dist loadfile -m "not slow and not browser"

exercises: setup
	$(PY) -m tfcore exercises

# Re-run every lesson and solution notebook and save its outputs. Exercise
# notebooks stay without outputs (make exercises regenerates them).
NOTEBOOKS = $(wildcard notebooks/*.ipynb solutions/*.ipynb)
notebooks: setup
	@test -n "$(NOTEBOOKS)" || { echo "no notebooks in notebooks/ or solutions/"; exit 1; }
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.kernel_name=python3 --ExecutePreprocessor.timeout=1800 \
		$(NOTEBOOKS)

grade: setup
	$(PY) -m tfcore grade exercises/

# Debian's chromium for the browser tests (Playwright drives it; it never downloads
# a browser of its own).
browser-deps:
	@if [ -x /usr/bin/chromium ]; then \
		echo "chromium is installed: $$(/usr/bin/chromium --version 2>/dev/null)"; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "== installing Debian's chromium"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium fonts-liberation; \
	else \
		echo "chromium is missing: run 'sudo apt-get install chromium' (browser tests skip without it)"; \
		exit 1; \
	fi

# Debian's bubblewrap: `python -m tfcore grade` then runs each notebook with no network and a
# read-only view of the machine (without it: Linux namespaces via unshare, or less; the report says).
sandbox-deps:
	@if command -v bwrap >/dev/null 2>&1; then \
		echo "bubblewrap is installed: $$(bwrap --version)"; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "== installing Debian's bubblewrap"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends bubblewrap; \
	else \
		echo "bubblewrap is missing: run 'sudo apt-get install bubblewrap' (the grader falls back to unshare)"; \
		exit 1; \
	fi

clean:
	rm -rf .pytest_cache .hypothesis build dist *.egg-info tfcore.egg-info
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) -type d -print -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

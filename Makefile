# Two commands on a fresh machine: `make demo` (the whole job on built-in data) and
# `make test`. Both create .venv when it is missing and (re)install the project into it
# only when pyproject.toml changed since the last install.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# torch/torchvision pinned to the releases this project is tested with (pip takes them
# from the local wheel cache where there is one).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test venv clean

venv: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) cli.py demo

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf demo_out runs .pytest_cache

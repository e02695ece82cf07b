# Two commands on a fresh machine: `make demo` (the whole job on built-in data) and
# `make test`. Both create .venv when it is missing and (re)install the project into it
# only when pyproject.toml or constraints.txt changed since the last install. `make demo`
# installs what the tool needs; `make test` adds the test-only extras (pytest, onnx, ...).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

# constraints.txt pins every package to the release this project is tested with (torch
# 2.14.1 / torchvision 0.29.1 among them; pyproject.toml gives the ranges that work).
PIP_INSTALL := $(PY) -m pip install --quiet -c constraints.txt

.PHONY: demo test venv clean

venv: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PIP_INSTALL) -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(PIP_INSTALL) -e '.[dev]'
	touch $(DEV_STAMP)

demo: $(STAMP)
	$(VENV)/bin/vidstore demo

test: $(DEV_STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf demo_out runs .pytest_cache

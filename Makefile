# Two entry points: `make demo` runs the main job, `make test` runs the whole suite.
# Both create or reuse .venv through `make setup`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
NOWCAST := $(VENV)/bin/nowcast

.PHONY: setup demo test lint clean-venv

setup: $(VENV)/.installed

# Reinstall only when the project definition changes. torch==2.13.0 is pinned in pyproject.toml
# (a CPU wheel lies on disk here; an unpinned torch would pull a multi-GB CUDA build).
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[baselines,mnist,dev]'
	touch $@

demo: setup
	$(PY) -m model.demo

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check model workers service tests

clean-venv:
	rm -rf $(VENV)

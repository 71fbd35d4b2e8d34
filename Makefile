# Two entry points: `make demo` runs the main job, `make test` runs the whole suite.
# Both create or reuse .venv through `make setup`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
NOWCAST := $(VENV)/bin/nowcast

.PHONY: setup demo test test-serial test-parallel lint clean-venv

setup: $(VENV)/.installed
	@# Debian's docker-compose validates docker-compose.yml without an engine (tests/deploy).
	@command -v docker-compose >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get install -y -qq docker-compose >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null; }; }; } || \
	  echo "note: docker-compose not installed; tests/deploy skips its schema validation"

# Reinstall only when the project definition changes. torch==2.13.0 is pinned in pyproject.toml
# (a CPU wheel lies on disk here; an unpinned torch would pull a multi-GB CUDA build).
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[baselines,mnist,dev]'
	touch $@

demo: setup
	$(PY) -m stack.demo

# The suite on two pytest-xdist workers (TEST_WORKERS=1 for one, more on a bigger machine): a test
# file per worker at a time, so a module's fixtures (a Redis database, a Celery worker, a stack)
# start once; heavy files first (tests/conftest.py orders them; --no-loadscope-reorder keeps that
# order instead of xdist's most-tests-first). browser-deps installs Debian's chromium for the
# viewer's browser test (tests/viewer). Times, serial and parallel: docs/development.md.
TEST_WORKERS ?= 2
test: setup browser-deps
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The same, serially in one process (a failure's output uninterleaved, a debugger usable).
test-serial: setup browser-deps
	$(PY) -m pytest

# Kept for scripts that name it; `test` runs in parallel now.
test-parallel: test

lint: setup
	$(VENV)/bin/ruff check model cli stack benchmarks workers service tests

clean-venv:
	rm -rf $(VENV)

# The viewer's browser test (tests/viewer) drives Debian's chromium through Playwright; Playwright's
# own browser download is never used. `test` depends on it (it needs root or sudo for apt-get).
.PHONY: browser-deps
browser-deps: setup
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; }
	@$(PY) -c "import playwright" 2>/dev/null || PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(PY) -m pip install -q playwright

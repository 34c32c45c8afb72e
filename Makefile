# Set-up and the project's main jobs. `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PARAMS ?= params/demo.yaml

.PHONY: venv test demo lab lint gpu-check bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@# .rar archives (Columbia) need an extraction tool; install it where we may (root + apt).
	@command -v unar >/dev/null || command -v bsdtar >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    { apt-get install -y -qq unar >/dev/null 2>&1 || \
	      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq unar >/dev/null 2>&1; }; } ; } || \
	  echo "note: no unar/bsdtar found: .rar extraction will ask you to install unar"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[test]"
	touch $(STAMP)

# Two pytest workers (pytest-xdist): most of the suite's time is one busy core (notebook kernels,
# subprocesses, checkpoint files), so a second worker all but halves it on 2 cores. The slow tests
# are handed out first and one at a time (tests/conftest.py). TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2

test: lint
	$(PY) -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist load --maxschedchunk 1)

demo: $(STAMP)
	$(VENV)/bin/sdfl study --params $(PARAMS)

lab: $(STAMP)
	$(PY) -m pip install -e ".[lab]"
	$(PY) -m ipykernel install --user --name sdfl --display-name "sdfl (.venv)"
	$(VENV)/bin/jupyter lab notebooks/

# ruff, and the layer contracts of .importlinter (docs/architecture.md, "Layers").
lint: $(STAMP)
	$(VENV)/bin/ruff check sdfl_lib tests
	$(VENV)/bin/lint-imports --no-logo

# Everything only a GPU can show, in one go; prints figures. Uses the machine's python3 where
# there is no .venv (GPU machines).
gpu-check:
	PYTHONPATH=. $$(test -x $(PY) && echo $(PY) || echo $(PYTHON)) -m sdfl_lib.bench gpu-check

clean:
	rm -rf $(VENV) build *.egg-info

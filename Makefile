# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
# Each installs only what it uses: the demo its runtime, the tests the `dev` extra plus the extras of optional
# features whose tests need them (no TensorFlow: the TF1 converter is tested on a committed checkpoint). An
# optional feature whose tests need its extra adds it to TEST_EXTRAS (comma-separated).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_EXTRAS := demo
TEST_EXTRAS := dev,serve,onnx,openvino

$(VENV)/.torch:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet "torch==2.13.0"
	touch $@

$(VENV)/.demo: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install --quiet -e ".[$(DEMO_EXTRAS)]"
	touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install --quiet -e ".[$(TEST_EXTRAS)]"
	touch $@

.PHONY: install demo test lint
install: $(VENV)/.test

demo: $(VENV)/.demo
	$(BIN)/pert demo

test: $(VENV)/.test
	# The browser tests of `pert serve` drive Debian's chromium (Playwright uses it; it downloads no browser).
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	  chromium >/dev/null) || echo "chromium could not be installed: the browser tests will be skipped"
	$(BIN)/python -m pytest -q

lint: $(VENV)/.test
	$(BIN)/ruff check .

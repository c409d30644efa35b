# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev,tf,serve,onnx]"
	touch $(STAMP)

.PHONY: install demo test lint
install: $(STAMP)

demo: $(STAMP)
	$(BIN)/pert demo

test: $(STAMP)
	# The browser tests of `pert serve` drive Debian's chromium (Playwright uses it; it downloads no browser).
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	  chromium >/dev/null) || echo "chromium could not be installed: the browser tests will be skipped"
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

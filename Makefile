# Two commands on a fresh machine: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
TORCH_INDEX ?=
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint test-fast package test-package clean

$(STAMP): pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null || { echo "needs $(PYTHON)"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	# torch first, pinned. From PyPI on Linux this is the CUDA build (it runs on a CPU too);
	# TORCH_INDEX=https://download.pytorch.org/whl/cpu gives the much smaller CPU-only build.
	$(BIN)/python -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e '.[dev,video,cluster]'
	# sam2 builds against the installed torch; --no-deps keeps torchvision out.
	SAM2_BUILD_CUDA=0 $(BIN)/python -m pip install -q --no-build-isolation --no-deps sam2==1.1.0
	# TrackEval scores the youtube-vis and mots exports in the tests. --no-deps: its wheel needs
	# opencv-python, which clashes with opencv-python-headless; scipy, pycocotools and
	# matplotlib (plots only, never imported by the tests) come with the dev extra.
	$(BIN)/python -m pip install -q --no-deps trackeval==1.3.0
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/maskloop $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check app tests packaging
	$(BIN)/lint-imports
	$(BIN)/mypy

test: lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -m "not package" $(PYTEST_ARGS)

test-fast: lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -m "not slow and not package" $(PYTEST_ARGS)

package: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[package]'
	$(BIN)/python packaging/build.py

# Builds the bundle in a temporary folder and runs the frozen app's --self-test (minutes).
test-package: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[package]'
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -m package tests/test_package.py $(PYTEST_ARGS)

clean:
	rm -rf build dist .pytest_cache .ruff_cache

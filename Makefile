# `make demo`: set up .venv and run the demo end to end (about 3 minutes on an idle 2-core CPU, longer
# when other programs keep the CPUs busy; it prints its expected duration and an ETA).
# `make test`: set up .venv with the test extras, lint (ruff, ruff.toml) and run the test suite
# (all of it; `pytest -m "not slow"` skips the subprocess and end-to-end tests for a fast loop).
# Setup is done once; later runs reuse .venv until setup.py or constraints.txt change.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# Optional extras the test suite exercises, comma-separated.
TEST_EXTRAS := test,onnx,spandrel,bench,safetensors,video
# Reaches pip's build environments too (see constraints.txt).
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

.PHONY: demo test install

demo: $(VENV)/.installed
	$(BIN)/basicsr demo

test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	@status=0; $(BIN)/python -m pytest -ra tests || status=$$?; \
	if [ $$status -eq 5 ]; then echo 'pytest collected no tests: failing' >&2; exit 1; fi; exit $$status

install: $(VENV)/.installed

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch (a CPU wheel where one is provided) before basicsr, and basicsr without build
# isolation: its setup.py imports torch.
$(VENV)/.base: constraints.txt | $(BIN)/python
	$(PIP) install --upgrade pip setuptools wheel
	$(PIP) install torch torchvision
	$(PIP) install --no-build-isolation basicsr
	touch $@

$(VENV)/.installed: $(VENV)/.base setup.py
	$(PIP) install --no-build-isolation -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.base setup.py Makefile
	$(PIP) install --no-build-isolation -e '.[$(TEST_EXTRAS)]'
	touch $@

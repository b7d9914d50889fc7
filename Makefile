# The two commands of the README: `make demo` (the main job on embedded data) and `make test`.
# Each creates the virtual environment on first use and re-installs when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all venv benchmarks clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: 2.14.1 with torchvision 0.29.1 is the pair timm installs with.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[all]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/active-finetuning demo

test: $(STAMP)
	CI=$${CI:-} $(BIN)/python -m pytest -m "not slow" -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) outputs .pytest_cache

# The two commands of the README: `make demo` (the main job on embedded data) and `make test`.
# Each creates the virtual environment on first use and re-installs when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Label Studio, a real server for the annotation tests, in its own environment: its Django stack
# and pins do not belong in the project's.
LS_VENV ?= .venv-label-studio
LS_STAMP := $(LS_VENV)/.installed
# A data folder whose sqlite database Label Studio has migrated once (~40 s on two cores): the tests copy it
# for each server they start, which then starts in seconds (tests/labelstudio_fixtures.py).
LS_DATA := $(LS_VENV)/migrated-data
LABEL_STUDIO_VERSION ?= 1.23.2

.PHONY: demo test test-all venv label-studio benchmarks clean image test-image

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: 2.14.1 with torchvision 0.29.1 is the pair timm installs with.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[all]"
	touch $(STAMP)

$(LS_STAMP):
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "label-studio==$(LABEL_STUDIO_VERSION)"
	touch $(LS_STAMP)

$(LS_DATA): $(LS_STAMP)
	rm -rf $(LS_DATA) $(LS_DATA).partial
	$(if $(CI),,env -u CI) PYTHONWARNINGS=ignore LATEST_VERSION_CHECK=false COLLECT_ANALYTICS=false $(LS_VENV)/bin/label-studio version --data-dir $(LS_DATA).partial > /dev/null
	mv $(LS_DATA).partial $(LS_DATA)

label-studio: $(LS_STAMP) $(LS_DATA)

demo: $(STAMP)
	$(BIN)/active-finetuning demo

test: $(STAMP) $(LS_STAMP) $(LS_DATA)
	$(BIN)/python -m pytest -m "not slow" -q

test-all: $(STAMP) $(LS_STAMP) $(LS_DATA)
	$(BIN)/python -m pytest -q

# The components' image (Dockerfile) with docker (BuildKit), podman or buildah, whichever is present.
# VARIANT=cpu|cuda, BASE_IMAGE=…, IMAGE=tag, ENGINE=docker|podman|buildah: see image/build.sh.
image:
	image/build.sh

# Opt-in, 10-30 minutes: build the image, check it and run the pipeline in its containers (image/test.sh).
test-image: $(STAMP)
	PYTHON=$(BIN)/python image/test.sh

clean:
	rm -rf $(VENV) $(LS_VENV) outputs .pytest_cache

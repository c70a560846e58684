# prism-ray — every target creates .venv and installs on first use.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
RECIPE  ?= recipes/tiny.yaml
OUT     ?= runs/demo

.PHONY: install demo test test-all lint run clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	# CPU torch first: every later requirement is then satisfied without pulling a CUDA build.
	$(BIN)/python -m pip install -q "torch==2.13.0"
	# deepspeed builds from source and imports torch in its setup: build it against the venv's torch.
	$(BIN)/python -m pip install -q --no-build-isolation "deepspeed==0.19.8"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## The main job on the embedded default: tiny Qwen3-VL + synthetic visual reasoning, local Ray, CPU.
demo: $(STAMP)
	$(BIN)/prism-ray demo --out $(OUT)

## The test suite (CPU; GPU tests are skipped without CUDA).
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not gpu" --timeout=900

lint: $(STAMP)
	$(BIN)/ruff check prism_ray tests

run: $(STAMP)
	$(BIN)/prism-ray run $(RECIPE)

clean:
	rm -rf $(VENV) runs .pytest_cache

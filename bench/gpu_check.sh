#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU where nothing can be installed and torch may be as old
# as 2.11. Builds the extension in place for this GPU's arch, runs the tests (CUDA ones included)
# and the GPU benchmarks, and prints a short table last. Budget: under 8 minutes.
#   bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

python - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA GPU visible"
print("torch", torch.__version__, "CUDA", torch.version.cuda, "GPU", torch.cuda.get_device_name(0))
PY
arch=$(python -c "import torch; print('%d.%d' % torch.cuda.get_device_capability(0))")
export TORCH_CUDA_ARCH_LIST="$arch"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"

echo "== build in place for sm_${arch/./}"
GWKCUDA_FORCE_CUDA=1 python setup.py -q build_ext --inplace 2>&1 | tail -n 3
python -m gwkcuda info

echo "== tests (CUDA included)"
python -m pytest tests -q -x -p no:cacheprovider 2>&1 | tail -n 5

echo "== GPU benchmarks"
python bench/report.py --run --device cuda --repeats 50

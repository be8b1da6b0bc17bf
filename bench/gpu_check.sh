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
python - <<'PY'
# GPU rows of the design targets: pq_linear at M = 1..64 against cuBLAS fp16 on the decoded weight,
# and the byte floor at M = 1; gwk_lloyd_step over a 7B-sized set of layers is too large for one
# check: a 1/8 slice (B = 64 rows-blocks of 1M points, d = 8, k = 256) is timed instead.
import torch
import torch.nn.functional as F
from gwkcuda import ops

def cuda_ms(fn, reps=50):
    fn(); torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); b.synchronize(); times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]

print("| shape | bits/w | M | pq_linear ms | fp16 cuBLAS ms | ratio | % of byte floor (4.3 TB/s) |")
print("|---|---:|---:|---:|---:|---:|---:|")
for N, K in [(4096, 4096), (11008, 4096), (28672, 8192)]:
    for d in (8, 16):
        codes = torch.randint(0, 256, (N, K // d), dtype=torch.uint8, device="cuda")
        cb = torch.randn(1, 256, d, device="cuda", dtype=torch.float16)
        dense = ops.pq_decode(codes, cb)
        for M in (1, 4, 16, 64):
            x = torch.randn(M, K, device="cuda", dtype=torch.float16)
            t_pq = cuda_ms(lambda: ops.pq_linear(x, codes, cb, None))
            t_fp = cuda_ms(lambda: F.linear(x, dense))
            floor_ms = (N * K // d + cb.numel() * 2 + M * K * 2 + M * N * 2) / 4.3e12 * 1e3
            print(f"| {N}x{K} | {8 / d:g} | {M} | {t_pq:.3f} | {t_fp:.3f} | {t_fp / t_pq:.2f}x | {floor_ms / t_pq:.0%} |")
x = torch.randn(64, 1 << 20, 8, device="cuda", dtype=torch.float16)
w = torch.rand(64, 1 << 20, device="cuda")
c = x[:, :256].float().contiguous()
print(f"gwk_lloyd_step, 64 x 1M points, d=8, k=256: {cuda_ms(lambda: ops.gwk_lloyd_step(x, w, c), reps=5):.1f} ms")
PY

echo "== streaming: device memory per layer (MiniLM shapes)"
python bench/bench_stream_memory.py --device cuda --repeats 1

#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU where nothing can be installed and torch may be as old
# as 2.11. Checks its prerequisites first (and says what is missing), builds the extension in place
# for this GPU's arch only (the build log is shown if it fails), runs every test without stopping at
# the first failure, always reaches the benchmarks, and prints one summary last. Budget: under 8
# minutes. Without a GPU it says so and exits 0 after the prerequisites check.
#   bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

echo "== prerequisites"
python - <<'PY' || exit 1
import importlib.util, re, shutil, subprocess, sys
missing = [m for m in ("torch", "numpy", "safetensors", "sklearn", "pytest", "ninja")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit("missing Python packages: " + ", ".join(missing) + " (scikit-learn is imported as sklearn)")
import torch
print("torch", torch.__version__, "built for CUDA", torch.version.cuda)
nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
try:
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"release (\d+\.\d+)", out).group(1)
except (OSError, AttributeError):
    found = None
print("nvcc", found or "not found")
if torch.cuda.is_available() and torch.version.cuda and found and found.split(".")[0] != torch.version.cuda.split(".")[0]:
    sys.exit(f"nvcc {found} does not match torch's CUDA {torch.version.cuda}: the extension would not load")
if torch.cuda.is_available() and not found:
    sys.exit("no nvcc: the CUDA kernels cannot be built (set CUDA_HOME or put nvcc on PATH)")
PY
if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no GPU visible: nothing to check on this machine"
  exit 0
fi
python -c "import torch; print('GPU', torch.cuda.get_device_name(0))"
arch=$(python -c "import torch; print('%d.%d' % torch.cuda.get_device_capability(0))")
export TORCH_CUDA_ARCH_LIST="$arch"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"

echo "== build in place for sm_${arch/./} only"
if ! GWKCUDA_FORCE_CUDA=1 python setup.py -q build_ext --inplace > "$logs/build.txt" 2>&1; then
  tail -n 60 "$logs/build.txt"
  echo "== summary: the build failed (log above); no test or benchmark ran"
  exit 1
fi
python -m gwkcuda info | tee "$logs/info.txt"

echo "== tests (CUDA included), all of them"
python -m pytest tests -q -p no:cacheprovider > "$logs/tests.txt" 2>&1
grep -E "^(FAILED|ERROR) " "$logs/tests.txt" | head -n 30
tail -n 1 "$logs/tests.txt"

echo "== GPU benchmarks"
python bench/report.py --run --device cuda --repeats 50 2>&1 | tee "$logs/report.txt" || echo "(the kernel report failed)"
python - <<'PY' 2>&1 | tee "$logs/pq.txt" || echo "(the pq_linear table failed)"
# GPU rows of the design targets: pq_linear at M = 1..64 against cuBLAS fp16 on the decoded weight,
# and the byte floor at M = 1; gwk_lloyd_step over a 7B-sized set of layers is too large for one
# check: a 1/8 slice (B = 64 rows-blocks of 1M points, d = 8, k = 256) is timed instead.
import torch
import torch.nn.functional as F
from gwkcuda import ops

def cuda_ms(fn, reps=50):
    """Median ms of fn(i) over reps launches, launch i given its own index (to rotate inputs)."""
    fn(0); torch.cuda.synchronize()
    times = []
    for i in range(1, reps + 1):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(i); b.record(); b.synchronize(); times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]

def rotation(t, cache_bytes=256 << 20):
    """Copies of t at other addresses, together several times the L2 (50 MB on an H100 or H200),
    so that timing them in turn reads each one from memory, as a model's layers are."""
    return [t] + [t.clone() for _ in range(max(1, -(-cache_bytes // t.nbytes)))]

print("| shape | bits/w | M | pq_linear ms | fp16 cuBLAS ms | ratio | % of byte floor (4.3 TB/s) |")
print("|---|---:|---:|---:|---:|---:|---:|")
for N, K in [(4096, 4096), (11008, 4096), (28672, 8192)]:
    for d in (8, 16):
        codes = rotation(torch.randint(0, 256, (N, K // d), dtype=torch.uint8, device="cuda"))
        cb = torch.randn(1, 256, d, device="cuda", dtype=torch.float16)
        dense = rotation(ops.pq_decode(codes[0], cb))
        for M in (1, 4, 16, 64):
            x = torch.randn(M, K, device="cuda", dtype=torch.float16)
            t_pq = cuda_ms(lambda i: ops.pq_linear(x, codes[i % len(codes)], cb, None))
            t_fp = cuda_ms(lambda i: F.linear(x, dense[i % len(dense)]))
            floor_ms = (N * K // d + cb.numel() * 2 + M * K * 2 + M * N * 2) / 4.3e12 * 1e3
            print(f"| {N}x{K} | {8 / d:g} | {M} | {t_pq:.3f} | {t_fp:.3f} | {t_fp / t_pq:.2f}x | {floor_ms / t_pq:.0%} |")
# A whole compressed model at one input row, where each layer's launch costs more than its bytes:
# launched op by op against one CUDA-graph replay of the same forward.
from gwkcuda.nn import PQLinear
from gwkcuda.pq import PQConfig, PQWeight
def pq_layer(N, K, d=8, k=256):
    codes = torch.randint(0, k, (N, K // d), dtype=torch.uint8, device="cuda")
    cb = torch.randn(1, k, d, device="cuda", dtype=torch.float16)
    return PQLinear(PQWeight(codes, cb, (N, K), PQConfig(d, k)))
model = torch.nn.Sequential(*[pq_layer(1024, 1024) for _ in range(16)])
x = torch.randn(1, 1024, device="cuda", dtype=torch.float16)
with torch.no_grad():
    eager = cuda_ms(lambda i: model(x))
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        model(x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        model(x)
    replay = cuda_ms(lambda i: graph.replay())
print(f"16 PQ layers of 1024x1024 (d = 8, k = 256) at one input row: {eager:.3f} ms op by op, "
      f"{replay:.3f} ms as one CUDA-graph replay")
x = torch.randn(64, 1 << 20, 8, device="cuda", dtype=torch.float16)
w = torch.rand(64, 1 << 20, device="cuda")
c = x[:, :256].float().contiguous()
t = cuda_ms(lambda i: ops.gwk_lloyd_step(x, w, c), reps=5)  # 1 GB of points: never in L2
moved = x.numel() * x.element_size() + w.numel() * 4 + x.shape[0] * x.shape[1] * 8  # points, weights read; int64 labels written
print(f"gwk_lloyd_step, 64 x 1M points, d=8, k=256: {t:.1f} ms, {moved / t / 1e6:.0f} GB/s, "
      f"{moved / 4.3e12 * 1e3 / t:.1%} of the byte floor (4.3 TB/s; float64 sums in a fixed order, by sorting)")
# Many small problems (the rows of a layer, or a model's layers): one block per problem, every sum
# in shared memory; inputs rotated beyond the L2 cache.
for B, N, d, k in [(256, 4096, 4, 16), (4096, 4096, 1, 16)]:
    xs = rotation(torch.randn(B, N, d, device="cuda"))
    ws = rotation(torch.rand(B, N, device="cuda"))
    c = xs[0][:, :k].contiguous()
    t = cuda_ms(lambda i: ops.gwk_lloyd_step(xs[i % len(xs)], ws[i % len(ws)], c, check_weights=False))
    moved = B * N * (d * 4 + 4 + 8)  # float32 points and weights read, int64 labels written
    print(f"gwk_lloyd_step, {B} x {N} points, d={d}, k={k}: {t:.3f} ms, {moved / t / 1e6:.0f} GB/s, "
          f"{moved / 4.3e12 * 1e3 / t:.1%} of the byte floor (4.3 TB/s; one block per problem)")
PY

echo "== streaming: device memory per layer (MiniLM shapes)"
python bench/bench_stream_memory.py --device cuda --repeats 1 2>&1 | tee "$logs/stream.txt" || echo "(the streaming table failed)"

echo
echo "== summary ($(date -u +%Y-%m-%d), $(python -c "import torch; print(torch.cuda.get_device_name(0))"))"
echo "tests: $(tail -n 1 "$logs/tests.txt")"
grep -E "^\|" "$logs/report.txt" 2>/dev/null | head -n 60
grep -E "^\|" "$logs/pq.txt" 2>/dev/null
grep -E "^gwk_lloyd_step|^16 PQ layers" "$logs/pq.txt" 2>/dev/null
grep -E "^\|" "$logs/stream.txt" 2>/dev/null

"""Kernel microbenchmarks for ``gwkcuda bench``: each op next to what it replaces, same inputs,
in one run (the full pytest-benchmark suites with more shapes live in the repository's bench/).

- pack_bits / unpack_bits against a copy of the packed bytes (the memory-traffic floor's stand-in);
- weighted k-means (10 Lloyd iterations, tol 0, same initial centroids) against scikit-learn's
  KMeans called once per problem, as its users call it;
- pq_linear for one input row against dense F.linear on the decoded fp32 weight.
"""
import platform
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import ops
from .kmeans import weighted_kmeans

KMEANS_ITERS = 10


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return cpu


def _cpu_flags() -> set:
    """The CPU's feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            return set(next(line.split(":", 1)[1].split() for line in f if line.startswith("flags")))
    except (OSError, StopIteration):
        return set()


def cpu_vector_extensions() -> str:
    """The CPU's widest vector extensions among AVX2, AVX-512 and AMX (from /proc/cpuinfo's
    flags), e.g. "AVX2, AVX-512" (machines here differ: some have AVX-512, some AVX2 only)."""
    flags = _cpu_flags()
    if not flags:
        return "vector extensions unknown"
    named = [name for flag, name in (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("amx_tile", "AMX"))
             if flag in flags]
    return ", ".join(named) or "no AVX2"


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes in bfloat16 natively (AVX-512 BF16 or AMX BF16); elsewhere a
    bf16 matmul is emulated and slower than fp32."""
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def machine() -> str:
    """The CPU model and its vector extensions (and GPU, if one is visible) and thread count, for
    a table's caption."""
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    threads = torch.get_num_threads()
    return (f"{cpu_model()} ({cpu_vector_extensions()}), {threads} thread{'s' if threads != 1 else ''}{gpu}; "
            f"torch {torch.__version__}")


def median_ms(fn, repeats: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def kmeans_problem(B, N, d, k, seed=0):
    """x [B, N, d] standard normal, weights [B, N] uniform in [0, 1), initial centroids [B, k, d]
    drawn from the points."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, d, generator=gen)
    w = torch.rand(B, N, generator=gen)
    init = x[:, torch.randperm(N, generator=gen)[:k]].clone()
    return x, w, init


def gwkcuda_kmeans(x, w, init, iters=KMEANS_ITERS):
    return weighted_kmeans(x, w, k=init.shape[1], iters=iters, tol=0.0, init=init)


def sklearn_kmeans(x, w, init, iters=KMEANS_ITERS):
    """scikit-learn's Lloyd k-means on each problem in turn: centroids [B, k, d] (numpy)."""
    from sklearn.cluster import KMeans

    xn, wn, cn = x.numpy(), w.numpy(), init.numpy()
    out = []
    for b in range(x.shape[0]):
        km = KMeans(n_clusters=cn.shape[1], init=cn[b], n_init=1, max_iter=iters, tol=0.0, algorithm="lloyd")
        out.append(km.fit(xn[b], sample_weight=wn[b]).cluster_centers_)
    return np.stack(out)


def run(quick: bool = False):
    """Rows {op, shape, median_ms, baseline, baseline_ms, speedup} (speedup = baseline / op)."""
    rows = []

    def add(op, shape, fn, baseline, base_fn):
        t, tb = median_ms(fn), median_ms(base_fn)
        rows.append({"op": op, "shape": shape, "median_ms": t, "baseline": baseline,
                     "baseline_ms": tb, "speedup": tb / t})

    gen = torch.Generator().manual_seed(0)
    numel = 2**22 if quick else 2**26
    for nbits in (1, 4):
        codes = torch.randint(0, 2**nbits, (numel,), generator=gen, dtype=torch.int32)
        packed = ops.pack_bits(codes, nbits)
        shape = f"{numel} codes, {nbits} bit"
        add("pack_bits", shape, lambda: ops.pack_bits(codes, nbits), "copy of packed bytes", packed.clone)
        add("unpack_bits", shape, lambda: ops.unpack_bits(packed, nbits, numel), "copy of packed bytes",
            packed.clone)

    B, N = (16, 4096) if quick else (256, 4096)
    x, w, init = kmeans_problem(B, N, 4, 16)
    add("weighted k-means (10 it.)", f"{B} x {N} pts, d=4, k=16", lambda: gwkcuda_kmeans(x, w, init),
        "scikit-learn KMeans per problem", lambda: sklearn_kmeans(x, w, init))

    n, K = (1024, 1024) if quick else (4096, 4096)
    codes = torch.randint(0, 256, (n, K // 8), generator=gen, dtype=torch.int32).to(torch.uint8)
    codebook = torch.randn(1, 256, 8, generator=gen)
    dense = ops.pq_decode(codes, codebook)
    xr = torch.randn(1, K, generator=gen)
    add("pq_linear (1 bit/weight)", f"1 x {K} @ {n} x {K}, d=8, k=256",
        lambda: ops.pq_linear(xr, codes, codebook, None), "dense F.linear fp32", lambda: F.linear(xr, dense))
    return rows

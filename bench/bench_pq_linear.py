"""pytest-benchmark: pq_linear against dense F.linear in fp32 on the decoded weight, in one run
(the pq_linear rows of the design targets).

    python -m pytest bench/bench_pq_linear.py --benchmark-json=pq.json
    python bench/report.py pq.json

1 bit/weight: d = 8, k = 256; 0.5 bit/weight: d = 16, k = 256 (indices; one fp32 codebook of
k * d floats per layer on top). M = input rows. From M = 4 on, dense F.linear in bf16 on the decoded
weight too, where the CPU computes bf16 natively (AVX-512 BF16 or AMX; elsewhere it is emulated
and left out).
"""
import pytest
import torch
import torch.nn.functional as F

from gwkcuda import ops
from gwkcuda.microbench import cpu_has_native_bf16, machine

SHAPES = [(4096, 4096), (11008, 4096)]
CONFIGS = [(8, 256), (16, 256)]
ROWS = [1, 2, 4, 8, 16, 64]

_cache = {}


def weights(N, K, d, k):
    key = (N, K, d, k)
    if key not in _cache:
        _cache.clear()
        gen = torch.Generator().manual_seed(0)
        codes = torch.randint(0, k, (N, K // d), generator=gen, dtype=torch.int32).to(torch.uint8)
        codebook = torch.randn(1, k, d, generator=gen)
        dense = ops.pq_decode(codes, codebook)
        _cache[key] = (codes, codebook, dense, dense.bfloat16())
    return _cache[key]


IMPLS = ("pq_linear", "dense F.linear fp32", "dense F.linear bf16")
CASES = [(N, K, d, k, M, impl) for N, K in SHAPES for d, k in CONFIGS for M in ROWS for impl in IMPLS
         if impl != IMPLS[2] or (M >= 4 and cpu_has_native_bf16())]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}x{c[1]}-d{c[2]}-M{c[4]}-{c[5].split()[0]}" for c in CASES])
def test_pq_linear(benchmark, case):
    N, K, d, k, M, impl = case
    codes, codebook, dense, dense_bf16 = weights(N, K, d, k)
    x = torch.randn(M, K, generator=torch.Generator().manual_seed(1))
    bits = 8 / d
    benchmark.group = f"{N}x{K}, {bits:g} bit/weight (d={d}, k={k}), M={M}"
    benchmark.extra_info.update(op=impl, bytes_moved=0, baseline=impl == IMPLS[1], machine=machine())
    if impl == "pq_linear":
        benchmark(ops.pq_linear, x, codes, codebook, None)
    elif impl == IMPLS[1]:
        benchmark(F.linear, x, dense)
    else:
        benchmark(F.linear, x.bfloat16(), dense_bf16)

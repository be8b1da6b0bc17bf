"""The CPU loops' builds for each x86-64 feature level (csrc/cpu/cpu_level.h): every build the
CPU can run gives bit-identical results to the baseline build, forced through GWKCUDA_CPU_LEVEL in
a fresh process each."""
import os
import subprocess
import sys

import pytest
import torch

import gwkcuda

LEVELS = ["baseline", "x86-64-v3", "x86-64-v4"]

# Each op family's CPU loops on shapes that reach every code path: k-means tiles at the
# specialised and the generic d (full and partial tiles), both dtypes; every nbits with a partial
# group; pq_linear's table path (M = 1, 2) and decode path (M = 16), uint8 and int32 codes.
SCRIPT = r"""
import sys, torch, gwkcuda
from gwkcuda import ops
out = {"level": gwkcuda.cpu_level()}
g = torch.Generator().manual_seed(0)
for d in (1, 2, 3, 4, 8):
    for dt in (torch.float32, torch.float64):
        x = torch.randn(3, 1001, d, generator=g, dtype=dt)
        w = torch.rand(3, 1001, generator=g, dtype=dt)
        c = x[:, :17].clone()
        out[f"assign {d} {dt}"] = ops.kmeans_assign(x, c)
        out[f"step {d} {dt}"] = ops.gwk_lloyd_step(x, w, c)
for nbits in range(1, 17):
    codes = torch.randint(0, 2 ** nbits, (100003,), generator=g, dtype=torch.int32)
    packed = ops.pack_bits(codes, nbits)
    out[f"pack {nbits}"] = packed
    out[f"unpack {nbits}"] = ops.unpack_bits(packed, nbits, codes.numel())
for dtype, k in ((torch.uint8, 256), (torch.int32, 300)):
    codes = torch.randint(0, k, (512, 64), generator=g).to(dtype)
    codebook = torch.randn(4, k, 8, generator=g)
    for M in (1, 2, 16):
        out[f"pq_linear {dtype} {M}"] = ops.pq_linear(torch.randn(M, 512, generator=g), codes, codebook, None)
    out[f"pq_decode {dtype}"] = ops.pq_decode(codes, codebook)
torch.save(out, sys.argv[1])
"""


def _run(level, path):
    env = dict(os.environ, GWKCUDA_CPU_LEVEL=level)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return torch.load(path)


def _same(a, b):
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


def test_every_level_the_cpu_runs_gives_the_baseline_results(tmp_path):
    top = gwkcuda.cpu_level()
    if os.environ.get("GWKCUDA_CPU_LEVEL"):
        pytest.skip("the level is forced for this whole run")
    assert top in LEVELS
    runnable = LEVELS[:LEVELS.index(top) + 1]
    results = {level: _run(level, tmp_path / f"{level}.pt") for level in runnable}
    base = results["baseline"]
    for level, got in results.items():
        assert got["level"] == level
        differing = [key for key in base if key != "level" and not _same(got[key], base[key])]
        assert not differing, f"{level} differs from baseline in {differing}"


def test_a_level_above_the_cpu_runs_at_the_cpu_level_and_a_bad_name_is_refused():
    if os.environ.get("GWKCUDA_CPU_LEVEL"):
        pytest.skip("the level is forced for this whole run")
    env = dict(os.environ, GWKCUDA_CPU_LEVEL="x86-64-v4")
    done = subprocess.run([sys.executable, "-c", "import gwkcuda; print(gwkcuda.cpu_level())"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == gwkcuda.cpu_level()  # the CPU's own level, never one it lacks
    env["GWKCUDA_CPU_LEVEL"] = "avx9000"
    done = subprocess.run([sys.executable, "-c", "import torch, gwkcuda; gwkcuda.ops.unpack_bits(torch.zeros(1, dtype=torch.uint8), 1, 8)"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "GWKCUDA_CPU_LEVEL: expected baseline, x86-64-v3 or x86-64-v4, got 'avx9000'" in done.stderr

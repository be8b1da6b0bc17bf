"""pytest-benchmark: pack_bits / unpack_bits at 64M codes next to a copy of the int32 codes (the baseline) and of the packed bytes.

    python -m pytest bench/bench_bitpack.py --benchmark-json=bench/results/bitpack/bitpack.json
    python bench/report.py bench/results/bitpack/bitpack.json        # the README table
"""
import pytest

from cases import bitpack_cases

from gwkcuda.microbench import machine

CASES = list(bitpack_cases(device="cpu"))


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_bitpack(benchmark, case):
    group, name, fn, moved, baseline = case
    benchmark.group = group
    benchmark.extra_info.update(op=name, bytes_moved=moved, baseline=baseline, machine=machine())
    benchmark(fn)

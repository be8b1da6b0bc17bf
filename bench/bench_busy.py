"""Each CPU op on a busy machine: its time with 2 threads over its time with 1 thread while other
CPU-bound processes run on the same cores, next to dense F.linear's, and the same ratio on a quiet
machine (an op that opens many small parallel regions per call waits for a descheduled thread at
every region's join).

    python bench/bench_busy.py --out bench/results/busy/busy.json

The competing load: --spinners processes of pure-Python busy loops (CPU only, no memory traffic).
For each op and thread count, the median of --repeats calls after a warm-up; ratio = t(2) / t(1),
so above 1.0 means the op is slower with 2 threads than with 1.
"""
import argparse
import multiprocessing as mp
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gwkcuda import ops  # noqa: E402
from gwkcuda.cliutil import format_table, write_json  # noqa: E402
from gwkcuda.kmeans import optimal_kmeans_1d  # noqa: E402
from gwkcuda.microbench import machine, median_ms  # noqa: E402


def cases():
    """(name, fn) of the ops, at the shapes of the other CPU benchmarks."""
    gen = torch.Generator().manual_seed(0)
    N, K = 4096, 4096
    codes = torch.randint(0, 256, (N, K // 8), generator=gen, dtype=torch.int32).to(torch.uint8)
    codebook = torch.randn(1, 256, 8, generator=gen)
    dense = ops.pq_decode(codes, codebook)
    out = []
    for M in (1, 4, 16):
        x = torch.randn(M, K, generator=gen)
        out.append((f"pq_linear 4096x4096 d=8 k=256, M={M}", lambda x=x: ops.pq_linear(x, codes, codebook, None)))
        out.append((f"dense F.linear fp32 4096x4096, M={M}", lambda x=x: F.linear(x, dense)))
    out.append(("pq_decode 4096x4096 d=8 k=256", lambda: ops.pq_decode(codes, codebook)))
    rows = torch.randn(1536, 384, 1, generator=gen)
    w = torch.rand(1536, 384, generator=gen)
    c = rows[:, :8].clone()
    out.append(("gwk_lloyd_step 1536 rows x 384, d=1, k=8", lambda: ops.gwk_lloyd_step(rows, w, c)))
    small = torch.randn(256, 4096, 4, generator=gen)
    ws = torch.rand(256, 4096, generator=gen)
    cs = small[:, :16].clone()
    out.append(("gwk_lloyd_step 256 x 4096, d=4, k=16", lambda: ops.gwk_lloyd_step(small, ws, cs)))
    out.append(("kmeans1d_optimal 1536 rows x 384, k=8", lambda: optimal_kmeans_1d(rows, w, k=8)))
    ints = torch.randint(0, 8, (16 << 20,), generator=gen, dtype=torch.int32)
    packed = ops.pack_bits(ints, 3)
    out.append(("pack_bits 16M codes, 3 bits", lambda: ops.pack_bits(ints, 3)))
    out.append(("unpack_bits 16M codes, 3 bits", lambda: ops.unpack_bits(packed, 3, ints.numel())))
    return out


def spin():
    while True:
        pass


def measure(all_cases, repeats):
    """name -> {threads: ms}."""
    out, before = {}, torch.get_num_threads()
    for name, fn in all_cases:
        out[name] = {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out[name][threads] = median_ms(fn, repeats)
    torch.set_num_threads(before)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spinners", type=int, default=1, help="competing CPU-bound processes")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    all_cases = cases()
    quiet = measure(all_cases, args.repeats)
    procs = [mp.get_context("spawn").Process(target=spin, daemon=True) for _ in range(args.spinners)]
    for p in procs:
        p.start()
    try:
        time.sleep(0.5)
        busy = measure(all_cases, args.repeats)
    finally:
        for p in procs:
            p.terminate()
    rows, table = [], []
    for name, _ in all_cases:
        q, b = quiet[name], busy[name]
        rows.append({"op": name, "quiet_ms": q, "busy_ms": b, "quiet_ratio": q[2] / q[1], "busy_ratio": b[2] / b[1]})
        table.append([name, f"{q[1]:.2f}", f"{q[2]:.2f}", f"{q[2] / q[1]:.2f}", f"{b[1]:.2f}", f"{b[2]:.2f}",
                      f"{b[2] / b[1]:.2f}"])
    caption = f"{machine()}; busy: {args.spinners} competing busy-loop process(es); median of {args.repeats}"
    write_json(args.out, {"machine": machine(), "spinners": args.spinners, "repeats": args.repeats, "rows": rows})
    print(caption + "\n")
    print(format_table(["op", "quiet 1 thread ms", "quiet 2 threads ms", "quiet 2/1", "busy 1 thread ms",
                        "busy 2 threads ms", "busy 2/1"], table))


if __name__ == "__main__":
    main()

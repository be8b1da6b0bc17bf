"""The measurements behind the README's floors for the CPU kernels that miss their goals:

    python bench/bench_floors.py --out bench/results/floors/floors.json

1. pq_linear's lookup-table path on one thread at M = 1 on a 4096 x 4096 weight, for tables of
   32 KB to 512 KB (k = 16 to 256): ms and ns per table lookup (N * K / d lookups). A cost per
   lookup that does not grow with the table says the loop is bound by its instructions, not by
   the cache.
2. One general Lloyd step (gwk_lloyd_step) on the one-large and many-small shapes of
   bench/bench_kmeans.py, on 1 and 2 threads, beside the vector instructions its distances take
   ((x - c)^2: a subtract, a multiply and an add per coordinate, and a compare and two blends per
   centroid, over vectors of the CPU level's width) and the bytes of points it reads; and the
   whole weighted_kmeans call (10 iterations) for the many-small shape.
"""
import argparse
import os

import torch

from gwkcuda import cpu_level, ops
from gwkcuda.cliutil import write_result
from gwkcuda.kmeans import weighted_kmeans
from gwkcuda.microbench import kmeans_problem, machine, median_ms

LANES = {"x86-64-v4": 16, "x86-64-v3": 8}  # float32 lanes of the distance tiles; 4 for baseline


def lookup_rows(repeats):
    gen = torch.Generator().manual_seed(0)
    rows, before = [], torch.get_num_threads()
    torch.set_num_threads(1)
    for d, k in [(8, 256), (8, 64), (8, 16), (16, 256), (4, 16)]:
        S = 4096 // d
        codes = torch.randint(0, k, (4096, S), generator=gen, dtype=torch.int32).to(torch.uint8)
        codebook = torch.randn(1, k, d, generator=gen)
        x = torch.randn(1, 4096, generator=gen)
        ms = median_ms(lambda: ops.pq_linear(x, codes, codebook, None), repeats)
        rows.append({"d": d, "k": k, "table_kb": S * k * 4 / 1024, "ms_1_thread": ms,
                     "ns_per_lookup": ms * 1e6 / (4096 * S)})
    torch.set_num_threads(before)
    return rows


def lloyd_rows(repeats):
    lanes = LANES.get(cpu_level(), 4)
    rows, before = [], torch.get_num_threads()
    for name, (B, N, d, k) in {"one large: 1M pts, d=8, k=256": (1, 1 << 20, 8, 256),
                               "many small: 256 x 4096 pts, d=4, k=16": (256, 4096, 4, 16)}.items():
        x, w, c = kmeans_problem(B, N, d, k)
        vector_ops = B * N * k * (3 * d + 3) / lanes
        row = {"shape": name, "vector_instructions_per_step": vector_ops, "point_bytes": x.numel() * 4}
        for threads in (1, before):
            torch.set_num_threads(threads)
            ms = median_ms(lambda: ops.gwk_lloyd_step(x, w, c), repeats)
            row[f"step_ms_{threads}_threads"] = ms
            row[f"vector_instructions_per_s_{threads}_threads"] = vector_ops / (ms / 1e3)
            row[f"point_gb_per_s_{threads}_threads"] = x.numel() * 4 / (ms / 1e3) / 1e9
        if B > 1:
            row["weighted_kmeans_10_iterations_ms"] = median_ms(
                lambda: weighted_kmeans(x, w, k=k, iters=10, tol=0.0, init=c), repeats)
        rows.append(row)
    torch.set_num_threads(before)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--out", default=None, help="JSON file for the results")
    args = ap.parse_args(argv)
    lookups, lloyd = lookup_rows(args.repeats), lloyd_rows(args.repeats)
    print(f"{machine()}; CPU level {cpu_level()}; median of {args.repeats}")
    print("pq_linear lookup path, 4096 x 4096, M = 1, 1 thread:")
    for r in lookups:
        print(f"  d={r['d']:2d} k={r['k']:3d} table {r['table_kb']:5.0f} KB: {r['ms_1_thread']:6.3f} ms, "
              f"{r['ns_per_lookup']:.3f} ns per lookup")
    print("gwk_lloyd_step:")
    for r in lloyd:
        steps = ", ".join(f"{t} thread(s) {r[f'step_ms_{t}_threads']:.1f} ms "
                          f"({r[f'vector_instructions_per_s_{t}_threads'] / 1e9:.1f}G vector instructions/s, "
                          f"points at {r[f'point_gb_per_s_{t}_threads']:.2f} GB/s)"
                          for t in sorted({1, torch.get_num_threads()}))
        print(f"  {r['shape']}: {r['vector_instructions_per_step'] / 1e6:.0f}M vector instructions per step; {steps}")
        if "weighted_kmeans_10_iterations_ms" in r:
            print(f"    weighted_kmeans, 10 iterations: {r['weighted_kmeans_10_iterations_ms']:.1f} ms")
    if args.out:
        write_result(args.out, {"machine": machine(), "cpu_level": cpu_level(), "repeats": args.repeats,
                              "lookups": lookups, "lloyd": lloyd})


if __name__ == "__main__":
    main()

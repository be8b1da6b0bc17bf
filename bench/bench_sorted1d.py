"""Where the time of scalar k-means goes on the per-row shape (4096 rows x 4096 points, k = 16, 10
Lloyd iterations, as in bench/bench_kmeans.py), sorted path and general Lloyd side by side in one
run, with the floors that bound them:

    python bench/bench_sorted1d.py --out bench/results/kmeans1d/sorted1d.json

Rows: the whole weighted_kmeans call (sorted, general); its pieces (kmeans1d_sort, one sorted
step, the final sorted assignment, one general step); and two floors measured on the same
machine: a first-touch fill of fresh memory as large as the sort's outputs (the page faults every
newly allocated tensor pays) and a refill of memory already touched (the bandwidth floor).
"""
import argparse
import os

import torch

from gwkcuda import ops
from gwkcuda.cliutil import write_result
from gwkcuda.kmeans import weighted_kmeans
from gwkcuda.microbench import kmeans_problem, machine, median_ms


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--points", type=int, default=4096)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--out", default=None, help="JSON file for the results")
    args = parser.parse_args(argv)
    x, w, init = kmeans_problem(args.rows, args.points, 1, args.k)
    state = ops.kmeans1d_sort(x, w)
    labels = torch.empty(args.rows, args.points, dtype=torch.int64)
    out_bytes = sum(t.numel() * t.element_size() for t in state)

    def first_touch():
        torch.empty(out_bytes // 4, dtype=torch.float32).fill_(1.0)

    touched = torch.empty(out_bytes // 4, dtype=torch.float32)
    rows = {
        "weighted_kmeans, sorted (the default for d = 1)": lambda: weighted_kmeans(
            x, w, k=args.k, iters=args.iters, tol=0.0, init=init),
        "weighted_kmeans, general Lloyd": lambda: weighted_kmeans(
            x, w, k=args.k, iters=args.iters, tol=0.0, init=init, algorithm="lloyd"),
        "kmeans1d_sort (once per clustering)": lambda: ops.kmeans1d_sort(x, w),
        "gwk_lloyd_step_sorted (one iteration)": lambda: ops.gwk_lloyd_step_sorted(state, w, init),
        "kmeans1d_sorted_assign (final labels)": lambda: ops.kmeans1d_sorted_assign(state, w, init, labels),
        "gwk_lloyd_step (one general iteration)": lambda: ops.gwk_lloyd_step(x, w, init, labels_out=labels),
        f"floor: first touch of {out_bytes / 2**20:.0f} MiB of fresh memory": first_touch,
        f"floor: refill of {out_bytes / 2**20:.0f} MiB already touched": lambda: touched.fill_(1.0),
    }
    results = {name: median_ms(fn) for name, fn in rows.items()}
    print(f"{machine()}; {args.rows} rows x {args.points} points, k = {args.k}, {args.iters} iterations")
    for name, ms in results.items():
        print(f"  {name:60s} {ms:9.1f} ms")
    if args.out:
        write_result(args.out, {"machine": machine(), "shape": vars(args), "sort_output_bytes": out_bytes,
                              "median_ms": results})


if __name__ == "__main__":
    main()

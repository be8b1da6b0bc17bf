"""Exact weighted 1-D k-means (gwkcuda.kmeans.optimal_kmeans_1d) next to Lloyd from k-means++
(gwkcuda.kmeans.weighted_kmeans, 25 iterations, 3 seeds) and, where installed (the [peers] extra),
flash1dkmeans (sorted prefix sums, k-means++ then Lloyd, 25 iterations, 3 seeds; one problem per
call, so a per-row batch is a Python loop over rows), same points and weights, one run: time and
weighted inertia (a faster but worse clustering is no win).

    python bench/bench_kmeans1d.py [--out bench/results/kmeans1d/kmeans1d.json]

Shapes: per-row scalar clustering of an all-MiniLM-L6-v2 feed-forward layer (1536 rows x 384, k = 8:
3 bits, SqueezeLLM-style) and one layer-wide scalar codebook (a ResNet-20 stage-3 convolution,
36,864 weights, k = 8 and 16); weights = squared normal noise (skewed, like g^2 importances).
"""
import argparse
import os
import sys
import time

import torch

CASES = [("per row: 1536 rows x 384, k=8", 1536, 384, 8), ("one layer: 36864 weights, k=8", 1, 36864, 8),
         ("one layer: 36864 weights, k=16", 1, 36864, 16)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from gwkcuda import kmeans
    from gwkcuda.cliutil import write_result
    from gwkcuda.microbench import machine

    rows = []
    print(f"Machine: {machine()}\n")
    try:
        import flash1dkmeans
        import numpy as np
        flash1dkmeans.kmeans_1d(np.arange(64.0), 4, max_iter=2, sample_weights=np.ones(64))  # JIT warm-up
    except ImportError:
        flash1dkmeans = None
        print("flash1dkmeans not installed (pip install -e '.[peers]'): its columns are left out\n")
    print("| problem | exact: ms | exact: inertia | Lloyd 25 it: ms (median of 3 seeds) | Lloyd: inertia min-max over seeds | Lloyd / exact | flash1dkmeans 25 it: ms | flash1dkmeans / exact inertia |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, B, N, k in CASES:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(B, N, 1, generator=gen)
        w = torch.randn(B, N, generator=gen) ** 2
        t = time.perf_counter()
        exact = kmeans.optimal_kmeans_1d(x, w, k=k)
        exact_s = time.perf_counter() - t
        lloyd = []
        for seed in range(3):
            t = time.perf_counter()
            r = kmeans.weighted_kmeans(x, w, k=k, iters=25, seed=seed)
            lloyd.append((time.perf_counter() - t, float(r.inertia.sum())))
        e = float(exact.inertia.sum())
        ls = sorted(s for s, _ in lloyd)[1]
        li = [i for _, i in lloyd]
        row = {"problem": name, "exact_seconds": exact_s, "exact_inertia": e, "lloyd_seconds_median": ls,
               "lloyd_inertia": li}
        flash = "| - | - |"
        if flash1dkmeans is not None:
            xs, ws, runs = x[..., 0].double().numpy(), w.double().numpy(), []
            for seed in range(3):
                t = time.perf_counter()
                inertia = 0.0
                for b in range(B):
                    c, labels = flash1dkmeans.kmeans_1d(xs[b], k, max_iter=25, sample_weights=ws[b], random_state=seed)
                    inertia += float((ws[b] * (xs[b] - c[labels]) ** 2).sum())
                runs.append((time.perf_counter() - t, inertia))
            fs, fi = sorted(s for s, _ in runs)[1], [i for _, i in runs]
            row.update({"flash1dkmeans_seconds_median": fs, "flash1dkmeans_inertia": fi})
            flash = f"| {1e3 * fs:.1f} | {min(fi) / e:.3f}-{max(fi) / e:.3f} |"
        rows.append(row)
        print(f"| {name} | {1e3 * exact_s:.1f} | {e:.4g} | {1e3 * ls:.1f} | {min(li):.4g}-{max(li):.4g} | "
              f"{min(li) / e:.3f}-{max(li) / e:.3f} {flash}", flush=True)
    if args.out:
        write_result(args.out, {"machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()

"""k-means++ seeding time: one centroid per round (the classic sequential draw) against the batched
draw of gwkcuda.kmeans.kmeanspp_init (exact k-means++ up to 32 centroids, then batches of j // 16),
side by side in one run, each case in a fresh process with a time limit; plus the seeding inertia
(every point to its nearest seed, weight 1), so that a faster seeding that is worse shows.

    python bench/bench_kmeanspp.py [--limit 300] [--out bench/results/kmeanspp/kmeanspp.json]

Points: N = 70,000 standard normal points (MNIST's count) of d = 1, 8 and 784 (MNIST's pixels),
k = 1,024 and 65,536. Work floor: both draws compute the same N * k * d squared differences;
what differs is the number of rounds of ops (k against about 32 + 16 ln(k / 32)).
"""
import argparse
import json
import os
import subprocess
import sys
import time

CASES = [(70000, d, k) for d in (1, 8, 784) for k in (1024, 65536)]

CHILD = r"""
import json, sys, time, torch
from gwkcuda import kmeans, ops
N, d, k, sequential = json.loads(sys.argv[1])
if sequential:
    kmeans.KMEANSPP_EXACT = 2 * k  # every batch of size 1: one centroid per round
x = torch.randn(1, N, d, generator=torch.Generator().manual_seed(0))
w = torch.ones(1, N)
rounds = len(kmeans.kmeanspp_batches(k))
cpu, wall = time.process_time(), time.perf_counter()
c = kmeans.kmeanspp_init(x, w, k, seed=0)
cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
inertia = sum(float(ops.kmeans_assign(x[:, s:s + 8192], c)[1].sum()) for s in range(0, N, 8192))
print(json.dumps({"seconds": wall, "cpu_seconds": cpu, "rounds": rounds, "seeding_inertia": inertia}))
"""


def run_case(root, N, d, k, sequential, limit):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, json.dumps([N, d, k, sequential])], env=env,
                             capture_output=True, text=True, timeout=limit, check=True)
    except subprocess.TimeoutExpired:
        return {"seconds": None, "timed_out_after": limit}
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"case N={N} d={d} k={k} failed:\n{exc.stderr}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["process_seconds"] = time.perf_counter() - started
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=float, default=300, help="seconds per case before it is stopped")
    ap.add_argument("--out", default=None, help="also write the rows as JSON")
    args = ap.parse_args()
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    sys.path.insert(0, root)
    from gwkcuda.cliutil import write_result
    from gwkcuda.microbench import machine
    rows = []
    print(f"Machine: {machine()}\n")
    print("| N | d | k | one per round: s (rounds) | batched: s (rounds) | speed-up | seeding inertia batched / one per round |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for N, d, k in CASES:
        seq = run_case(root, N, d, k, True, args.limit)
        bat = run_case(root, N, d, k, False, args.limit)
        rows.append({"N": N, "d": d, "k": k, "one_per_round": seq, "batched": bat})

        def cell(r):
            return f"> {r['timed_out_after']:.0f}" if r["seconds"] is None else f"{r['seconds']:.2f} ({r['rounds']})"
        speed = (f"{seq['seconds'] / bat['seconds']:.1f}x" if seq["seconds"] and bat["seconds"] else
                 (f"> {args.limit / bat['seconds']:.1f}x" if bat["seconds"] else "-"))
        ratio = (f"{bat['seeding_inertia'] / seq['seeding_inertia']:.3f}" if seq["seconds"] and bat["seconds"]
                 else "-")
        print(f"| {N} | {d} | {k} | {cell(seq)} | {cell(bat)} | {speed} | {ratio} |", flush=True)
        if args.out:  # after every case: a stopped run keeps what it measured
            write_result(args.out, {"machine": machine(), "limit_seconds": args.limit, "rows": rows})


if __name__ == "__main__":
    main()

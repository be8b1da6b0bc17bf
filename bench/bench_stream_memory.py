"""Peak memory of clustering one layer as streaming does it (gwkcuda.streaming.stream_compress on a
one-layer model, importances given), each case in a fresh process so that no memory held from
earlier work hides what the clustering allocates: the growth of the resident set (CPU) or the
allocator's peak (CUDA) while the layer is clustered, against the layer's fp32 bytes.

    python bench/bench_stream_memory.py [--device cuda] [--out stream_memory.json]

Shapes: all-MiniLM-L6-v2's largest layer (the word embeddings, 30522 x 384) and its feed-forward
layers (1536 x 384); random weights and importances (the memory does not depend on the values).
"""
import argparse
import json
import os
import subprocess
import sys

CASES = [  # (layer, rows, cols, setting, d, k, per_row)
    ("word embeddings", 30522, 384, "GWK-PQ d=2, k=128", 2, 128, False),
    ("word embeddings", 30522, 384, "GWK-PQ d=4, k=256", 4, 256, False),
    ("word embeddings", 30522, 384, "per-row scalar, 3 bits", 1, 8, True),
    ("FFN up", 1536, 384, "GWK-PQ d=2, k=128", 2, 128, False),
    ("FFN up", 1536, 384, "per-row scalar, 3 bits", 1, 8, True),
]

CHILD = r"""
import json, sys, tempfile, time, torch
from torch import nn
from gwkcuda.pq import PQConfig
from gwkcuda.streaming import stream_compress
rows, cols, d, k, per_row, device, iters = json.loads(sys.argv[1])
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(cols, rows, bias=False))
importance = {"0": torch.rand(rows, cols)}
plan = {"0": PQConfig(d, k, groups=rows if per_row else 1)}
with tempfile.TemporaryDirectory() as parts:
    report = stream_compress(model, plan, importance, parts, beta=1.0, iters=iters, device=device)
row = report["layers"][0]
print(json.dumps({"peak_bytes": row["peak_bytes"], "layer_bytes": row["layer_bytes"], "seconds": row["seconds"]}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per case: the largest peak, the median time")
    ap.add_argument("--out", default=None, help="also write the rows as JSON")
    args = ap.parse_args()
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    sys.path.insert(0, root)
    from gwkcuda.microbench import machine
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    rows = []
    print(f"Machine: {machine()}; device {args.device}; {args.iters} Lloyd iterations; "
          f"largest peak and median time of {args.repeats} fresh processes\n")
    print("| layer | shape | setting | layer fp32 (MiB) | peak (MiB) | peak / layer | seconds |")
    print("|---|---|---|---:|---:|---:|---:|")
    for layer, r, c, setting, d, k, per_row in CASES:
        runs = []
        for _ in range(args.repeats):
            out = subprocess.run([sys.executable, "-c", CHILD, json.dumps([r, c, d, k, per_row, args.device, args.iters])],
                                 capture_output=True, text=True, check=True, env=env)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        res = {"peak_bytes": max(x["peak_bytes"] for x in runs), "layer_bytes": runs[0]["layer_bytes"],
               "seconds": sorted(x["seconds"] for x in runs)[len(runs) // 2]}
        rows.append({"layer": layer, "shape": [r, c], "setting": setting, **res})
        print(f"| {layer} | {r} x {c} | {setting} | {res['layer_bytes'] / 2**20:.1f} | {res['peak_bytes'] / 2**20:.1f} | "
              f"{res['peak_bytes'] / res['layer_bytes']:.2f}x | {res['seconds']:.1f} |", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": machine(), "device": args.device, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()

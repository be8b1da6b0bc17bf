"""Start-up time of the command line: `gwkcuda --help` and a user mistake answered, next to
`python -c "import torch"` (the floor: every gwkcuda command needs torch), each the median of
`--repeats` fresh processes, in one run.

    python bench/bench_startup.py [--repeats 7] [--out bench/results/startup/startup.json]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

COMMANDS = [
    ("python -c 'import torch' (the floor)", [sys.executable, "-c", "import torch"]),
    ("gwkcuda --help", [sys.executable, "-m", "gwkcuda", "--help"]),
    ("gwkcuda compress --method svd ... (a mistake, exit 2)",
     [sys.executable, "-m", "gwkcuda", "compress", "--method", "svd", "--model", "x", "--data", "y"]),
    ("gwkcuda inspect missing.gwk (a mistake, exit 2)", [sys.executable, "-m", "gwkcuda", "inspect", "missing.gwk"]),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    sys.path.insert(0, root)
    from gwkcuda.cliutil import write_result
    from gwkcuda.microbench import machine
    rows = []
    print(f"Machine: {machine()}; median of {args.repeats} fresh processes\n")
    print("| command | median s | min s |")
    print("|---|---:|---:|")
    for name, cmd in COMMANDS:
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            subprocess.run(cmd, capture_output=True, cwd=root)
            times.append(time.perf_counter() - t)
        rows.append({"command": name, "median_s": statistics.median(times), "min_s": min(times)})
        print(f"| {name} | {statistics.median(times):.2f} | {min(times):.2f} |", flush=True)
    if args.out:
        write_result(args.out, {"machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()

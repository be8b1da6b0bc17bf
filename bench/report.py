"""Prints benchmark results as a Markdown table: op, median, GB/s (bytes read + written, where the
op moves a known number of bytes) and how it compares with the baseline of its group (the row a
benchmark marks `baseline`): the share of the baseline's GB/s for memory-bound ops, else the
speed-up (baseline median / median).

    python bench/report.py RESULTS.json            # from pytest-benchmark's --benchmark-json
    python bench/report.py --run [--device cuda]   # time the cases here (CUDA events on a GPU)
"""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The repository root too: after an in-place build (gpu_check.sh) gwkcuda is importable from there
# only, and sys.path[0] is bench/ when this script runs.
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def machine_name(device="cpu"):
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    from gwkcuda.microbench import cpu_model

    return f"{cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def rows_from_json(path):
    with open(path) as f:
        data = json.load(f)
    info = data.get("machine_info", {})
    machine = f"{info.get('cpu', {}).get('brand_raw', info.get('processor', '?'))}, " \
              f"{info.get('cpu', {}).get('count', '?')} cores"
    named = [b["extra_info"]["machine"] for b in data["benchmarks"] if "machine" in b["extra_info"]]
    if named:  # the benchmark's own caption: CPU model, vector extensions, threads, torch
        machine = named[0]
    base_inertia = {b["group"]: b["extra_info"]["weighted_inertia"] for b in data["benchmarks"]
                    if b["extra_info"].get("baseline") and "weighted_inertia" in b["extra_info"]}
    rows = [(b["group"], b["extra_info"]["op"], b["stats"]["median"], b["extra_info"]["bytes_moved"],
             b["extra_info"].get("baseline", False), _note(b["extra_info"], base_inertia.get(b["group"])))
            for b in data["benchmarks"]]
    return machine, rows


def _note(extra, base_inertia=None):
    notes = []
    if "weighted_inertia" in extra:
        ratio = f" ({extra['weighted_inertia'] / base_inertia:.4f}x the baseline's)" \
            if base_inertia and not extra.get("baseline") else ""
        notes.append(f"weighted inertia {extra['weighted_inertia']:.5g}{ratio}")
    if "max_rel_diff_vs_sklearn" in extra:
        notes.append(f"centroids within {extra['max_rel_diff_vs_sklearn']:.1e} (relative) of scikit-learn")
    return "; ".join(notes)


def rows_from_run(device, repeats):
    import torch

    from cases import bitpack_cases

    rows = []
    for group, name, fn, moved, baseline in bitpack_cases(device=device):
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            if device.startswith("cuda"):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            else:
                t0 = __import__("time").perf_counter()
                fn()
                times.append(__import__("time").perf_counter() - t0)
        rows.append((group, name, statistics.median(times), moved, baseline, ""))
    return machine_name(device), rows


def print_table(machine, rows):
    print(f"Machine: {machine}")
    print()
    print("| group | op | median (ms) | GB/s (read + write) | vs baseline | note |")
    print("|---|---|---:|---:|---:|---|")
    groups = {}
    for row in rows:
        groups.setdefault(row[0], []).append(row)
    for group, members in groups.items():
        base = next((m for m in members if m[4]), members[-1])
        for _, name, median, moved, is_base, note in sorted(members, key=lambda m: m[4]):
            if moved:
                bw = moved / median
                vs = "baseline" if is_base else f"{bw / (base[3] / base[2]):.0%} of its GB/s"
                gbs = f"{bw / 1e9:.2f}"
            else:
                vs = "baseline" if is_base else f"{base[2] / median:.1f}x faster"
                gbs = "-"
            print(f"| {group} | {name} | {median * 1e3:.1f} | {gbs} | {vs} | {note} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="?", help="pytest-benchmark JSON file")
    parser.add_argument("--run", action="store_true", help="time the cases here instead")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    if args.run:
        print_table(*rows_from_run(args.device, args.repeats))
    elif args.results:
        print_table(*rows_from_json(args.results))
    else:
        parser.error("give a results JSON file or --run")


if __name__ == "__main__":
    main()

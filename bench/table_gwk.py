"""Markdown tables of the GWK experiments (the JSON files bench/exp_gwk.py writes).

    python bench/table_gwk.py bench/results/gwk/*.json

First table: one row per (method, d, k) at seed 0: the three ratios, bits per weight and accuracy
on all 10,000 test images, with the command that produced it. Second table: GWK against plain
k-means per (d, k), mean and min-max over the seeds present.
"""
import json
import statistics
import sys
from collections import defaultdict


def load(paths):
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    return runs


def setting(r):
    return r["method"], r["settings"]["d"], r["settings"]["k"]


def settings_table(runs):
    print("| method | d | k | bits/weight indices | bits/weight all | (a) indices only | (b) + codebooks | "
          "(c) all-inclusive | file bytes | accuracy % (float) | drop, points | command |")
    print("|" + "---|" * 12)
    for r in sorted((r for r in runs if r["settings"]["seed"] == 0), key=lambda r: (-r["ratios"]["all_inclusive"], r["method"])):
        method, d, k = setting(r)
        bpw, ratios = r["bits_per_weight"], r["ratios"]
        acc, base = 100 * r["accuracy_full_test"], 100 * r["baseline_full_test"]
        print(f"| {method} | {d} | {k} | {bpw['indices']:.3f} | {bpw['all_inclusive']:.3f} | "
              f"{ratios['indices_only']:.1f}x | {ratios['with_codebooks']:.1f}x | {ratios['all_inclusive']:.1f}x | "
              f"{r['file_bytes']} | {acc:.2f} ({base:.2f}) | {base - acc:+.2f} | `{r['shared']['command']}` |")


def seeds_table(runs):
    groups = defaultdict(list)
    for r in runs:
        groups[setting(r)].append(r)
    print("| d | k | (c) all-inclusive | GWK accuracy %: mean (min-max), seeds | k-means accuracy %: mean (min-max), seeds | "
          "GWK - k-means, points |")
    print("|---|---|---|---|---|---|")
    pairs = sorted({(d, k) for _, d, k in groups}, key=lambda dk: (-dk[1], dk[0]))
    for d, k in pairs:
        cells, means = [], []
        for method in ("gwk", "kmeans"):
            accs = [100 * r["accuracy_full_test"] for r in groups.get((method, d, k), [])]
            if not accs:
                cells.append("-")
                means.append(None)
                continue
            means.append(statistics.mean(accs))
            cells.append(f"{means[-1]:.2f} ({min(accs):.2f}-{max(accs):.2f}), {len(accs)}")
        if None in means or min(len(groups[("gwk", d, k)]), len(groups[("kmeans", d, k)])) < 2:
            continue  # the comparison needs both arms over several seeds
        ratio = groups[("gwk", d, k)][0]["ratios"]["all_inclusive"]
        print(f"| {d} | {k} | {ratio:.1f}x | {cells[0]} | {cells[1]} | {means[0] - means[1]:+.2f} |")


def main(paths):
    runs = load(paths)
    r = runs[0]
    shared = r["shared"]
    print(f"Float ResNet-20 (pretrained, fine-tuned {shared['float_epochs']} epoch(s) on the JPEG train split): "
          f"{100 * r['baseline_full_test']:.2f}%; after EWGS QAT W{shared['qat']['bits']}A{shared['qat']['bits']} "
          f"({shared['qat']['epochs']} epochs): {100 * r['qat_full_test']:.2f}%; each arm fine-tuned "
          f"{r['settings']['epochs']} epoch(s) over {shared['finetune_images']} training images. {r['machine']}.\n")
    settings_table(runs)
    print()
    seeds_table(runs)


if __name__ == "__main__":
    main(sys.argv[1:])

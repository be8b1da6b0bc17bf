"""Markdown table of the MiniLM experiments (the JSON files bench/exp_minilm.py writes).

    python bench/table_minilm.py bench/results/minilm/*.json
"""
import json
import sys


def main(paths):
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    runs.sort(key=lambda r: (-r["ratios"]["all_inclusive"], r["method"]))
    print("| method | d | k | processes | bits/weight indices | (c) all-inclusive | probe accuracy % (float) | "
          "drop, points | mean cosine | compression s | peak memory MiB (largest layer) |")
    print("|" + "---|" * 11)
    for r in runs:
        acc, base = 100 * r["probe_accuracy"], 100 * r["float_probe_accuracy"]
        print(f"| {r['method']} | {r['d']} | {r['k']} | {r.get('processes', 1)} | {r['bits_per_weight']['indices']:.2f} | "
              f"{r['ratios']['all_inclusive']:.2f}x | {acc:.2f} ({base:.2f}) | {base - acc:+.2f} | "
              f"{r['mean_cosine']:.4f} | {r.get('compress_seconds', r['seconds']):.0f} | "
              f"{r['peak_bytes'] / 2**20:.0f} ({r['largest_layer_bytes'] / 2**20:.0f}) |")
    if runs:
        r = runs[0]
        print(f"\n{r['glosses'] // 2} glosses train the probe, {r['glosses'] - r['glosses'] // 2} are judged; "
              f"{r['calibration_glosses']} calibration glosses; {r['iters']} Lloyd iterations; "
              + "; ".join(sorted({x["machine"] for x in runs})) + ".")


if __name__ == "__main__":
    main(sys.argv[1:])

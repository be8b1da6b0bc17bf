"""Markdown table of the MiniLM experiments (the JSON files bench/exp_minilm.py writes).

    python bench/table_minilm.py bench/results/minilm/*.json
"""
import json
import sys


def setting(r):
    """What was run, in words: the codebooks of GWK-PQ / k-means, or Bin & Quant's search."""
    if r["method"] == "bq":
        return f"<= {r['d']} bins, budget {r['k']:g} pts, {r['evaluations']} evaluations"
    scope = "per row" if r["method"].endswith("row") else "per layer"
    weighting = ""
    if r["method"].startswith("gwk"):
        weighting = ", " + ("g^2" if r.get("importance") == "square" else "abs(g)")
        weighting += f", beta {r['beta']:g}" if r.get("beta") is not None else ", no nudge"
    return f"d={r['d']}, k={r['k']} {scope}{weighting}"


def main(paths):
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    runs.sort(key=lambda r: (-r["ratios"]["all_inclusive"], r["method"], r.get("processes", 1)))
    print("| method | setting | processes | bits/weight indices | (c) all-inclusive | probe accuracy % (float) | "
          "drop, points | mean cosine | compression s | max resident set per process, MiB |")
    print("|" + "---|" * 10)
    for r in runs:
        acc, base = 100 * r["probe_accuracy"], 100 * r["float_probe_accuracy"]
        print(f"| {r['method']} | {setting(r)} | {r.get('processes', 1)} | {r['bits_per_weight']['indices']:.2f} | "
              f"{r['ratios']['all_inclusive']:.2f}x | {acc:.2f} ({base:.2f}) | {base - acc:+.2f} | "
              f"{r['mean_cosine']:.4f} | {r['compress_seconds']:.0f} | {r['max_rss_bytes'] / 2**20:.0f} |")
    if runs:
        r = runs[0]
        print(f"\n{r['glosses'] // 2} glosses train the probe, {r['glosses'] - r['glosses'] // 2} are judged; "
              f"{r['calibration_glosses']} calibration glosses; {r['iters']} Lloyd iterations; "
              + "; ".join(sorted({x["machine"] for x in runs})) + ".")


if __name__ == "__main__":
    main(sys.argv[1:])

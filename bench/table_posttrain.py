"""Markdown tables of the post-training side-by-side runs (the JSON files bench/exp_posttrain.py
writes): accuracy per method and width (mean and min-max over the seeds' calibration draws), then
the Fisher-weighted error and the seconds.

    python bench/table_posttrain.py bench/results/posttrain/resnet20.json bench/results/posttrain/resnet32.json
"""
import json
import statistics
import sys

METHODS = [("coreml-ptp", "coremltools k-means"), ("coreml-skm", "coremltools SKM"),
           ("kmeans", "gwkcuda k-means"), ("gwk-abs", "GWK abs(g)"), ("gwk-square", "GWK g^2 (batches)"),
           ("gwk-fisher", "GWK fisher"), ("binquant-fisher", "Bin & Quant splits")]


def width(r):
    per_row = ", per row" if r.get("granularity") == "per-row" else ""
    return f"{r['bits_per_weight']} (d={r['d']}, k={r['k']}{per_row})"


def cell(values, scale=100.0, fmt="{:.2f}"):
    if not values:
        return "-"
    values = [scale * v for v in values]
    mean = fmt.format(statistics.mean(values))
    return mean if len(values) == 1 else f"{mean} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def table(run):
    rows = run["rows"]
    widths = list(dict.fromkeys(width(r) for r in rows))
    present = [(m, label) for m, label in METHODS if any(r["method"] == m for r in rows)]
    print(f"**{run['model']}**, float {100 * run['float_accuracy']:.2f}% on {run['where']['report']}; "
          f"calibration: {run['fisher_samples']} of {run['where']['calibration']} per seed, {run['seeds']} seeds; "
          f"{len(run['layers'])} layers clustered, one codebook each (or one per row, where the width says so); "
          f"{run['machine']}"
          + (f"; coremltools {run['coremltools_version']}" if "coremltools_version" in run else "") + ".\n")
    print("| bits/weight | " + " | ".join(label for _, label in present) + " |")
    print("|---|" + "---|" * len(present))
    for w in widths:
        means = {m: statistics.mean(r["accuracy"] for r in rows if r["method"] == m and width(r) == w)
                 for m, _ in present if any(r["method"] == m and width(r) == w for r in rows)}
        best = max(means.values())
        cells = []
        for m, _ in present:
            text = cell([r["accuracy"] for r in rows if r["method"] == m and width(r) == w])
            cells.append(f"**{text}**" if means.get(m) == best else text)
        print(f"| {w} | " + " | ".join(cells) + " |")
    print("\nFisher-weighted error sum F (w - q)^2 (mean over seeds; lower is closer under the loss proxy the "
          "SKM and GWK fisher clusterings minimise), and seconds (importances + clustering, median):\n")
    print("| bits/weight | " + " | ".join(label for _, label in present) + " |")
    print("|---|" + "---|" * len(present))
    for w in widths:
        cells = []
        for m, _ in present:
            sel = [r for r in rows if r["method"] == m and width(r) == w]
            if not sel:
                cells.append("-")
                continue
            err = statistics.mean(r["fisher_error"] for r in sel)
            imp = statistics.median(r["importance_seconds"] for r in sel)
            clu = statistics.median(r["clustering_seconds"] for r in sel)
            cells.append(f"{err:.4g}; {imp:.1f} + {clu:.1f} s")
        print(f"| {w} | " + " | ".join(cells) + " |")
    print(f"\nFisher sums: {1000 * run['seconds_per_fisher_sample']:.2f} ms per calibration sample "
          f"({run.get('fisher_method', 'vmap')}).\n")


def main(paths):
    for path in paths:
        with open(path) as f:
            table(json.load(f))


if __name__ == "__main__":
    main(sys.argv[1:])

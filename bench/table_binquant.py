"""Markdown table of Bin & Quant experiment rows (the JSON that bench/exp_binquant.py prints).

    python bench/table_binquant.py kws-*.json r20-*.json
"""
import json
import sys

COLUMNS = ("model", "sensitivity", "allocation", "values", "max bins", "criterion", "max drop", "search / report images",
           "evaluations", "seconds", "bins per layer", "storage", "indices only", "all-inclusive",
           "accuracy on report images, %")


def row(d):
    bins = d["bins"]
    compressed = sum(1 for b in bins.values() if b)
    return [d["model"], d["mode"], d.get("allocation", "layer"), d["values"], d["max_bins"], d.get("criterion", "accuracy"),
            d.get("max_drop", 1.0), f"{d['search_images']} / {d['report_images']}", d["evaluations"],
            f"{d['seconds']:.0f}", f"{compressed}/{len(bins)} compressed: " + ", ".join(str(b) for b in bins.values()),
            storage(d.get("storage")),
            "-" if d["indices_only"] is None else f"{d['indices_only']:.1f}x", f"{d['all_inclusive']:.2f}x",
            f"{100 * d['report_acc_before']:.2f} -> {100 * d.get('report_acc_file', d['report_acc_after']):.2f}"]


def storage(s):
    """fp32 (format 2 files, before the storage options), or the options used."""
    if not s:
        return "fp32, format 2"
    return ("fp16" if s["float_dtype"] == "float16" else "fp32") + (", folded BN" if s["fold_batchnorm"] else "")


def main(paths):
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for path in paths:
        with open(path) as f:
            print("| " + " | ".join(str(c) for c in row(json.load(f))) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])

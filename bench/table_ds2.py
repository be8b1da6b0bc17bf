"""Markdown table of the DeepSpeech2 connected-digit rows: the float model (bench/train_ds2.py) and
each compressed file (bench/exp_ds2.py), error rates on the test utterances.

    python bench/table_ds2.py bench/results/ds2/*.json
"""
import json
import statistics
import sys
from collections import defaultdict

COLUMNS = ("method", "settings", "evaluations / retraining", "indices only", "all-inclusive",
           "bins or (d, k) by layer kind", "test digit error rate, %", "test sequence accuracy, %", "seconds")


def settings(d):
    s = d["settings"]
    if d["method"] == "binquant":
        return (f"{s['mode']}, {s['allocation']}, {s['values']}, <= {s['max_bins']} bins, budget {s['max_drop']} "
                f"points on {s['search']} val utterances")
    return (f"importance {s['importance']}, d={s['d']} k={s['k']}, CTC retraining lr {s['lr']:g}"
            + (", a codebook per gate" if s["gate_codebooks"] else ""))


def by_kind(d):
    """Mean bins per compressed layer of each kind (rnn, conv, fc), or the (d, k) used."""
    if d["method"] == "gwk":
        return ", ".join(sorted({f"{r['kind']} d={r['d']} k={r['k']}" for r in d["layers"]}))
    groups = defaultdict(list)
    for r in d["layers"]:
        groups[r["kind"]].append(r["bins"])
    return "; ".join(f"{k}: {', '.join(str(b) if b else 'fp32' for b in v)}" for k, v in groups.items())


def row(d):
    if "history" in d:  # the float model
        t = d["test"]
        return ["float", f"{d['epochs']} epochs, {d['parameters']:,} parameters ({d['gru_weights']:,} in GRU matrices)",
                "-", "1x", "1x", "fp32", f"{100 * t['digit_error_rate']:.2f}", f"{100 * t['sequence_accuracy']:.1f}",
                f"{statistics.median(d['history']['epoch_seconds']):.0f} per epoch (median; {d['train_seconds']:.0f} in all)"]
    f, c = d["float"]["test"], d["compressed"]["test"]
    work = f"{d['evaluations']} evaluations" if d["method"] == "binquant" else f"{d['settings']['epochs']} epochs"
    name = "Bin & Quant" if d["method"] == "binquant" else \
        ("k-means PQ" if d["settings"]["importance"] == "uniform" else "GWK-PQ")
    return [name, settings(d), work,
            f"{d['ratios']['indices_only']:.2f}x", f"{d['ratios']['all_inclusive']:.2f}x", by_kind(d),
            f"{100 * f['digit_error_rate']:.2f} -> {100 * c['digit_error_rate']:.2f}",
            f"{100 * f['sequence_accuracy']:.1f} -> {100 * c['sequence_accuracy']:.1f}", f"{d['seconds']:.0f}"]


def main(paths):
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    rows = []
    for path in paths:
        with open(path) as f:
            rows.append(json.load(f))
    rows.sort(key=lambda d: ("history" not in d, d.get("method", ""), -d.get("ratios", {}).get("all_inclusive", 0)))
    for d in rows:
        print("| " + " | ".join(str(c) for c in row(d)) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])

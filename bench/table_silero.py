"""Markdown table of the silero-vad rows (bench/exp_silero.py): Bin & Quant of an off-the-shelf
TorchScript recurrent model, judged by agreement with its own float decisions.

    python bench/table_silero.py bench/results/silero/*.json
"""
import json
import sys

COLUMNS = ("sensitivity", "allocation", "max bins", "values", "budget (agreement points)", "search / report clips", "evaluations", "bins by layer",
           "indices only", "all-inclusive", "agreement, %", "on speech chunks, %", "on silence chunks, %",
           "mean absolute change of the speech probability")


def row(d):
    s = d["settings"]
    bins = ", ".join(f"{r['name']}: {r['bins'] or 'fp32'}" for r in d["layers"])
    return [s.get("mode", "perturb"), s.get("allocation", "layer"), s["max_bins"], s["values"], s["max_drop"], f"{d['search_clips']} / {d['report_clips']}", d["evaluations"],
            bins, f"{d['ratios']['indices_only']:.2f}x", f"{d['ratios']['all_inclusive']:.2f}x",
            f"{100 * d['agreement']:.2f}", f"{100 * d['agreement_on_speech']:.2f}",
            f"{100 * d['agreement_on_silence']:.2f}", f"{d['mean_abs_probability_change']:.4f}"]


def main(paths):
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for path in sorted(paths):
        with open(path) as f:
            print("| " + " | ".join(str(c) for c in row(json.load(f))) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])

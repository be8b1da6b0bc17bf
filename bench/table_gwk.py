"""Markdown tables of the GWK experiments (the JSON files bench/exp_gwk.py writes).

    python bench/table_gwk.py bench/results/gwk/*.json
    python bench/table_gwk.py --ablation FILES...      # one row per run: the retraining schedules side by side
    python bench/table_gwk.py --curve OUT.png FILES...  # their test-half accuracy through the retraining
    python bench/table_gwk.py --baseline bench/results/gwk/float_baseline_resnet20_e4.json ...  # drops vs the fair float
    python bench/table_gwk.py --project --baseline FILE FILES...  # epochs each curve projects to need

First table: one row per (method, d, k) at seed 0: the three ratios, bits per weight and accuracy
on all 10,000 test images, with the command that produced it. Second table: GWK against plain
k-means per (d, k), mean and min-max over the seeds present.
"""
import json
import os
import statistics
import sys
from collections import defaultdict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def load(paths):
    """The exp_gwk.py runs among ``paths``; a float baseline (exp_float_baseline.py, as a glob of
    bench/results/gwk/*.json picks up) is left out with a note, anything else is refused."""
    runs = []
    for path in paths:
        with open(path) as f:
            r = json.load(f)
        if "per_epoch" in r and "method" not in r:
            print(f"(left out {path}: a float baseline; pass it as --baseline)", file=sys.stderr)
        elif not {"method", "settings", "shared", "accuracy_full_test"} <= r.keys():
            raise SystemExit(f"table_gwk.py: {path}: expected a run of bench/exp_gwk.py "
                             f"(keys method, settings, shared, accuracy_full_test), got keys {sorted(r)[:8]}")
        else:
            runs.append(r)
    if not runs:
        raise SystemExit("table_gwk.py: expected at least one run of bench/exp_gwk.py among the files, got none")
    return runs


def setting(r):
    return r["method"], r["settings"]["d"], r["settings"]["k"]


def recipe(r):
    """The arm's retraining after QAT, in words: re-clustering rounds (if any), then fine-tuning
    epochs x training images per epoch ("fresh": drawn anew each epoch from the whole train split);
    distillation if used; per-layer k if allocated."""
    settings, images = r["settings"], r["shared"]["finetune_images"]
    text = f"{settings['epochs']} x {images}{' fresh' if settings.get('epoch_images') else ''} images"
    rc = settings.get("recluster")
    if rc:
        frozen = " (then codes frozen)" if rc.get("final") == "freeze" else ""
        stages = f" progressive in {rc['stages']} stages" if rc.get("stages", 1) > 1 else ""
        text = f"{rc['rounds']} re-clusterings x {rc['epochs']}{stages}{frozen} + {text}"
    kd = settings.get("distill")
    if kd:
        text += f", distilled (alpha {kd['alpha']:g}, T {kd['temperature']:g})"
    if settings.get("budget_bits") is not None:
        text += f", k per layer from sensitivity (<= {settings['budget_bits']:g} bits/weight)"
    float_epochs = r["shared"].get("float_epochs", 1)
    if float_epochs != 1:  # the float model of the README's captions is fine-tuned 1 epoch
        text += f", from the float model fine-tuned {float_epochs} epochs"
    return text


def chain_models(runs):
    """The float and QAT models the runs start from, in words: one clause per --float-epochs (the
    accuracies of the first run of each)."""
    first = {}
    for r in runs:
        first.setdefault(r["shared"].get("float_epochs", 1), r)
    return "; ".join(f"float {100 * r['baseline_full_test']:.2f}%{f' (fine-tuned {e} epochs)' if e != 1 else ''}, "
                     f"after EWGS QAT {100 * r['qat_full_test']:.2f}%" for e, r in first.items())


def retraining_epochs(r):
    """Epochs of training after QAT: re-clustering rounds and fine-tuning."""
    rc = r["settings"].get("recluster") or {"rounds": 0, "epochs": 0}
    return rc["rounds"] * rc["epochs"] + r["settings"]["epochs"]


def settings_table(runs):
    print("| method | d | k | fine-tuning | bits/weight indices | bits/weight all | (a) indices only | (b) + codebooks | "
          "(c) all-inclusive | file bytes | accuracy % (float) | drop, points | command |")
    print("|" + "---|" * 13)
    for r in sorted((r for r in runs if r["settings"]["seed"] == 0),
                    key=lambda r: (-r["ratios"]["all_inclusive"], recipe(r), r["method"])):
        method, d, k = setting(r)
        bpw, ratios = r["bits_per_weight"], r["ratios"]
        acc, base = 100 * r["accuracy_full_test"], 100 * r["baseline_full_test"]
        print(f"| {method} | {d} | {k} | {recipe(r)} | {bpw['indices']:.3f} | {bpw['all_inclusive']:.3f} | "
              f"{ratios['indices_only']:.1f}x | {ratios['with_codebooks']:.1f}x | {ratios['all_inclusive']:.1f}x | "
              f"{r['file_bytes']} | {acc:.2f} ({base:.2f}) | {base - acc:+.2f} | `{r['shared']['command']}` |")


def seeds_table(runs):
    groups = defaultdict(list)
    for r in runs:
        groups[setting(r) + (recipe(r),)].append(r)
    print("| d | k | fine-tuning | (c) all-inclusive | GWK accuracy %: mean (min-max), seeds | k-means accuracy %: mean (min-max), seeds | "
          "GWK - k-means, points |")
    print("|---|---|---|---|---|---|---|")
    keys = sorted({key[1:] for key in groups}, key=lambda key: (-key[1], key[0], key[2:]))
    for d, k, schedule in keys:
        cells, means = [], []
        arms = {m: groups.get((m, d, k, schedule), []) for m in ("gwk", "kmeans")}
        for method in ("gwk", "kmeans"):
            accs = [100 * r["accuracy_full_test"] for r in arms[method]]
            if not accs:
                cells.append("-")
                means.append(None)
                continue
            means.append(statistics.mean(accs))
            cells.append(f"{means[-1]:.2f} ({min(accs):.2f}-{max(accs):.2f}), {len(accs)}")
        if None in means or min(len(arms["gwk"]), len(arms["kmeans"])) < 2:
            continue  # the comparison needs both arms over several seeds
        ratio = arms["gwk"][0]["ratios"]["all_inclusive"]
        print(f"| {d} | {k} | {schedule} | {ratio:.1f}x | {cells[0]} | {cells[1]} | {means[0] - means[1]:+.2f} |")


def ablation_table(runs):
    """One row per run: the retraining schedule after QAT, the accuracy right after the final
    clustering (test half) and, after fine-tuning, on the test images."""
    print("| method | d | k | seed | retraining after QAT | epochs | after final clustering % (test half) | "
          "accuracy % (float) | drop, points | (c) all-inclusive |")
    print("|---|---|---|---:|---|---:|---:|---:|---:|---:|")
    for r in sorted(runs, key=lambda r: (-r["accuracy_full_test"])):
        method, d, k = setting(r)
        acc, base = 100 * r["accuracy_full_test"], 100 * r["baseline_full_test"]
        print(f"| {method} | {d} | {k} | {r['settings']['seed']} | {recipe(r)} | {retraining_epochs(r)} | "
              f"{100 * r['details']['accuracy_before_finetune']:.2f} | {acc:.2f} ({base:.2f}) | {base - acc:+.2f} | "
              f"{r['ratios']['all_inclusive']:.1f}x |")


def apply_baseline(runs, path):
    """Measures every run against the fair float baseline of bench/exp_float_baseline.py (the
    float model fine-tuned as many epochs as a compressed model gets in all) instead of the
    chain's own 1-epoch float model; returns the caption's sentence on it."""
    with open(path) as f:
        fair = json.load(f)
    for r in runs:
        r["baseline_full_test"] = fair["accuracy_full_test"]
    state = "" if fair.get("finished") else f" (unfinished: {len(fair['per_epoch']) - 1} epochs so far)"
    return (f"Fair float baseline: the pretrained {fair['model']} fine-tuned {fair['epochs']} epochs, "
            f"{100 * fair['accuracy_full_test']:.2f}% on all 10,000 test images{state} "
            f"(`{fair['command']}`); every drop is against it.")


def projection(r, target):
    """A line on how many fine-tuning epochs the run's recipe projects to need to reach ``target``
    (a fraction): a least-squares fit of its test-half accuracy after each fine-tuning epoch
    against log2(epoch), extended to the target; None with fewer than 3 epochs measured."""
    import numpy as np
    accs = r["details"].get("finetune_accuracies") or []
    points = [(e + 1, a) for e, a in enumerate(accs) if a is not None]
    if len(points) < 3:
        return None
    epochs, acc = np.array(points, dtype=float).T
    slope, intercept = np.polyfit(np.log2(epochs), 100 * acc, 1)
    text = (f"{r['method']}, {recipe(r)}: test-half accuracy {100 * acc[0]:.2f}% after epoch 1, "
            f"{100 * acc[-1]:.2f}% after epoch {int(epochs[-1])}; the fit gains {slope:.2f} points per doubling "
            f"of the fine-tuning epochs")
    if slope <= 0:
        return text + f", so it does not reach {100 * target:.2f}% at any length."
    need = 2 ** ((100 * target - intercept) / slope)
    images = r["shared"]["finetune_images"]
    return text + f" and reaches {100 * target:.2f}% after about {need:,.0f} epochs of {images} images."


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ablation", action="store_true", help="one row per run: the retraining schedules side by side")
    ap.add_argument("--curve", metavar="OUT.png", help="plot the runs' test-half accuracy through the retraining")
    ap.add_argument("--baseline", metavar="FILE", help="a bench/exp_float_baseline.py JSON to measure drops against")
    ap.add_argument("--project", action="store_true",
                    help="with --baseline: the fine-tuning epochs each run's curve projects to need to come "
                         "within 2 points of it")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args(argv)
    runs = load(args.files)
    chains = chain_models(runs)  # before apply_baseline replaces baseline_full_test
    fair = apply_baseline(runs, args.baseline) + "\n" if args.baseline else ""
    if args.curve:
        from gwkcuda.plots import plot_retraining
        for r in runs:
            r["label"] = f"{r['method']}, seed {r['settings']['seed']}: {recipe(r)}"
        plot_retraining(runs, runs[0]["baseline_accuracy"], args.curve,
                        f"ResNet-20, (d, k) = ({runs[0]['settings']['d']}, {runs[0]['settings']['k']}), "
                        f"{runs[0]['ratios']['all_inclusive']:.1f}x all-inclusive")
        print(f"wrote {args.curve}")
        return
    if args.project:
        if not args.baseline:
            ap.error("--project: expected --baseline FILE (the accuracy to come within 2 points of), got none")
        for r in runs:
            line = projection(r, r["baseline_full_test"] - 0.02)
            print(line or f"{r['method']}, {recipe(r)}: fewer than 3 fine-tuning epochs measured, no projection.")
        return
    if args.ablation:
        print(f"{runs[0]['machine']}; {chains}, on all 10,000 test images.\n{fair}")
        ablation_table(runs)
        return
    qat = runs[0]["shared"]["qat"]
    print(f"Float ResNet-20 pretrained, fine-tuned on the JPEG train split (1 epoch unless said), then EWGS QAT "
          f"W{qat['bits']}A{qat['bits']} ({qat['epochs']} epochs): {chains}, on all 10,000 test images. "
          f"Fine-tuning: epochs x training images per epoch, codes fixed. {runs[0]['machine']}.\n{fair}")
    settings_table(runs)
    print()
    seeds_table(runs)


if __name__ == "__main__":
    main(sys.argv[1:])

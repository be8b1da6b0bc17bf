"""PNG plots of compression reports (matplotlib, no display needed)."""
import io

from .io import atomic_write

METHOD_STYLE = {"binquant": ("tab:orange", "s", "Bin & Quant (no retraining)"),
                "gwk": ("tab:blue", "o", "GWK-PQ (gradient-weighted)"),
                "kmeans": ("tab:gray", "^", "plain k-means PQ")}


def group_runs(runs):
    """Runs grouped by (method, setting), in first-seen order (seeds of one setting together)."""
    groups = {}
    for r in runs:
        groups.setdefault((r["method"], _setting(r)), []).append(r)
    return list(groups.values())


def plot_runs(runs, baseline: float, path, title: str) -> None:
    """Two panels, written atomically to ``path``: accuracy (%) against all-inclusive compression
    (x, log scale) for each method, with the float model as a dashed line; and the stored bits per
    weight of each Conv/Linear layer for the most compressed run of each method.

    runs: reports of gwkcuda.pipelines (keys method, accuracy, ratios, layers, settings)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5))
    by_method = {}
    for r in runs:
        by_method.setdefault(r["method"], []).append(r)
    for method, rs in by_method.items():
        color, marker, label = METHOD_STYLE.get(method, ("black", "x", method))
        groups = sorted(group_runs(rs), key=lambda g: g[0]["ratios"]["all_inclusive"])
        xs = [g[0]["ratios"]["all_inclusive"] for g in groups]
        accs = [[100 * r["accuracy"] for r in g] for g in groups]
        means = [sum(a) / len(a) for a in accs]
        # max(0, ...): the mean of equal values can round a hair past them, and matplotlib refuses
        # negative error bars.
        errors = [[max(0.0, m - min(a)) for m, a in zip(means, accs)],
                  [max(0.0, max(a) - m) for m, a in zip(means, accs)]]
        seeds = max(len(a) for a in accs)
        left.errorbar(xs, means, yerr=errors if seeds > 1 else None, marker=marker, color=color,
                      label=label + (f" (mean, min-max of {seeds} seeds)" if seeds > 1 else ""),
                      linewidth=1.5, markersize=7, capsize=3)
        labels = {}  # settings landing on the same point share one label
        for g, m in zip(groups, means):
            labels.setdefault((g[0]["ratios"]["all_inclusive"], m), []).append(_setting(g[0]))
        for point, texts in labels.items():
            below = method == "binquant"  # keeps its label clear of the PQ labels above
            left.annotate("; ".join(texts), point, textcoords="offset points", xytext=(4, -12 if below else 4),
                          fontsize=7, color=color)
    left.axhline(100 * baseline, color="black", linestyle="--", linewidth=1,
                 label=f"float model ({100 * baseline:.1f}%)")
    left.set_xscale("log")
    ratios = [r["ratios"]["all_inclusive"] for r in runs]
    ticks = [2.0 ** e for e in range(0, 12) if min(ratios) / 1.5 <= 2.0 ** e <= max(ratios) * 1.5]
    left.set_xticks(ticks or [min(ratios)])
    left.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    left.xaxis.set_minor_formatter(NullFormatter())
    left.set_xlabel("compression, all-inclusive (fp32 bytes / file bytes), log scale")
    left.set_ylabel(f"top-1 accuracy (%) on {runs[0]['evaluated_on']}")
    left.set_title("Accuracy against compression")
    left.grid(True, which="both", alpha=0.3)
    left.legend(loc="lower left", fontsize=8)

    layers = [l["layer"] for l in runs[0]["layers"] if l["bits_per_weight"] is not None]
    picks = [max(rs, key=lambda r: (r["ratios"]["all_inclusive"], -r["settings"].get("seed", 0)))
             for rs in by_method.values()]
    width = 0.8 / max(1, len(picks))
    for i, r in enumerate(picks):
        color, _, label = METHOD_STYLE.get(r["method"], ("black", "x", r["method"]))
        bpw = {l["layer"]: l["bits_per_weight"] for l in r["layers"]}
        xs = [j + (i - (len(picks) - 1) / 2) * width for j in range(len(layers))]
        right.bar(xs, [bpw.get(name) or 0 for name in layers], width, color=color,
                  label=f"{label}, {_setting(r)}")
    right.axhline(32, color="black", linestyle=":", linewidth=1, label="fp32 (32 bits)")
    right.set_yscale("log")
    right.set_xticks(range(len(layers)))
    right.set_xticklabels(layers, rotation=45, ha="right", fontsize=8)
    right.set_xlabel("layer (Conv/Linear, model order)")
    right.set_ylabel("stored bits per weight (indices + codebook + bias), log scale")
    right.set_title("Where the bits went: most compressed run of each method")
    right.set_ylim(top=400)  # room for the legend above the fp32 line
    right.legend(fontsize=8, loc="upper center", ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    _save_figure(fig, path)


def retraining_curve(report):
    """(epochs, accuracies %) of a GWK report on its test half, through the retraining after QAT:
    after each clustering and after each re-clustering round's training (details
    recluster_rounds), then after each fine-tuning epoch (details finetune_accuracies, where
    measured; the last point is the report's accuracy of the reloaded file). Epoch 0 is the first
    clustering."""
    rc = report["settings"].get("recluster") or {"epochs": 0}
    xs, ys, epoch = [], [], 0
    for r in report["details"].get("recluster_rounds", []):
        xs += [epoch, epoch + rc["epochs"]]
        ys += [100 * r["accuracy_after_clustering"], 100 * r["accuracy_after_training"]]
        epoch += rc["epochs"]
    xs.append(epoch)
    ys.append(100 * report["details"]["accuracy_before_finetune"])
    per_epoch = report["details"].get("finetune_accuracies") or []
    for e, acc in enumerate(per_epoch[:-1], start=1):  # the last epoch's point is the reloaded file's
        if acc is not None:
            xs.append(epoch + e)
            ys.append(100 * acc)
    xs.append(epoch + report["settings"]["epochs"])
    ys.append(100 * report["accuracy"])
    return xs, ys


def plot_retraining(runs, baseline: float, path, title: str) -> None:
    """Test-half accuracy (%) against retraining epochs after QAT for each run (its label the
    report's own "label" key, else its method and setting), the float model as a dashed line;
    written atomically to ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in runs:
        xs, ys = retraining_curve(r)
        ax.plot(xs, ys, marker="o", label=r.get("label") or f"{r['method']} {_setting(r)}")
    ax.axhline(100 * baseline, color="black", linestyle="--", linewidth=1, label="float")
    ax.set_xlabel("retraining epochs after QAT (a clustering drops the accuracy at that epoch)")
    ax.set_ylabel("accuracy on the test half, %")
    ax.set_title(title)
    # Below the axes: a recipe's label is a sentence, and inside they would cover the curves.
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13))
    fig.tight_layout()
    _save_figure(fig, path)


def _save_figure(fig, path) -> None:
    """The figure as a PNG at ``path``, written atomically (a temporary file of this process's own,
    then a rename)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")  # a legend outside the axes included
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def _setting(report) -> str:
    s = report["settings"]
    if report["method"] == "binquant":
        return f"{s['sensitivity']}/{s.get('allocation', 'layer')}, max drop {s['max_drop']:g}"
    return f"d={s['d']} k={s['k']}"

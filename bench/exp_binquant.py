"""Bin & Quant experiments behind the README table: no retraining, accuracy budget on a search
subset, accuracy reported on held-out images the search never saw.

    python bench/exp_binquant.py --model resnet20 --mode perturb --search 1000
    python bench/exp_binquant.py --model kws --mode gradient --values mean --max-bins 64

resnet20: the pretrained CIFAR ResNet-20 of the shared data folder; search on the first --search
images of the first 5,000 CIFAR-10 JPEG test images, report on the last 5,000.
kws, kws_tiny: the project's keyword-spotting CNN, or TensorFlow micro_speech's tiny_conv (the
model family of the authors' speech notebook), trained on FSDD "train-fit" (recording index 10-49; cached
after the first run); search on "train-val" (index 5-9, 300 recordings, never trained on), report
on the official test split (index 0-4, 300).
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gwkcuda import data, model_file, train  # noqa: E402
from gwkcuda.microbench import machine  # noqa: E402
from gwkcuda.train import accuracy, search_score  # noqa: E402
from gwkcuda.binquant import BinQuantConfig, bin_and_quant, quantize_uint8, save_binquant  # noqa: E402
from gwkcuda.models import build_model, load_checkpoint, resnet_cifar  # noqa: E402


def train_kws(name="kws_cnn", epochs=25, seed=0):
    """A keyword spotter (kws_cnn or kws_tiny_conv) trained on FSDD train-fit (Adam 2e-3, cosine,
    batch 64), cached."""
    stem = "kws" if name == "kws_cnn" else name  # kws_cnn's cached weights keep their first name
    path = data.cache_dir() / f"{stem}_fsdd_fit_e{epochs}_s{seed}.pt"
    model = build_model(name)
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model
    torch.manual_seed(seed)
    x, y = data.fsdd("train-fit")
    train.train(model, x, y, epochs=epochs, lr=2e-3, seed=seed, show_progress=sys.stderr.isatty())
    torch.save(model.state_dict(), path)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["resnet20", "kws", "kws_tiny"], default="resnet20",
                    help="kws: the project's KWS CNN; kws_tiny: micro_speech's tiny_conv")
    ap.add_argument("--mode", choices=["perturb", "gradient"], default="perturb")
    ap.add_argument("--search", type=int, default=1000)
    ap.add_argument("--max-drop", type=float, default=1.0)
    ap.add_argument("--max-bins", type=int, default=16)
    ap.add_argument("--values", choices=["midpoint", "mean"], default="midpoint",
                    help="bin value: the midpoint (the authors' rule) or the mean of its weights")
    ap.add_argument("--no-layer-sensitivity", action="store_true",
                    help="skip the +-p layer sensitivity (two evaluations per layer)")
    ap.add_argument("--share", choices=["none", "kind"], default="none",
                    help="one set of bins per layer kind (Conv2d, Linear) instead of per layer")
    ap.add_argument("--allocation", choices=["layer", "global"], default="layer",
                    help="bins layer by layer (the authors' greedy) or one global split order (gradient mode)")
    ap.add_argument("--uint8", action="store_true",
                    help="first make the model a uint8 model (per-tensor affine) and bin its codes")
    ap.add_argument("--criterion", choices=["accuracy", "agreement"], default="accuracy",
                    help="search on accuracy, or on agreement with the uncompressed model's predictions "
                         "(every changed prediction counts; less prone to fitting the search set's noise)")
    ap.add_argument("--float16", action="store_true", help="store float tensors as float16")
    ap.add_argument("--fold-batchnorm", action="store_true", help="store batch norms as scale and shift")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    arch = {"name": {"resnet20": "resnet20", "kws": "kws_cnn", "kws_tiny": "kws_tiny_conv"}[args.model],
            "num_classes": 10,
            "in_channels": 3 if args.model == "resnet20" else 1}
    if args.model == "resnet20":
        model = load_checkpoint(resnet_cifar(20), data.data_root() / "pretrained" / "resnet20-12fca82f.th")
        images, labels = data.cifar10("test")
        x = data.cifar10_normalize(images)
        xs, ys = x[: args.search], labels[: args.search]
        xr, yr = x[5000:], labels[5000:]
        calib = (xs[:512], ys[:512])
    else:
        model = train_kws(arch["name"])
        xs, ys = data.fsdd("train-val")
        xs, ys = xs[: args.search], ys[: args.search]
        xr, yr = data.fsdd("test")
        calib = (xs[:512], ys[:512])
    model.eval()
    float_report = accuracy(model, xr, yr)
    codes = quantize_uint8(model) if args.uint8 else None  # the reference becomes the uint8 model
    report_before = accuracy(model, xr, yr)

    def grad_fn(m):
        m.eval()
        F.cross_entropy(m(calib[0]), calib[1]).backward()

    config = BinQuantConfig(max_drop=args.max_drop, max_bins=args.max_bins, sensitivity=args.mode,
                            values=args.values, layer_sensitivity=not args.no_layer_sensitivity,
                            share=args.share, allocation=args.allocation, progress=sys.stderr.isatty())
    score = search_score(model, xs, ys, args.criterion)
    result = bin_and_quant(model, score, config, grad_fn=grad_fn, uint8=codes)
    report_after = accuracy(model, xr, yr)
    tag = ("-shared" if args.share == "kind" else "") + ("-uint8" if args.uint8 else "") + \
        ("-global" if args.allocation == "global" else "")
    out = args.out or f"binquant-{args.model}-{args.mode}-{args.values}-{args.max_bins}{tag}.gwk"
    storage = {"float_dtype": "float16" if args.float16 else "float32", "fold_batchnorm": args.fold_batchnorm}
    sizes = save_binquant(out, result, arch=arch, **storage)
    report_file = accuracy(model_file.load_model(out), xr, yr)  # what the file holds, reloaded
    row = {"model": args.model, "mode": args.mode, "values": args.values, "max_bins": args.max_bins, "max_drop": args.max_drop, "share": args.share, "allocation": args.allocation, "criterion": args.criterion,
           "uint8": args.uint8, "float_report_acc": float_report, "search_images": len(xs), "report_images": len(xr),
           "evaluations": result.evaluations, "seconds": round(result.seconds, 1),
           "search_acc_before": result.baseline_accuracy, "search_acc_after": result.accuracy,
           "report_acc_before": report_before, "report_acc_after": report_after,
           "report_acc_file": report_file, "storage": storage,
           "with_codebooks": sizes["ratios"]["with_codebooks"],
           "all_inclusive": sizes["ratios"]["all_inclusive"], "indices_only": sizes["ratios"]["indices_only"],
           "bits_per_weight": sizes["bits_per_weight"]["indices"], "file_bytes": sizes["file_bytes"],
           "bins": {",".join(r.members): r.bins for r in result.layers},
           "machine": machine()}
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()

"""The paper's DeepSpeech2 row on connected spoken digits: Bin & Quant (both sensitivity modes,
no retraining) and GWK product quantisation with a short CTC retraining, on the float model of
bench/train_ds2.py.

    python bench/exp_ds2.py --method binquant --mode gradient --out bench/results/ds2/binquant-gradient.json
    python bench/exp_ds2.py --method binquant --mode gradient --allocation global --values mean --max-bins 256 --out ...
    python bench/exp_ds2.py --method binquant --mode perturb --search 200 --out bench/results/ds2/binquant-perturb.json
    python bench/exp_ds2.py --method gwk --importance square --d 2 --k 16 --epochs 3 --out bench/results/ds2/gwk-square.json

Bin & Quant searches with the score 1 - digit error rate on the "val" utterances (FSDD recording
index 5-9, never trained on) within --max-drop points; every reported error rate is on the "test"
utterances (index 0-4), measured on the model reloaded from the written file.
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ds2_task  # noqa: E402
from gwkcuda import digit_sequences as ds  # noqa: E402
from gwkcuda import model_file  # noqa: E402
from gwkcuda.binquant import BinQuantConfig, bin_and_quant, save_binquant  # noqa: E402
from gwkcuda.gwk import GWKConfig, gwk_compress  # noqa: E402
from gwkcuda.cliutil import write_json  # noqa: E402
from gwkcuda.microbench import machine  # noqa: E402

ARCH = {"name": "ds2_digits", "num_classes": ds.NUM_CLASSES, "in_channels": 1}
CALIB_UTTERANCES, CALIB_SEED = 256, 999  # training-split utterances for the gradients


def kind(name: str) -> str:
    """The layer family of a DS2 layer name: rnn, conv or fc."""
    return name.split(".")[0]


def ctc_backward(model, utts, batch=64):
    """Backward of the CTC loss over the utterances (eval mode: batch norm untouched)."""
    model.eval()
    for part in ds.length_batches(utts, batch):
        ds.ctc_loss(model(part.features), model.output_lengths(part.lengths), part.targets,
                    part.target_lengths).backward()


def run_binquant(model, val, calib, args):
    config = BinQuantConfig(max_drop=args.max_drop, max_bins=args.max_bins, sensitivity=args.mode,
                            values=args.values, allocation=args.allocation, progress=sys.stderr.isatty())
    result = bin_and_quant(model, lambda m: 1 - ds.evaluate(m, val)["digit_error_rate"], config,
                           grad_fn=lambda m: ctc_backward(m, calib))
    sizes = save_binquant(args.file, result, arch=ARCH, float_dtype=args.float_dtype)
    layers = [{"name": r.name, "kind": kind(r.name), "shape": r.shape, "bins": r.bins,
               "sensitivity": r.sensitivity, "evaluations": r.evaluations} for r in result.layers]
    return sizes, {"evaluations": result.evaluations, "layers": layers,
                   "float_layers": result.report["float_layers"]}


def run_gwk(model, val, calib, args):
    config = GWKConfig(d=args.d, k=args.k, importance=args.importance, iters=args.iters,
                       gate_codebooks=args.gate_codebooks)

    def run_backward(after_each):
        model.zero_grad(set_to_none=True)
        ctc_backward(model, calib)
        after_each()

    model, report = gwk_compress(model, config, run_backward=run_backward)
    before = ds.evaluate(model, val)
    losses = ds.train_ctc(model, ds2_task.train_utterances, epochs=args.epochs, lr=args.lr,
                          show_progress=sys.stderr.isatty()) if args.epochs else []
    model.eval()
    sizes = model_file.save_model(args.file, model, arch=ARCH, float_dtype=args.float_dtype, meta={"method": "gwk"})
    layers = [{"name": r["name"], "kind": kind(r["name"]), "shape": r["shape"], "d": r["d"], "k": r["k"]}
              for r in report["layers"]]
    return sizes, {"val_before_retraining": before, "losses": losses, "layers": layers,
                   "float_layers": report["float_layers"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", choices=["binquant", "gwk"], default="binquant")
    ap.add_argument("--mode", choices=["perturb", "gradient"], default="gradient", help="Bin & Quant sensitivity")
    ap.add_argument("--max-drop", type=float, default=1.0, help="digit error rate points the search may lose")
    ap.add_argument("--max-bins", type=int, default=16)
    ap.add_argument("--values", choices=["midpoint", "mean"], default="midpoint")
    ap.add_argument("--allocation", choices=["layer", "global"], default="layer", help="Bin & Quant budget allocation")
    ap.add_argument("--search", type=int, default=ds2_task.VAL, help="val utterances the search scores on")
    ap.add_argument("--importance", choices=["abs", "square", "uniform"], default="square", help="GWK importances")
    ap.add_argument("--d", type=int, default=2)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--iters", type=int, default=25)
    ap.add_argument("--gate-codebooks", action="store_true", help="GWK: a codebook per gate")
    ap.add_argument("--epochs", type=int, default=3, help="GWK: CTC retraining epochs after clustering")
    ap.add_argument("--lr", type=float, default=5e-4, help="GWK retraining learning rate")
    ap.add_argument("--float-epochs", type=int, default=30, help="the float model's training epochs")
    ap.add_argument("--float-dtype", choices=["float32", "float16"], default="float32")
    ap.add_argument("--file", default=None, help="the compressed model file (default beside --out)")
    ap.add_argument("--out", required=True, help="the result JSON")
    args = ap.parse_args()
    if args.epochs < 0 or args.max_drop < 0:
        ap.error(f"expected --epochs >= 0 and --max-drop >= 0, got {args.epochs} and {args.max_drop}")
    args.file = args.file or os.path.splitext(args.out)[0] + ".gwk"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.manual_seed(0)
    model, _ = ds2_task.float_model(args.float_epochs)
    val, test = ds2_task.eval_sets()
    if not 1 <= args.search <= len(val):
        ap.error(f"--search: expected 1..{len(val)} utterances, got {args.search}")
    val = val.subset(range(args.search))
    calib = ds.connected_digits("train", CALIB_UTTERANCES, CALIB_SEED)
    float_val, float_test = ds.evaluate(model, val), ds.evaluate(model, test)
    start = time.perf_counter()
    run = run_binquant if args.method == "binquant" else run_gwk
    sizes, details = run(model, val, calib, args)
    seconds = time.perf_counter() - start
    reloaded = model_file.load_model(args.file)  # the file alone: architecture and weights
    row = {"method": args.method, "model": "ds2_digits", "settings": {k: v for k, v in vars(args).items() if k != "out"},
           "float": {"val": float_val, "test": float_test},
           "compressed": {"val": ds.evaluate(reloaded, val), "test": ds.evaluate(reloaded, test)},
           "ratios": sizes["ratios"], "bits_per_weight": sizes["bits_per_weight"], "file_bytes": sizes["file_bytes"],
           "fp32_bytes": sizes["fp32_bytes"], "seconds": round(seconds, 1), **details, "machine": machine()}
    row["test_der_change_points"] = 100 * (row["compressed"]["test"]["digit_error_rate"] -
                                          float_test["digit_error_rate"])
    write_json(args.out, row)
    print(json.dumps({k: row[k] for k in ("float", "compressed", "ratios", "test_der_change_points", "seconds")}))


if __name__ == "__main__":
    main()

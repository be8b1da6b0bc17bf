"""Trains the DeepSpeech2-style connected-digit model (gwkcuda.models.ds2_digits) with CTC on FSDD
and writes its float error rates: the float row of the DS2 table.

    python bench/train_ds2.py --epochs 30 --out bench/results/ds2/float.json

Cached outside the repository (gwkcuda.data.cache_dir); a killed run resumes from its last epoch.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ds2_task  # noqa: E402
from gwkcuda import digit_sequences as ds  # noqa: E402
from gwkcuda.cliutil import write_result  # noqa: E402
from gwkcuda.microbench import machine  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--out", default="bench/results/ds2/float.json")
    args = ap.parse_args()
    if args.epochs < 1:
        ap.error(f"--epochs: expected an int >= 1, got {args.epochs}")
    model, history = ds2_task.float_model(args.epochs, args.seed, args.lr, show_progress=sys.stderr.isatty(),
                                          log=lambda s: print(s, flush=True))
    val, test = ds2_task.eval_sets()
    start = time.perf_counter()
    row = {"model": "ds2_digits", "epochs": args.epochs, "seed": args.seed, "lr": args.lr,
           "parameters": sum(p.numel() for p in model.parameters()),
           "gru_weights": sum(p.numel() for n, p in model.named_parameters() if n.startswith("rnn.weight")),
           "train_utterances_per_epoch": ds2_task.TRAIN_PER_EPOCH,
           "val": {"utterances": len(val), "digits": int(val.target_lengths.sum()), **ds.evaluate(model, val)},
           "test": {"utterances": len(test), "digits": int(test.target_lengths.sum()), **ds.evaluate(model, test)},
           "history": history, "train_seconds": round(sum(history["epoch_seconds"]), 1),
           "eval_seconds": round(time.perf_counter() - start, 1), "machine": machine()}
    write_result(args.out, row)
    print(json.dumps({k: row[k] for k in ("val", "test", "train_seconds", "parameters", "gru_weights")}))


if __name__ == "__main__":
    main()

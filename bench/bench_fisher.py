"""Cost of the per-sample Fisher importances: vmap (torch.func) against one backward per sample,
against one batched backward (the "square" importances' cost for the same images), each in a fresh
process so that its peak memory is its own.

    python bench/bench_fisher.py --out bench/results/importance/fisher.json

Per model and method: milliseconds per calibration sample (median of --repeats) and the growth of
the process's peak resident set over what loading the model and the samples took.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gwkcuda.cliutil import format_table, write_result  # noqa: E402
from gwkcuda.microbench import machine  # noqa: E402

CHILD = r"""
import json, resource, sys, time
from gwkcuda import data, train
from gwkcuda.importance import accumulate_importance, fisher_importance
from posttrain_tasks import load_resnet
name, method, samples = sys.argv[1], sys.argv[2], int(sys.argv[3])
model, layers = load_resnet(name)
images, labels = data.cifar10("test")
x, y = data.cifar10_normalize(images[:samples]).clone(), labels[:samples].clone()
del images, labels
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
if method == "batches":
    accumulate_importance(model, layers, lambda f: train.backward_batches(model, x, y, batches=samples // 64,
                                                                          batch=64, after_each=f), "square")
else:
    fisher_importance(model, layers, x, y, method=method)
seconds = time.perf_counter() - t
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_growth_kib": after - before, "weights": sum(
    model.get_submodule(n).weight.numel() for n in layers)}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=256, help="calibration samples (a multiple of 64)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    here = os.path.dirname(os.path.abspath(__file__))  # the child imports posttrain_tasks from here
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, here, os.environ.get("PYTHONPATH", "")])}
    rows, table = [], []
    for model in ("resnet20", "resnet32"):
        for method in ("vmap", "loop", "batches"):
            runs = [json.loads(subprocess.run([sys.executable, "-c", CHILD, model, method, str(args.samples)],
                                              check=True, capture_output=True, text=True, env=env)
                               .stdout.strip().splitlines()[-1]) for _ in range(args.repeats)]
            ms = 1000 * statistics.median(r["seconds"] for r in runs) / args.samples
            mib = statistics.median(r["peak_growth_kib"] for r in runs) / 1024
            rows.append({"model": model, "method": method, "samples": args.samples, "ms_per_sample": ms,
                         "peak_growth_mib": mib, "weights": runs[0]["weights"]})
            table.append([model, method, f"{runs[0]['weights']:,}", f"{ms:.2f}", f"{mib:.0f}"])
            print(table[-1], flush=True)
    print(f"\n{machine()}; {args.samples} samples, median of {args.repeats} fresh processes\n")
    print(format_table(["model", "importances by", "weights", "ms per sample", "peak memory growth, MiB"], table))
    if args.out:
        write_result(args.out, {"rows": rows, "machine": machine(), "repeats": args.repeats})


if __name__ == "__main__":
    main()

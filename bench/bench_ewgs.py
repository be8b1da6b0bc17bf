"""The EWGS quantiser of a QAT layer, forward and backward, as one op (ops.ewgs_quantize) beside
the same quantiser as torch ops (ewgs.ewgs_quantize_reference), in one run: median milliseconds
over --repeats, and the bytes the op must move over the copy bandwidth measured in the same run.

    python bench/bench_ewgs.py [--threads 1] [--out bench/results/ewgs/ewgs.json]

Shapes: the activations of ResNet-20's three stages at batch 64 (16x32x32, 32x16x16, 64x8x8) and
one 4-bit weight. The op's floor: forward reads x and writes q, backward reads grad and x and
writes grad_x, 5 x 4 bytes per element; the copy (x.clone(), 8 bytes per element) gives the
bandwidth.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gwkcuda import ewgs, ops  # noqa: E402
from gwkcuda.cliutil import format_table, write_result  # noqa: E402
from gwkcuda.microbench import machine, median_ms  # noqa: E402

SHAPES = [(64, 16, 32, 32), (64, 32, 16, 16), (64, 64, 8, 8), (64, 64, 3, 3)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    lower = torch.tensor(-1.0, requires_grad=True)
    upper = torch.tensor(2.0, requires_grad=True)
    delta = torch.tensor(0.1)
    rows, table = [], []
    for shape in SHAPES:
        x = torch.randn(shape, generator=gen).requires_grad_(True)
        grad = torch.randn(shape, generator=gen)

        def step(fused):
            x.grad = None  # autograd then takes grad_x as it is, no accumulation pass
            q = (ops.ewgs_quantize(x, lower, upper, 16, delta) if fused
                 else ewgs.ewgs_quantize_reference(x, lower, upper, 4, delta))
            q.backward(grad)

        op = median_ms(lambda: step(True), args.repeats)
        torch_ops = median_ms(lambda: step(False), args.repeats)
        copy = median_ms(lambda: x.detach().clone(), args.repeats)
        floor = copy * 20 / 8  # 20 bytes per element at the copy's 8 bytes per element
        rows.append({"shape": list(shape), "op_ms": op, "torch_ops_ms": torch_ops, "copy_ms": copy, "floor_ms": floor})
        table.append([str(list(shape)), f"{op:.2f}", f"{torch_ops:.2f}", f"{torch_ops / op:.1f}x", f"{floor:.2f}",
                      f"{floor / op:.0%}"])
    print(f"{machine()}; forward + backward, median of {args.repeats}\n")
    print(format_table(["x", "op ms", "torch ops ms", "op speed-up", "floor ms (copy bandwidth)", "op of floor"], table))
    if args.out:
        write_result(args.out, {"machine": machine(), "threads": args.threads, "repeats": args.repeats, "rows": rows})


if __name__ == "__main__":
    main()

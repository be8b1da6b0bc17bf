"""What decoding PQ recurrent matrices once per forward costs, against the recurrence itself: the
DS2 model's GRU (3 bidirectional layers, 96 units, 528 inputs) at d=2, k=16, on batches of
utterance-length inputs, dense and product-quantised, in one run.

    python bench/bench_recurrent.py --out bench/results/recurrent/decode.json
    python bench/bench_recurrent.py --table bench/results/recurrent/decode.json   # Markdown

Decoding reads the codes and writes each matrix once (bytes: 4 per weight written); the GRU's
forward reads every matrix once per frame. So the share of decoding should fall as 1 / T.
"""
import argparse
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gwkcuda.cliutil import write_result  # noqa: E402
from gwkcuda.gwk import GWKConfig, gwk_compress  # noqa: E402
from gwkcuda.microbench import machine, median_ms  # noqa: E402
from gwkcuda.recurrent import _decode  # noqa: E402


def table(path) -> str:
    import json

    with open(path) as f:
        d = json.load(f)
    lines = [f"{d['machine']}; {d['matrices']} matrices, {d['weights']:,} weights", "",
             "| batch | frames | dense GRU, ms | PQ GRU (decode + GRU), ms | decode, ms | decode share | PQ / dense |",
             "|---|---|---|---|---|---|---|"]
    for r in d["rows"]:
        lines.append(f"| {r['batch']} | {r['frames']} | {r['dense_ms']:.2f} | {r['pq_ms']:.2f} | {r['decode_ms']:.2f} | "
                     f"{100 * r['decode_share']:.1f}% | {r['pq_over_dense']:.2f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench/results/recurrent/decode.json")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--table", default=None, help="print the Markdown table of a result file and stop")
    args = ap.parse_args()
    if args.table:
        print(table(args.table))
        return
    torch.manual_seed(0)
    dense = nn.Sequential(nn.GRU(528, 96, num_layers=3, bidirectional=True, batch_first=True)).eval()
    pq = gwk_compress(nn.Sequential(nn.GRU(528, 96, num_layers=3, bidirectional=True, batch_first=True)),
                      GWKConfig(d=2, k=16, importance="uniform", iters=5))[0].eval()
    gru = pq[0]
    weights = sum(torch.Size(shape).numel() for shape, _ in gru.pq_configs.values())
    rows = []
    with torch.no_grad():
        decode_ms = median_ms(lambda: [_decode(gru, local) for local in gru.pq_configs], args.repeats)
        for batch, frames in ((1, 50), (1, 100), (32, 50), (32, 100), (32, 200)):
            x = torch.randn(batch, frames, 528)
            d_ms = median_ms(lambda: dense(x), args.repeats)
            q_ms = median_ms(lambda: pq(x), args.repeats)
            rows.append({"batch": batch, "frames": frames, "dense_ms": d_ms, "pq_ms": q_ms,
                         "decode_ms": decode_ms, "decode_share": decode_ms / q_ms, "pq_over_dense": q_ms / d_ms})
            print(rows[-1], flush=True)
    out = {"matrices": len(gru.pq_configs), "weights": weights, "decode_bytes_written": 4 * weights,
           "rows": rows, "machine": machine()}
    write_result(args.out, out)


if __name__ == "__main__":
    main()

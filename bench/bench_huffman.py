"""Decoding Bin & Quant indices: canonical Huffman (table-driven C++ decoder) next to the same
indices as a bit array (unpack_bits) and the bit-by-bit Python reference decoder, in one run.

    python bench/bench_huffman.py [--weights 8000000] [--out bench/results/huffman/huffman.json]

Indices: `--weights` draws from a skewed 16-bin distribution (the shape of Bin & Quant's bins,
whose middle bins hold most weights), Huffman-coded as gwkcuda.model_file stores them. Throughput
is coded-stream bytes per second (the issue's unit) and symbols per second; the decoder is one
thread by nature (each code word starts where the previous one ended). The Python reference runs on
the first 1/100 of the stream.
"""
import argparse
import os
import sys

import torch

P16 = [0.3, 0.2, 0.15, 0.1, 0.08, 0.06, 0.04, 0.03, 0.02, 0.01, 0.004, 0.003, 0.001, 0.001, 0.0005, 0.0005]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=int, default=8_000_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from gwkcuda import huffman, ops, reference
    from gwkcuda.cliutil import write_result
    from gwkcuda.microbench import machine, median_ms

    gen = torch.Generator().manual_seed(0)
    sym = torch.multinomial(torch.tensor(P16), args.weights, replacement=True, generator=gen)
    lengths = huffman.code_lengths(torch.bincount(sym, minlength=16).tolist())
    stream = huffman.encode(sym, lengths)
    packed = ops.pack_bits(sym.to(torch.int32), 4)
    assert torch.equal(huffman.decode(stream, lengths, sym.numel()), sym)
    n_ref = sym.numel() // 100
    ref_stream = huffman.encode(sym[:n_ref], lengths)
    rows = [
        ("Huffman, table-driven C++ (gwkcuda)", stream.numel(), median_ms(lambda: huffman.decode(stream, lengths, sym.numel()), args.repeats) / 1e3, sym.numel()),
        ("bit array at 4 bits (unpack_bits)", packed.numel(), median_ms(lambda: ops.unpack_bits(packed, 4, sym.numel()), args.repeats) / 1e3, sym.numel()),
        ("Huffman, bit-by-bit Python (reference)", ref_stream.numel(), median_ms(lambda: reference.huffman_decode(ref_stream, lengths, n_ref), 1) / 1e3, n_ref),
    ]
    print(f"Machine: {machine()}; {sym.numel()} indices, 16 bins, Huffman {8 * stream.numel() / sym.numel():.2f} "
          f"bits/index (bit array 4)\n")
    print("| decoder | stream bytes | median ms | stream MB/s | M indices/s |")
    print("|---|---:|---:|---:|---:|")
    out = []
    for name, nbytes, seconds, count in rows:
        out.append({"decoder": name, "stream_bytes": nbytes, "seconds": seconds, "indices": count,
                    "stream_mb_per_s": nbytes / seconds / 1e6, "indices_per_s": count / seconds})
        print(f"| {name} | {nbytes} | {1e3 * seconds:.1f} | {nbytes / seconds / 1e6:.1f} | {count / seconds / 1e6:.1f} |")
    if args.out:
        write_result(args.out, {"machine": machine(), "rows": out})


if __name__ == "__main__":
    main()

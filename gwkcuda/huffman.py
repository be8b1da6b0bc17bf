"""Canonical Huffman coding of small-alphabet index streams (B&Q++ storage).

Bits are written into the same LSB-first stream as pack_bits: bit i of the stream is bit i % 8 of
byte i // 8; each code word is written most significant bit first. A canonical code is fully
described by its code lengths per symbol, which is all that needs storing beside the stream.
"""
import heapq

import numpy as np
import torch


MAX_LENGTH = 48  # longest code word the decoder takes (csrc/cpu/huffman.cpp)


def code_lengths(counts) -> list:
    """Huffman code lengths (bits) per symbol from symbol counts; unused symbols get 0, and a
    single used symbol gets length 1."""
    counts = [int(c) for c in counts]
    used = [s for s, c in enumerate(counts) if c > 0]
    lengths = [0] * len(counts)
    if len(used) == 1:
        lengths[used[0]] = 1
        return lengths
    heap = [(counts[s], i, [s]) for i, s in enumerate(used)]
    heapq.heapify(heap)
    tie = len(heap)
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(heap, (c1 + c2, tie, s1 + s2))
        tie += 1
    return lengths


def canonical_codes(lengths) -> list:
    """The canonical code (an int, MSB first) of each symbol: by (length, symbol) order."""
    codes = [0] * len(lengths)
    code, prev = 0, 0
    for length, s in sorted((l, s) for s, l in enumerate(lengths) if l > 0):
        code <<= length - prev
        codes[s] = code
        code += 1
        prev = length
    return codes


def encode(symbols: torch.Tensor, lengths) -> torch.Tensor:
    """Encodes int symbols (any shape, read flat) -> uint8 stream of ceil(total bits / 8) bytes."""
    sym = symbols.reshape(-1).cpu().numpy().astype(np.int64)
    lens = np.asarray(lengths, dtype=np.int64)
    codes = np.asarray(canonical_codes(lengths), dtype=np.int64)
    if sym.size and lens[sym].min() == 0:
        raise ValueError("huffman.encode: a symbol has no code (its count was zero)")
    sl, sc = lens[sym], codes[sym]
    start = np.concatenate([[0], np.cumsum(sl)[:-1]]) if sym.size else np.zeros(0, np.int64)
    total = int(sl.sum())
    bits = np.zeros(total, dtype=np.uint8)
    for b in range(int(lens.max()) if lens.size else 0):  # bit b of each code word, MSB first
        has = sl > b
        bits[start[has] + b] = (sc[has] >> (sl[has] - 1 - b)) & 1
    return torch.from_numpy(np.packbits(bits, bitorder="little"))


def decode(stream: torch.Tensor, lengths, numel: int) -> torch.Tensor:
    """Decodes ``numel`` symbols from a stream written by :func:`encode` -> int32 [numel].

    Table-driven, in C++ (``torch.ops.gwkcuda.huffman_decode``); lengths must form a prefix code
    (Kraft's inequality) of words at most MAX_LENGTH bits long, else ValueError, as for a stream
    that ends early or holds a bit pattern no word matches."""
    from . import ops

    try:
        return ops.huffman_decode(stream.cpu(), torch.as_tensor(list(lengths), dtype=torch.int64), numel)
    except RuntimeError as exc:
        raise ValueError(str(exc).splitlines()[0]) from None


def encoded_bits(counts, lengths) -> int:
    return int(sum(int(c) * int(l) for c, l in zip(counts, lengths)))

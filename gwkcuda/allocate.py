"""Per-layer choices within a byte budget: the multiple-choice knapsack behind per-layer (d, k).

Each layer offers options (bytes, distortion); :func:`min_distortion` picks one per layer so that
the bytes sum to at most the budget and the distortions sum to the least possible, by dynamic
programming over the budget (exact when the bytes are counted in units of one byte; larger models
count them in coarser units, rounded up, so the budget still holds).
"""
import math
from typing import Dict, Sequence, Tuple

import numpy as np

# Cells of the dynamic programme's table (layers x budget units) above which bytes are counted in
# coarser units: the table stays a few tens of MB for any model.
MAX_CELLS = 1 << 25


def min_distortion(options: Dict[str, Sequence[Tuple[int, float]]], budget: int) -> Dict[str, int]:
    """name -> index of the chosen option, one per layer, with sum of bytes <= ``budget`` and the
    least sum of distortions.

    Args:
        options: name -> [(bytes, distortion), ...], at least one option per layer; bytes an int
            >= 0, distortion a finite number.
        budget: bytes for all layers together (an int >= 0).
    Raises:
        ValueError: on malformed options, or when even the smallest option of every layer does not
            fit (the message gives the smallest total)."""
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 0:
        raise ValueError(f"min_distortion: expected budget an int >= 0 (bytes), got {budget!r}")
    for name, opts in options.items():
        if not opts:
            raise ValueError(f"min_distortion: expected at least one option for layer {name!r}, got none")
        for b, dist in opts:
            if not isinstance(b, int) or isinstance(b, bool) or b < 0 or not math.isfinite(dist):
                raise ValueError(f"min_distortion: expected options (bytes an int >= 0, finite distortion) "
                                 f"for layer {name!r}, got ({b!r}, {dist!r})")
    smallest = sum(min(b for b, _ in opts) for opts in options.values())
    if smallest > budget:
        raise ValueError(f"min_distortion: the budget of {budget:,} bytes is below the smallest choice, "
                         f"{smallest:,} bytes (every layer at its smallest option)")
    names = list(options)
    unit = max(1, math.ceil(len(names) * (budget + 1) / MAX_CELLS))
    cells = budget // unit + 1
    best = np.zeros(cells)  # best[c]: least distortion of the layers so far within c units
    picks = np.empty((len(names), cells), dtype=np.int16)
    for i, name in enumerate(names):
        new = np.full(cells, np.inf)
        pick = np.zeros(cells, dtype=np.int16)
        for j, (b, dist) in enumerate(options[name]):
            u = -(-b // unit)  # rounded up: the chosen bytes never exceed the budget
            if u >= cells:
                continue
            cand = np.full(cells, np.inf)
            cand[u:] = best[:cells - u] + dist
            better = cand < new
            new[better], pick[better] = cand[better], j
        best, picks[i] = new, pick
    if not np.isfinite(best[-1]):  # coarse units rounded the smallest total over the budget
        raise ValueError(f"min_distortion: no choice fits {budget:,} bytes counted in units of {unit} bytes "
                         f"(the smallest total is {smallest:,} bytes)")
    chosen, c = {}, cells - 1
    for i in range(len(names) - 1, -1, -1):
        j = int(picks[i, c])
        chosen[names[i]] = j
        c -= -(-options[names[i]][j][0] // unit)
    return {n: chosen[n] for n in names}


def pq_layer_bytes(rows: int, row_length: int, d: int, k: int, codebook_bits: int, groups: int = 1) -> int:
    """Bytes a product-quantised layer stores: codes packed at ceil(log2 k) bits (whole bytes) and
    ``groups`` codebooks of k x d entries at ``codebook_bits`` each."""
    index_bits = max(1, math.ceil(math.log2(k)))
    return -(-rows * (row_length // d) * index_bits // 8) + -(-groups * k * d * codebook_bits // 8)

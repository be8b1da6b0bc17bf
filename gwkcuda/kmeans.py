"""Batched (gradient-)weighted k-means: B independent problems in one call, on any device.

GWK clusters each layer's sub-vectors with every point weighted by its importance (accumulated |g|
or g^2), so that centroids are pulled toward the weights the loss is most sensitive to:
    c_j = sum_{i in cluster j} w_i x_i / sum_{i in cluster j} w_i.
The heavy lifting is one fused op per iteration, ``torch.ops.gwkcuda.gwk_lloyd_step``.

Problems of different sizes (layers of different shapes) share one call by padding: stack them
with :func:`stack_problems`, which pads every problem to the longest with zero-weight points and
returns each problem's length; pass those as ``lengths`` and the padding is ignored (never seeds a
centroid, never moves one, never counts in the inertia, and gets label -1).

Empty clusters: a cluster left with zero total weight after an iteration is re-seeded by splitting
the heaviest cluster h of its problem (ties: lowest index): with e = 1e-4 * s * r, where s is the
root-mean-square spread of the problem's points and r a standard normal vector drawn from a
generator seeded with (seed, iteration), the empty centroid becomes c_h + e and c_h becomes
c_h - e; h's weight is then halved between the two before the next empty cluster is served.
The rule is deterministic for a given seed.
"""
import math
import warnings
from typing import NamedTuple, Optional, Sequence, Union

import torch

from . import ops
from .progress import progress

SPLIT_SCALE = 1e-4
_CHUNK = 1 << 16  # points per slice of the elementwise work: temporaries of [B, 65536, d], not [B, N, d]
KMEANSPP_EXACT = 32  # k-means++ draws one centroid at a time up to here, then in growing batches


class KMeansResult(NamedTuple):
    """centroids [k, d] (or [B, k, d]); labels int64 (or int32, see weighted_kmeans) [N] (or
    [B, N]; -1 on padding); inertia:
    sum of weight * squared distance to the final centroids, a 0-d tensor (or [B]); n_iter: the
    Lloyd iterations run (the largest over the batch)."""
    centroids: torch.Tensor
    labels: torch.Tensor
    inertia: torch.Tensor
    n_iter: int


def stack_problems(xs: Sequence[torch.Tensor], weights: Optional[Sequence[torch.Tensor]] = None):
    """Pads problems of different sizes into one batch.

    Args:
        xs: B tensors [N_b, d] (same d, dtype and device).
        weights: None or B tensors [N_b].
    Returns:
        (x [B, max N_b, d], weight [B, max N_b] or None, lengths int64 [B]); padding is zeros.
    """
    if len(xs) == 0:
        raise ValueError("stack_problems: expected at least one problem, got none")
    d = xs[0].shape[-1]
    for i, t in enumerate(xs):
        if t.dim() != 2 or t.shape[1] != d:
            raise ValueError(f"stack_problems: expected every problem of shape [N, {d}], got "
                             f"{tuple(t.shape)} for problem {i}")
    lengths = torch.tensor([t.shape[0] for t in xs], dtype=torch.int64)
    n_max = int(lengths.max())
    x = xs[0].new_zeros(len(xs), n_max, d)
    for i, t in enumerate(xs):
        x[i, : t.shape[0]] = t
    w = None
    if weights is not None:
        if len(weights) != len(xs):
            raise ValueError(f"stack_problems: expected {len(xs)} weight tensors, got {len(weights)}")
        w = x.new_zeros(len(xs), n_max, dtype=weights[0].dtype)
        for i, (t, wt) in enumerate(zip(xs, weights)):
            if wt.shape != (t.shape[0],):
                raise ValueError(f"stack_problems: expected weight [{t.shape[0]}] for problem {i}, "
                                 f"got {tuple(wt.shape)}")
            w[i, : t.shape[0]] = wt
    return x, w, lengths


def weighted_kmeans(x: torch.Tensor, weight: Optional[torch.Tensor] = None, *, k: int,
                    iters: int = 50, tol: float = 1e-4,
                    init: Union[str, torch.Tensor] = "kmeans++", seed: int = 0,
                    lengths: Optional[Union[torch.Tensor, Sequence[int]]] = None,
                    show_progress: bool = False, labels_dtype: torch.dtype = torch.int64,
                    algorithm: str = "auto") -> KMeansResult:
    """Weighted k-means (Lloyd) of one problem or a batch of B problems.

    Args:
        x: points [N, d] or [B, N, d]; float32/float64 (float16/bfloat16 computed in float32).
        weight: importances [N] or [B, N] (|g|, g^2, ...), finite and >= 0; None means all 1.
            A problem whose weights are all zero is clustered with uniform weights (with a warning).
        k: clusters per problem, 1 <= k <= N (the problem's length when ``lengths`` is given).
        iters: the most Lloyd iterations.
        tol: stop once every problem's centroids moved by at most tol * (mean per-coordinate
            variance of its points) in squared Frobenius norm (scikit-learn's rule); 0 runs to a
            fixed point or ``iters``.
        init: "kmeans++" (weighted k-means++ seeding) or initial centroids [k, d] / [B, k, d].
        seed: seeds k-means++ and the empty-cluster rule.
        lengths: per-problem lengths [B] when problems are padded (see :func:`stack_problems`).
        show_progress: a progress bar over the Lloyd iterations.
        labels_dtype: torch.int64, or torch.int32 to halve the largest work array (labels are
            the k-means' only array of a layer's size besides x and weight).
        algorithm: how a Lloyd iteration is computed, never what it computes: "lloyd" (a pass
            over the points, O(N k d)); "sorted" (d = 1 only: the points sorted once, then
            O(k log N) per iteration, ops.gwk_lloyd_step_sorted; 11 more bytes per point); "auto"
            (the default): "sorted" for scalar points, else "lloyd".
    Returns:
        KMeansResult(centroids, labels (in labels_dtype), inertia, n_iter); batch dimension as in x.
    """
    batched = _check_x(x)
    xb = x if batched else x.unsqueeze(0)
    B, N, d = xb.shape
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    valid = _valid_mask(lengths, B, N, x.device)  # None without padding: no point-sized mask
    _check_k(k, N if valid is None else int(valid.sum(1).min()))
    if not isinstance(iters, int) or iters < 0:
        raise ValueError(f"weighted_kmeans: expected iters an int >= 0, got {iters!r}")
    if not tol >= 0:
        raise ValueError(f"weighted_kmeans: expected tol >= 0, got {tol!r}")
    padded = valid is not None
    _check_points(xb, valid, acc, batched)
    if padded:  # padding may hold anything (NaN too): zeros of weight zero never move a centroid
        xb = torch.where(valid[..., None].to(x.device), xb, torch.zeros((), dtype=xb.dtype, device=x.device))
    w = _effective_weight(weight, batched, B, N, valid, acc, x.device)

    if isinstance(init, str):
        if init != "kmeans++":
            raise ValueError(f"weighted_kmeans: expected init 'kmeans++' or a tensor, got {init!r}")
        centroids = kmeanspp_init(xb, w, k, seed)
    else:
        centroids = _check_init(init, batched, B, k, d).to(device=x.device, dtype=acc).contiguous()

    variance = _mean_variance(xb.to(acc), valid)
    thresholds = tol * variance
    scale = torch.where(variance > 0, variance.sqrt(), torch.ones_like(variance)).cpu()
    if labels_dtype not in (torch.int64, torch.int32):
        raise ValueError(f"weighted_kmeans: expected labels_dtype torch.int64 or torch.int32, got {labels_dtype}")
    labels = torch.empty(B, N, dtype=labels_dtype, device=x.device)  # reused by every iteration
    if algorithm not in ("auto", "lloyd", "sorted"):
        raise ValueError(f"weighted_kmeans: expected algorithm 'auto', 'lloyd' or 'sorted', got {algorithm!r}")
    if algorithm == "sorted" and d != 1:
        raise ValueError(f"weighted_kmeans: algorithm 'sorted' clusters scalar points (d = 1), got d = {d}")
    if d == 1 and algorithm != "lloyd":
        # Sorted once, each iteration is O(k log N) per problem instead of O(N k); the same
        # assignments and centroids (to float rounding of the sums).
        w = w.contiguous()
        state = ops.kmeans1d_sort(xb[..., 0].to(acc), w)
        def step(c):
            return ops.gwk_lloyd_step_sorted(state, w, c)

        def final(c):
            return ops.kmeans1d_sorted_assign(state, w, c, labels)
    else:  # w was checked above: the steps skip their check (on CUDA, a host sync each)
        def step(c):
            new, _, cluster_weight, _ = ops.gwk_lloyd_step(xb, w, c, labels_out=labels, check_weights=False)
            return new, cluster_weight

        def final(c):  # one more step for its labels and inertia (of c): cheaper than kmeans_assign
            return ops.gwk_lloyd_step(xb, w, c, labels_out=labels, check_weights=False)[3]
    n_iter = 0
    for it in progress(range(iters), show_progress, desc=f"k-means ({B} x {N} x {d}, k={k})", unit="it", leave=False):
        new, cluster_weight = step(centroids)
        shift = ((new - centroids) ** 2).sum((1, 2))
        # One read-back per iteration: whether a cluster emptied and whether the centroids settled.
        any_empty, converged = torch.stack([(cluster_weight <= 0).any(), (shift <= thresholds).all()]).tolist()
        if any_empty:  # rare: split, then measure the shift of the split centroids
            _split_empty_clusters(new, cluster_weight, scale, seed, it)
            converged = bool((((new - centroids) ** 2).sum((1, 2)) <= thresholds).all())
        centroids = new
        n_iter = it + 1
        if converged:
            break
    inertia = final(centroids)
    if padded:
        labels.masked_fill_(~valid.to(x.device), -1)
    if not batched:
        return KMeansResult(centroids[0], labels[0], inertia[0], n_iter)
    return KMeansResult(centroids, labels, inertia, n_iter)


EXACT_1D_MAX_SPLITS = 1 << 24  # per problem: the exact solver's traced splits, k * (N + 1) int32 (64 MiB)


def optimal_kmeans_1d(x: torch.Tensor, weight: Optional[torch.Tensor] = None, *, k: int,
                      lengths: Optional[Union[torch.Tensor, Sequence[int]]] = None) -> KMeansResult:
    """The exact weighted k-means of scalar points: the clustering of least weighted squared error
    (not a local optimum: no seeding, no iterations, no seed dependence), by dynamic programming
    over the sorted points (``torch.ops.gwkcuda.kmeans1d_optimal``; O(k N log N) after the sort).

    Args:
        x: points [N, 1] or [B, N, 1] (or [N] / [B, N]); float, finite.
        weight: importances [N] or [B, N], finite and >= 0; None means all 1. A problem whose
            weights are all zero is clustered with uniform weights (with a warning), as by
            :func:`weighted_kmeans`.
        k: clusters per problem, 1 <= k <= N (the problem's length when ``lengths`` is given).
        lengths: per-problem lengths [B] of padded problems (see :func:`stack_problems`).
    Returns:
        KMeansResult(centroids [k, 1] (or [B, k, 1]) in ascending order, labels int64 (-1 on
        padding), inertia, n_iter=0), on x's device (solved on the CPU).
    """
    if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
        raise ValueError(f"optimal_kmeans_1d: expected a floating-point tensor, got {type(x).__name__}")
    points = x.squeeze(-1) if x.dim() in (2, 3) and x.shape[-1] == 1 else x
    if points.dim() not in (1, 2):
        raise ValueError(f"optimal_kmeans_1d: expected x [N, 1], [B, N, 1], [N] or [B, N], got {tuple(x.shape)}")
    batched = points.dim() == 2
    xb = (points if batched else points.unsqueeze(0)).cpu()
    B, N = xb.shape
    valid = _valid_mask(lengths, B, N, "cpu")
    _check_k(k, N if valid is None else int(valid.sum(1).min()))
    if weight is not None and tuple(weight.shape) != tuple(points.shape):
        raise ValueError(f"optimal_kmeans_1d: expected weight of shape {list(points.shape)}, got "
                         f"{tuple(weight.shape)}")
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    w = None if weight is None else weight.cpu()
    w = _effective_weight(w, batched, B, N, valid, acc, torch.device("cpu"))
    # Each problem on its own points (padding never takes a cluster), the problems in parallel.
    counts = None if valid is None else valid.sum(1)
    centroids, labels, inertia = ops.kmeans1d_optimal(xb, w, k, counts)
    centroids, labels, inertia = (t.to(x.device) for t in (centroids.unsqueeze(-1), labels, inertia))
    if not batched:
        return KMeansResult(centroids[0], labels[0], inertia[0], 0)
    return KMeansResult(centroids, labels, inertia, 0)


def cluster(x: torch.Tensor, weight: Optional[torch.Tensor] = None, *, k: int, iters: int = 50, seed: int = 0,
            lengths=None, show_progress: bool = False, labels_dtype: torch.dtype = torch.int64,
            init: Optional[torch.Tensor] = None) -> KMeansResult:
    """The clustering the pipelines use: exact (:func:`optimal_kmeans_1d`) for scalar points
    whose split table fits EXACT_1D_MAX_SPLITS, else :func:`weighted_kmeans` (Lloyd from
    k-means++, or from ``init`` [B, k, d] when given; ``iters`` and ``seed`` apply). Same
    arguments and result as weighted_kmeans."""
    if x.shape[-1] == 1 and k * (x.shape[-2] + 1) <= EXACT_1D_MAX_SPLITS:
        r = optimal_kmeans_1d(x, weight, k=k, lengths=lengths)
        return r._replace(labels=r.labels.to(labels_dtype))
    return weighted_kmeans(x, weight, k=k, iters=iters, seed=seed, lengths=lengths, show_progress=show_progress,
                           labels_dtype=labels_dtype, init="kmeans++" if init is None else init)


def kmeanspp_batches(k: int):
    """The batch sizes of :func:`kmeanspp_init`: one centroid at a time up to KMEANSPP_EXACT, then
    batches of j // (KMEANSPP_EXACT / 2) once j centroids are chosen (about 32 + 16 ln(k / 32)
    rounds in all: 46 for k = 64, 93 for k = 1024, 162 for k = 65536)."""
    sizes, j = [], 0
    while j < k:
        m = min(k - j, max(1, j // (KMEANSPP_EXACT // 2)))
        sizes.append(m)
        j += m
    return sizes


def kmeanspp_init(x: torch.Tensor, weight: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """Weighted k-means++ seeding of B problems at once, in batches of centroids.

    The first centroid is a point drawn with probability proportional to its weight; each next
    one a point drawn with probability proportional to weight * squared distance to the nearest
    centroid chosen so far (proportional to weight alone if every weighted point is already a
    centroid). Up to KMEANSPP_EXACT (32) centroids this is exactly k-means++, one draw at a time;
    beyond, the next m = j // 16 centroids (j chosen so far) are drawn together from the same
    distribution, stratified (draw i of m falls in the i-th m-quantile of the probability mass),
    so that seeding costs one distance update per batch instead of one per centroid: the same
    O(N k d) distance work in O(log k) rounds of ops rather than k. The uniforms are drawn on
    the CPU from a generator seeded with ``seed``, so the picks do not depend on the device.
    x [B, N, d], weight [B, N] (zero on padding) -> centroids [B, k, d].
    """
    B, N, d = x.shape
    acc = weight.dtype
    gen = torch.Generator().manual_seed(seed)
    xs = x.to(acc)
    rows = torch.arange(B, device=x.device)[:, None]
    centroids = xs.new_empty(B, k, d)
    nearest = xs.new_full((B, N), float("inf"))  # updated in place: the only point-sized array besides x and weight
    j = 0
    for m in kmeanspp_batches(k):
        idx = _sample(weight, nearest if j else None, gen, m)
        centroids[:, j:j + m] = xs[rows, idx]
        _update_nearest(nearest, xs, centroids[:, j:j + m])
        j += m
    return centroids


def _update_nearest(nearest: torch.Tensor, xs: torch.Tensor, c: torch.Tensor) -> None:
    """nearest [B, N] = min(nearest, squared distance to the nearest of c [B, m, d]), in place, a
    slice at a time (the distances of the k-means ops, csrc/core/kmeans.h)."""
    for start in range(0, xs.shape[1], _CHUNK):
        near = nearest[:, start:start + _CHUNK]
        torch.minimum(near, ops.kmeans_assign(xs[:, start:start + _CHUNK], c)[1], out=near)


def _sample(weight: torch.Tensor, nearest: Optional[torch.Tensor], gen: torch.Generator,
            m: int = 1) -> torch.Tensor:
    """m indices per row [B, m], drawn with probability proportional to p = weight * nearest
    ([B, N], non-negative), or to weight alone where nearest is None or p sums to zero in that
    row; stratified: draw i lands in [i, i + 1) / m of the row's cumulative mass.

    Inverse-CDF sampling (no 2**24 category limit; zero-probability entries never drawn) in two
    stages, so that no [B, N] temporary is made: the float64 sums of slices of _CHUNK points pick
    the slice, then the cumulative sum inside that slice picks the point."""
    B, N = weight.shape
    starts = range(0, N, _CHUNK)
    # One float64 scratch slice for every chunk: a fresh temporary per chunk leaves the C heap
    # fragmented (measured: about one point-sized array of resident memory that is never returned).
    scratch = torch.empty(B, min(N, _CHUNK), dtype=torch.float64, device=weight.device)
    def probabilities(s, rows):
        """p of slice s into the scratch: weight, times nearest in the rows [B, 1] set in ``rows``."""
        part = scratch[:, :min(_CHUNK, N - s)]
        part.copy_(weight[:, s:s + _CHUNK])
        if nearest is not None:
            part.mul_(torch.where(rows, nearest[:, s:s + _CHUNK], 1.0))
        return part

    no_rows = torch.zeros(B, 1, dtype=torch.bool, device=weight.device)
    use_nearest = no_rows
    sums = torch.stack([probabilities(s, no_rows).sum(1) for s in starts], 1)
    if nearest is not None:
        product = torch.stack([probabilities(s, ~no_rows).sum(1) for s in starts], 1)
        use_nearest = product.sum(1, keepdim=True) > 0
        sums = torch.where(use_nearest, product, sums)
    cdf = sums.cumsum(1)
    u = (torch.arange(m, dtype=torch.float64) + torch.rand(B, m, generator=gen, dtype=torch.float64)) / m
    u = u.to(weight.device) * cdf[:, -1:]
    chunk = torch.searchsorted(cdf, u, right=True).clamp_max(len(starts) - 1)
    u = u - torch.where(chunk > 0, cdf.gather(1, (chunk - 1).clamp_min(0)), torch.zeros_like(u))
    picks = torch.zeros(B, m, dtype=torch.int64, device=weight.device)
    for c, s in enumerate(starts):
        here = chunk == c
        if len(starts) > 1 and not bool(here.any()):
            continue
        local = probabilities(s, use_nearest).cumsum(1)
        last = local[:, -1:] * (1 - 2.0 ** -52)  # rounding never lands past the last positive entry
        pick = torch.searchsorted(local, torch.minimum(u, last), right=True).clamp_max(local.shape[1] - 1)
        picks = torch.where(here, pick + s, picks)
    return picks


def _split_empty_clusters(centroids, cluster_weight, scale, seed, iteration):
    """The empty-cluster rule of the module docstring, applied in place (called once some
    cluster is empty: the caller has read that back already)."""
    empty = cluster_weight <= 0
    gen = torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + iteration)
    weight = cluster_weight.clone()
    for b, j in empty.nonzero().tolist():
        h = int(torch.argmax(weight[b]))  # first maximum: the lowest index wins a tie
        if weight[b, h] <= 0:
            continue  # nothing to split: every point of this problem has weight zero
        e = SPLIT_SCALE * scale[b] * torch.randn(centroids.shape[2], generator=gen, dtype=torch.float64)
        e = e.to(device=centroids.device, dtype=centroids.dtype)
        centroids[b, j] = centroids[b, h] + e
        centroids[b, h] = centroids[b, h] - e
        weight[b, h] = weight[b, j] = weight[b, h] / 2


def _check_x(x) -> bool:
    if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3):
        raise ValueError("weighted_kmeans: expected x of shape [N, d] or [B, N, d], got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"weighted_kmeans: expected floating-point x, got {x.dtype}")
    if x.shape[-1] < 1 or x.shape[-2] < 1:
        raise ValueError(f"weighted_kmeans: expected at least one point of length >= 1, got x of "
                         f"shape {tuple(x.shape)}")
    return x.dim() == 3


def _check_k(k, n):
    if not isinstance(k, int) or isinstance(k, bool) or k < 1 or k > n:
        raise ValueError(f"weighted_kmeans: expected k an int in 1..N = 1..{n} (N: points per "
                         f"problem), got {k!r}")


def _valid_mask(lengths, B, N, device):
    """[B, N] bool, False on padding; None when there is no padding (lengths None)."""
    if lengths is None:
        return None
    lengths = torch.as_tensor(lengths, dtype=torch.int64)
    if lengths.shape != (B,) or bool((lengths < 1).any()) or bool((lengths > N).any()):
        raise ValueError(f"weighted_kmeans: expected lengths [B] = [{B}] with values in 1..{N}, got "
                         f"{lengths.tolist()}")
    return torch.arange(N)[None, :] < lengths[:, None].cpu()


def max_magnitude(dtype: torch.dtype, d: int) -> float:
    """The largest |coordinate| whose squared distances cannot overflow: points within [-M, M]^d
    are at most d * (2M)^2 apart, which must stay below the accumulation dtype's largest value
    (float32: M = 9.2e18 / sqrt(d); float64: 6.7e153 / sqrt(d))."""
    return math.sqrt(torch.finfo(dtype).max / (4 * d))


def _check_points(x, valid, acc, batched) -> None:
    """Every (valid) coordinate finite and within max_magnitude(acc, d), checked a slice at a
    time with one min/max pass (no cast copy); the message names the first offender. Points near
    float32's limit (say 3e38) would otherwise give inf distances and centroids of -inf and inf:
    they are refused, and the message says to pass float64 points instead."""
    if valid is not None:  # padding may hold anything, finite or not
        x = torch.where(valid[..., None].to(x.device), x, torch.zeros((), dtype=x.dtype, device=x.device))
    bound = max_magnitude(acc, x.shape[-1])
    flat = x.reshape(-1)
    if all(bool(-bound <= lo) and bool(hi <= bound) for lo, hi in map(torch.aminmax, flat.split(16 * _CHUNK))):
        return
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = (~finite).nonzero()[0].tolist()
        raise ValueError(f"weighted_kmeans: expected finite points, got {x[tuple(bad)].item()} at "
                         f"x{bad if batched else bad[1:]}")
    bad = (x.abs() > bound).nonzero()[0].tolist()
    raise ValueError(f"weighted_kmeans: a point coordinate of {x[tuple(bad)].item():.3g} at x{bad if batched else bad[1:]} "
                     f"is too large for {str(acc).removeprefix('torch.')} distances (at most {bound:.3g} at "
                     f"d = {x.shape[-1]}); pass the points as float64")


def _effective_weight(weight, batched, B, N, valid, acc, device):
    """Weights as [B, N] in acc, zero on padding (valid: [B, N] bool, or None for no padding)."""
    if valid is not None:
        valid = valid.to(device)
    if weight is None:
        return torch.ones(B, N, dtype=acc, device=device) if valid is None else valid.to(acc)
    expected = (B, N) if batched else (N,)
    if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != expected:
        got = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weighted_kmeans: expected weight of shape {list(expected)}, got {got}")
    if weight.device != device:
        raise ValueError(f"weighted_kmeans: expected weight on {device}, got {weight.device}")
    w = (weight if batched else weight.unsqueeze(0)).to(acc)
    if valid is not None:
        w = torch.where(valid, w, torch.zeros((), dtype=acc, device=device))
    lo, hi = torch.aminmax(w)  # NaN propagates into both
    if not (bool(lo >= 0) and bool(torch.isfinite(hi))):
        idx = (~(torch.isfinite(w) & (w >= 0))).nonzero()[0].tolist()
        where = idx if batched else idx[1:]
        raise ValueError(f"weighted_kmeans: expected every weight finite and >= 0, got "
                         f"{w[tuple(idx)].item()} at weight{where}")
    dead = w.sum(1) <= 0
    if bool(dead.any()):
        problems = dead.nonzero().flatten().tolist()
        shown = ", ".join(map(str, problems[:10])) + (", ..." if len(problems) > 10 else "")
        warnings.warn(f"weighted_kmeans: every weight is zero in {len(problems)} problem(s) [{shown}]; "
                      "clustering them with uniform weights", RuntimeWarning, stacklevel=3)
        fill = dead[:, None] if valid is None else dead[:, None] & valid
        w = torch.where(fill, torch.ones((), dtype=acc, device=device), w)
    return w.contiguous()


def _check_init(init, batched, B, k, d):
    expected = (B, k, d) if batched else (k, d)
    if not isinstance(init, torch.Tensor) or tuple(init.shape) != expected:
        got = tuple(init.shape) if isinstance(init, torch.Tensor) else type(init).__name__
        raise ValueError(f"weighted_kmeans: expected init centroids of shape {list(expected)}, got {got}")
    if not bool(torch.isfinite(init).all()):
        raise ValueError("weighted_kmeans: expected finite init centroids")
    return init if batched else init.unsqueeze(0)


def _mean_variance(xs, valid):
    """Per problem [B]: the mean over coordinates of the (unweighted) variance of its points."""
    if valid is None:  # two passes: 1.5-3.5x faster than torch.var_mean over dim 1, as exact
        return (xs - xs.mean(1, keepdim=True)).square_().mean((1, 2))
    m = valid[..., None].to(xs.device, xs.dtype)
    n = m.sum(1)
    mean = (xs * m).sum(1) / n
    var = (((xs - mean[:, None]) ** 2) * m).sum(1) / n
    return var.mean(1)

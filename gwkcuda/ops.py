"""Typed Python wrappers of the torch.ops.gwkcuda ops, and their fake (meta) kernels.

The ops themselves are defined and implemented in C++ (csrc/); only what torch.compile needs is
registered here, with checks that mirror the C++ ones.
"""
from typing import NamedTuple

import torch

from . import _C  # noqa: F401  (loading the extension registers torch.ops.gwkcuda.*)
from . import ewgs_reference
from .shapes import CODE_DTYPES, MAX_BITS, accumulate_dtype, check_kmeans_shapes, packed_numel

_CODE_DTYPES = tuple(getattr(torch, name) for name in CODE_DTYPES)


def _check_int(op: str, name: str, value) -> None:
    """An int argument that fits int64, checked before it reaches C++ (where a Python int beyond
    int64 gives pybind's cast error, not ours); the ranges are checked in C++. Symbolic ints
    (torch.compile) pass through."""
    if isinstance(value, torch.SymInt):
        return
    if not isinstance(value, int) or isinstance(value, bool) or not -2**63 <= value < 2**63:
        raise ValueError(f"{op}: expected {name} an int of 64 bits, got {value!r}")


def _check_devices(op: str, first: torch.Tensor, **others) -> None:
    """Every tensor argument on ``first``'s device. Without this, a meta tensor among CPU ones
    sends the call to the fake kernel, which would hand back uninitialised CPU memory."""
    for name, t in others.items():
        torch._check(t is None or t.device == first.device,
                     lambda: f"{op}: expected {name} on {first.device} (all tensors on one device), "
                             f"got {t.device}")


def pack_bits(codes: torch.Tensor, nbits: int) -> torch.Tensor:
    """Packs integer codes into an LSB-first bit stream.

    Args:
        codes: integer tensor (uint8/int8/int16/int32/int64) of any shape, read flat; every code
            in [0, 2**nbits).
        nbits: bits per code, 1..16.
    Returns:
        uint8 tensor [ceil(codes.numel() * nbits / 8)] on codes' device. Raises on codes out of
        range (never truncates them).
    """
    _check_int("pack_bits", "nbits", nbits)
    return torch.ops.gwkcuda.pack_bits.default(codes, nbits)


def unpack_bits(packed: torch.Tensor, nbits: int, numel: int) -> torch.Tensor:
    """Unpacks the first ``numel`` codes of a stream made by :func:`pack_bits`.

    Args:
        packed: uint8 tensor with at least ceil(numel * nbits / 8) bytes (read flat).
        nbits: bits per code, 1..16.
        numel: number of codes, >= 0.
    Returns:
        int32 tensor [numel] on packed's device.
    """
    _check_int("unpack_bits", "nbits", nbits)
    _check_int("unpack_bits", "numel", numel)
    return torch.ops.gwkcuda.unpack_bits.default(packed, nbits, numel)


@torch.library.register_fake("gwkcuda::pack_bits")
def _pack_bits_fake(codes, nbits):
    torch._check(1 <= nbits <= MAX_BITS, lambda: f"pack_bits: expected nbits in 1..{MAX_BITS}, got {nbits}")
    torch._check(codes.dtype in _CODE_DTYPES,
                 lambda: f"pack_bits: expected an integer codes tensor, got {codes.dtype}")
    return codes.new_empty((packed_numel(codes.numel(), nbits),), dtype=torch.uint8)


@torch.library.register_fake("gwkcuda::unpack_bits")
def _unpack_bits_fake(packed, nbits, numel):
    torch._check(1 <= nbits <= MAX_BITS, lambda: f"unpack_bits: expected nbits in 1..{MAX_BITS}, got {nbits}")
    torch._check(numel >= 0, lambda: f"unpack_bits: expected numel >= 0, got {numel}")
    torch._check(packed.dtype == torch.uint8,
                 lambda: f"unpack_bits: expected a uint8 packed buffer, got {packed.dtype}")
    torch._check(packed.numel() >= packed_numel(numel, nbits),
                 lambda: f"unpack_bits: {numel} codes of {nbits} bits need "
                         f"{packed_numel(numel, nbits)} bytes, but the buffer holds {packed.numel()}")
    return packed.new_empty((numel,), dtype=torch.int32)


# --- k-means family ------------------------------------------------------------------------------

def kmeans_assign(x: torch.Tensor, centroids: torch.Tensor):
    """Nearest centroid of every point, B problems at once.

    Args:
        x: [B, N, d] float32/float64 (float16/bfloat16 accepted, computed in float32).
        centroids: [B, k, d], k >= 1.
    Returns:
        (labels int64 [B, N], sqdist [B, N]): the index of the nearest centroid (ties to the
        lowest index) and the squared distance to it, float32 (float64 for float64 x).
    """
    return torch.ops.gwkcuda.kmeans_assign.default(x, centroids)


def cluster_reduce(x: torch.Tensor, weight, labels: torch.Tensor, k: int):
    """Weighted segment sum over clusters.

    Args:
        x: [B, N, d] float (float16/bfloat16 accumulated in float32).
        weight: [B, N] finite, non-negative, or None (weight 1 each).
        labels: [B, N] int64/int32, each in [0, k).
        k: number of clusters.
    Returns:
        (sums [B, k, d], weight_sums [B, k]): sum of weight * x and of weight per cluster,
        accumulated in float64, returned as float32 (float64 for float64 x).
    """
    return torch.ops.gwkcuda.cluster_reduce.default(x, weight, labels, k)


def gwk_lloyd_step(x: torch.Tensor, weight, centroids: torch.Tensor, labels_out=None, check_weights=True):
    """One fused gradient-weighted Lloyd iteration (assign, then weighted mean), B problems at once.

    Args:
        x: [B, N, d] float; weight: [B, N] finite, non-negative, or None; centroids: [B, k, d].
        labels_out: optional contiguous int64 or int32 [B, N] buffer the labels are written into
            (saves an allocation per iteration when iterating; int32 halves it).
        check_weights: False skips the weight check, for a caller that has checked the weights
            once already (on CUDA the check is the step's only host sync); a bad weight then
            gives meaningless centroids instead of an error.
    Returns:
        (new_centroids [B, k, d], labels int64 [B, N], cluster_weight [B, k], inertia [B]).
        labels and inertia (sum of weight * squared distance) refer to the input centroids; a
        cluster whose total weight is zero keeps its centroid.
    """
    if labels_out is None:
        return torch.ops.gwkcuda.gwk_lloyd_step.default(x, weight, centroids, check_weights)
    new, cluster_weight, inertia = torch.ops.gwkcuda.gwk_lloyd_step_into.default(
        x, weight, centroids, labels_out, check_weights)
    return new, labels_out, cluster_weight, inertia


@torch.library.register_fake("gwkcuda::kmeans_assign")
def _kmeans_assign_fake(x, centroids):
    _check_devices("kmeans_assign", x, centroids=centroids)
    B, N, _, _ = check_kmeans_shapes(x, centroids=centroids, check=_fake_check)
    acc = accumulate_dtype(x.dtype)
    return x.new_empty((B, N), dtype=torch.int64), x.new_empty((B, N), dtype=acc)


@torch.library.register_fake("gwkcuda::cluster_reduce")
def _cluster_reduce_fake(x, weight, labels, k):
    _check_devices("cluster_reduce", x, weight=weight, labels=labels)
    B, _, d, k = check_kmeans_shapes(x, weight=weight, labels=labels, k=k, check=_fake_check)
    acc = accumulate_dtype(x.dtype)
    return x.new_empty((B, k, d), dtype=acc), x.new_empty((B, k), dtype=acc)


@torch.library.register_fake("gwkcuda::gwk_lloyd_step")
def _gwk_lloyd_step_fake(x, weight, centroids, check_weights=True):
    _check_devices("gwk_lloyd_step", x, weight=weight, centroids=centroids)
    B, N, d, k = check_kmeans_shapes(x, centroids=centroids, weight=weight, check=_fake_check)
    acc = accumulate_dtype(x.dtype)
    return (x.new_empty((B, k, d), dtype=acc), x.new_empty((B, N), dtype=torch.int64),
            x.new_empty((B, k), dtype=acc), x.new_empty((B,), dtype=acc))


@torch.library.register_fake("gwkcuda::gwk_lloyd_step_into")
def _gwk_lloyd_step_into_fake(x, weight, centroids, labels, check_weights=True):
    _check_devices("gwk_lloyd_step", x, labels=labels)
    new, _, cluster_weight, inertia = _gwk_lloyd_step_fake(x, weight, centroids)
    torch._check(labels.dtype in (torch.int64, torch.int32) and tuple(labels.shape) == tuple(x.shape[:2]),
                 lambda: f"gwk_lloyd_step: expected an int64 or int32 labels buffer of shape {list(x.shape[:2])}")
    return new, cluster_weight, inertia


def _fake_check(cond, msg):
    torch._check(cond, msg)


def kmeans1d_optimal(x: torch.Tensor, weight, k: int, lengths=None):
    """Exact weighted 1-D k-means of B problems: the clustering of least weighted squared error
    (dynamic programming over the sorted points, O(k N log N) after the sort), CPU only, the
    problems in parallel.

    Args:
        x: [B, N] float32/float64 (float16/bfloat16 computed in float32), finite.
        weight: [B, N] finite, non-negative, or None (1 each).
        k: 1 <= k <= N; k * (N + 1) <= 2**28 (the traced splits).
        lengths: None, or int64 [B]: problem b is its first lengths[b] points (k <= lengths[b] <= N),
            the rest padding.
    Returns:
        (centroids [B, k] in ascending order (to rounding), labels int64 [B, N] (-1 on padding),
        inertia [B]): each point's cluster and the weighted sum of squared distances; a cluster of
        zero total weight sits at the midpoint of its points.
    """
    _check_int("kmeans1d_optimal", "k", k)
    return torch.ops.gwkcuda.kmeans1d_optimal.default(x, weight, k, lengths)


@torch.library.register_fake("gwkcuda::kmeans1d_optimal")
def _kmeans1d_optimal_fake(x, weight, k, lengths=None):
    _check_devices("kmeans1d_optimal", x, weight=weight)
    torch._check(x.dim() == 2, lambda: f"kmeans1d_optimal: expected x of shape [B, N], got {tuple(x.shape)}")
    acc = accumulate_dtype(x.dtype)
    B, N = x.shape
    return x.new_empty((B, k), dtype=acc), x.new_empty((B, N), dtype=torch.int64), x.new_empty((B,), dtype=acc)


class SortedPoints(NamedTuple):
    """Scalar points sorted once for :func:`gwk_lloyd_step_sorted` (made by :func:`kmeans1d_sort`):
    xs [B, N] ascending; order int32 [B, N] with xs[b, t] = x[b, order[b, t]]; heads [B, ceil(N/16)]
    = xs[:, ::16]; prefix float64 [B, ceil(N/16) + 1, 5] (block prefix sums of the weights and
    weighted points, csrc/core/kmeans1d_sorted.h); shift float64 [B]."""
    xs: torch.Tensor
    order: torch.Tensor
    heads: torch.Tensor
    prefix: torch.Tensor
    shift: torch.Tensor


def kmeans1d_sort(x: torch.Tensor, weight) -> SortedPoints:
    """Sorts B problems of scalar points once, for Lloyd iterations in O(k log N) each.

    Args:
        x: [B, N] or [B, N, 1] float, finite (float16/bfloat16 computed in float32).
        weight: [B, N] finite and >= 0, or None (1 each).
    Returns:
        SortedPoints, in x's accumulation dtype (float32, or float64 for float64 x). Pass the
        same weight, cast to that dtype and contiguous, to the ops that take the state.
    """
    return SortedPoints(*torch.ops.gwkcuda.kmeans1d_sort.default(x, weight))


def gwk_lloyd_step_sorted(points: SortedPoints, weight, centroids: torch.Tensor):
    """One gradient-weighted Lloyd iteration of scalar points, from their sorted state: the same
    assignment rule and update as :func:`gwk_lloyd_step` at d = 1 (to float rounding of the sums).

    Args:
        points: from :func:`kmeans1d_sort`; weight: the weight given to it, in xs' dtype and
            contiguous, or None; centroids: [B, k, 1].
    Returns:
        (new_centroids [B, k, 1], cluster_weight [B, k]); a cluster of zero total weight keeps its
        centroid.
    """
    xs, order, heads, prefix, shift = points
    return torch.ops.gwkcuda.gwk_lloyd_step_sorted.default(xs, order, heads, weight, prefix, shift, centroids)


def kmeans1d_sorted_assign(points: SortedPoints, weight, centroids: torch.Tensor, labels: torch.Tensor):
    """The nearest of centroids [B, k, 1] for every point (ties to the lowest index), written into
    ``labels`` (contiguous int64 or int32 [B, N], in the caller's point order); returns the
    inertia [B] (sum of weight * squared distance)."""
    return torch.ops.gwkcuda.kmeans1d_sorted_assign.default(points.xs, points.order, points.heads, weight,
                                                            centroids, labels)


def _sorted_blocks(n):
    return (n + 15) // 16


@torch.library.register_fake("gwkcuda::kmeans1d_sort")
def _kmeans1d_sort_fake(x, weight):
    _check_devices("kmeans1d_sort", x, weight=weight)
    torch._check(x.dim() == 2 or (x.dim() == 3 and x.shape[2] == 1),
                 lambda: f"kmeans1d_sort: expected scalar points x of shape [B, N] or [B, N, 1], got {tuple(x.shape)}")
    B, N = x.shape[:2]
    acc = accumulate_dtype(x.dtype)
    blocks = _sorted_blocks(N)
    return (x.new_empty((B, N), dtype=acc), x.new_empty((B, N), dtype=torch.int32),
            x.new_empty((B, blocks), dtype=acc), x.new_empty((B, blocks + 1, 5), dtype=torch.float64),
            x.new_empty((B,), dtype=torch.float64))


@torch.library.register_fake("gwkcuda::gwk_lloyd_step_sorted")
def _gwk_lloyd_step_sorted_fake(xs, order, heads, weight, prefix, shift, centroids):
    _check_devices("gwk_lloyd_step_sorted", xs, order=order, heads=heads, weight=weight, prefix=prefix, shift=shift,
                   centroids=centroids)
    B, k = centroids.shape[:2]
    return xs.new_empty((B, k, 1)), xs.new_empty((B, k))


@torch.library.register_fake("gwkcuda::kmeans1d_sorted_assign")
def _kmeans1d_sorted_assign_fake(xs, order, heads, weight, centroids, labels):
    _check_devices("kmeans1d_sorted_assign", xs, order=order, heads=heads, weight=weight, centroids=centroids,
                   labels=labels)
    return xs.new_empty((xs.shape[0],))


# --- product-quantised weights -------------------------------------------------------------------

def pq_linear(x: torch.Tensor, codes: torch.Tensor, codebook: torch.Tensor, bias=None) -> torch.Tensor:
    """y = x @ W.T + bias with W stored as product-quantisation codes, never materialised for few
    input rows.

    Args:
        x: [M, K] float32/float64/float16/bfloat16 (leading dims: see gwkcuda.nn.PQLinear).
        codes: [N, K/d] uint8 (k <= 256) or int32, each in [0, k): refused otherwise on the CPU; on
            CUDA not checked per call (see check_pq_codes), an out-of-range code reads codeword 0.
        codebook: [G, k, d], x's dtype and device; rows n of W use group n // (N / G).
        bias: [N] or None.
    Returns:
        y [M, N] in x's dtype. Differentiable in x, codebook and bias (not in codes).
    """
    return torch.ops.gwkcuda.pq_linear.default(x, codes, codebook, bias)


def check_pq_codes(codes: torch.Tensor, k: int, who: str = "check_pq_codes") -> None:
    """Raises ValueError unless every code is in [0, k): the check the CUDA pq ops leave out (it
    would sync with the device on every call; there an out-of-range code reads codeword 0), done
    once where a PQ weight is built or loaded. Free where it cannot fire (uint8 codes, k >= 256);
    otherwise one reduction over the codes (and one device sync on CUDA)."""
    if codes.dtype == torch.uint8 and k >= 256:
        return
    bad = (codes < 0) | (codes >= k)
    if bool(bad.any()):
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{who}: expected every code in [0, {k}) (the codebook has k = {k} entries), "
                         f"got {int(codes[first])} at codes{list(first)}")


def pq_decode(codes: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """The dense weight W [N, K] of codes [N, K/d] into codebook [G, k, d], in the codebook's
    dtype: W[n, s*d:(s+1)*d] = codebook[n // (N / G), codes[n, s]]. Differentiable in codebook."""
    return torch.ops.gwkcuda.pq_decode.default(codes, codebook)


def _check_pq_weight_fake(codes, codebook):
    torch._check(codebook.dim() == 3, lambda: f"expected a codebook [G, k, d], got {tuple(codebook.shape)}")
    torch._check(codes.dim() == 2, lambda: f"expected codes [N, K/d], got {tuple(codes.shape)}")
    torch._check(codes.dtype in (torch.uint8, torch.int32), lambda: f"expected uint8 or int32 codes, got {codes.dtype}")
    torch._check(codes.shape[0] % codebook.shape[0] == 0,
                 lambda: f"expected the N = {codes.shape[0]} rows to split into G = {codebook.shape[0]} groups")
    return codes.shape[0], codes.shape[1] * codebook.shape[2]


@torch.library.register_fake("gwkcuda::pq_decode")
def _pq_decode_fake(codes, codebook):
    _check_devices("pq_decode", codebook, codes=codes)
    N, K = _check_pq_weight_fake(codes, codebook)
    return codebook.new_empty((N, K))


@torch.library.register_fake("gwkcuda::pq_linear")
def _pq_linear_fake(x, codes, codebook, bias):
    _check_devices("pq_linear", x, codes=codes, codebook=codebook, bias=bias)
    N, K = _check_pq_weight_fake(codes, codebook)
    torch._check(x.dim() == 2 and x.shape[1] == K, lambda: f"expected x [M, {K}], got {tuple(x.shape)}")
    torch._check(x.dtype == codebook.dtype, lambda: f"expected x of the codebook's dtype {codebook.dtype}, got {x.dtype}")
    return x.new_empty((x.shape[0], N))


def codebook_grad(grad_weight: torch.Tensor, codes: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """The gradient of a codebook [G, k, d] given the gradient of its decoded weight [N, K]: each
    codeword receives the sum of the gradients of the sub-vectors that use it (cluster_reduce)."""
    G, k, d = codebook.shape
    N, S = codes.shape
    sub_vectors = grad_weight.reshape(G, (N // G) * S, d)
    sums, _ = cluster_reduce(sub_vectors, None, codes.reshape(G, (N // G) * S).to(torch.int32), k)
    return sums.to(codebook.dtype)


def _pq_linear_setup(ctx, inputs, output):
    x, codes, codebook, bias = inputs
    ctx.save_for_backward(x, codes, codebook)
    ctx.has_bias = bias is not None


def _grad_input_through_codes(grad_y, codes, codebook):
    """grad_x = grad_y @ W for PQ weights without building W [N, K]: for each input row, group and
    position s, the rows' gradients are summed per code (a k-bin histogram weighted by grad_y),
    and each bin is multiplied by its codeword. Work: M * N * K/d adds plus M * G * K/d * k * d
    multiply-adds, against N * K writes for decoding W."""
    G, k, d = codebook.shape
    N, S = codes.shape
    M = grad_y.shape[0]
    acc = torch.float64 if grad_y.dtype == torch.float64 else torch.float32
    group = torch.arange(N, device=codes.device) // (N // G)
    bins = (group[:, None] * S + torch.arange(S, device=codes.device)) * k + codes.to(torch.int64)  # [N, S]
    hist = grad_y.new_zeros((M, G * S * k), dtype=acc)
    hist.index_add_(1, bins.reshape(-1), grad_y.to(acc).repeat_interleave(S, dim=1))
    grad_x = torch.einsum("mgsj,gjd->msd", hist.view(M, G, S, k), codebook.to(acc))
    return grad_x.reshape(M, S * d).to(grad_y.dtype)


def _pq_linear_backward(ctx, grad_y):
    x, codes, codebook = ctx.saved_tensors
    grad_x = grad_codebook = grad_bias = None
    if ctx.needs_input_grad[0]:
        G, k, d = codebook.shape
        if grad_y.shape[0] * 4 <= d:  # few rows: as in the forward, never build W
            grad_x = _grad_input_through_codes(grad_y, codes, codebook)
        else:
            grad_x = grad_y @ pq_decode(codes, codebook)
    if ctx.needs_input_grad[2]:
        grad_codebook = codebook_grad(grad_y.t() @ x, codes, codebook)
    if ctx.has_bias and ctx.needs_input_grad[3]:
        grad_bias = grad_y.sum(0)
    return grad_x, None, grad_codebook, grad_bias


def _pq_decode_setup(ctx, inputs, output):
    codes, codebook = inputs
    ctx.save_for_backward(codes, codebook)


def _pq_decode_backward(ctx, grad_w):
    codes, codebook = ctx.saved_tensors
    return None, codebook_grad(grad_w, codes, codebook) if ctx.needs_input_grad[1] else None


torch.library.register_autograd("gwkcuda::pq_linear", _pq_linear_backward, setup_context=_pq_linear_setup)
torch.library.register_autograd("gwkcuda::pq_decode", _pq_decode_backward, setup_context=_pq_decode_setup)


# --- EWGS quantisation ---------------------------------------------------------------------------

def ewgs_quantize(x: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, levels: int,
                  delta: torch.Tensor) -> torch.Tensor:
    """EWGS quantisation of x in one pass each way (gwkcuda.ewgs; paper-spec 4.1):
    q = round(clamp((x - lower) / (upper - lower), 0, 1) * (levels - 1)) / (levels - 1), whose
    backward scales each element's gradient by 1 + delta * sign(g) * (c - q) before the clamp.

    Args:
        x: floating-point tensor of any shape.
        lower, upper: 0-d floating-point tensors on x's device (differentiable).
        levels: 2..65536 quantisation levels.
        delta: 0-d tensor, the EWGS scaling (0: straight-through); not differentiated.
    Returns:
        q, x's shape and dtype, in [0, 1], channels-last when x is (else contiguous). The same
        values and gradients as the torch ops it replaces (``ewgs.ewgs_round`` of the clamped,
        normalised x), with sums in float64. An element exactly on a bound passes its gradient
        on every torch version (torch.clamp's backward did so up to torch 2.13, not from 2.14).
        Differentiable twice: the backward's own derivative (a Hessian-vector product through
        the quantiser) is that of the torch-op reference, ``ewgs_reference.ewgs_quantize``.
    """
    _check_int("ewgs_quantize", "levels", levels)
    return torch.ops.gwkcuda.ewgs_quantize.default(x, lower, upper, levels, delta)


def _check_ewgs_fake(op, x, lower, upper, delta, grad=None):
    _check_devices(op, x, lower=lower, upper=upper, delta=delta, grad=grad)
    torch._check(x.dtype.is_floating_point, lambda: f"{op}: expected a floating-point x, got {x.dtype}")
    for name, t in (("lower", lower), ("upper", upper), ("delta", delta)):
        torch._check(t.dim() == 0 and t.dtype.is_floating_point,
                     lambda: f"{op}: expected {name} a 0-d floating-point tensor, got {t.dtype} of shape {list(t.shape)}")


def _ewgs_layout(x):
    """The layout the C++ ops compute in and return (csrc/ewgs_checks.h: ewgs_layout)."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


@torch.library.register_fake("gwkcuda::ewgs_quantize")
def _ewgs_quantize_fake(x, lower, upper, levels, delta):
    _check_ewgs_fake("ewgs_quantize", x, lower, upper, delta)
    return torch.empty_like(x, memory_format=_ewgs_layout(x))


@torch.library.register_fake("gwkcuda::ewgs_quantize_backward")
def _ewgs_quantize_backward_fake(grad, x, lower, upper, levels, delta):
    _check_ewgs_fake("ewgs_quantize_backward", x, lower, upper, delta, grad=grad)
    return (torch.empty_like(x, memory_format=_ewgs_layout(x)), lower.new_empty(()), upper.new_empty(()))


def _ewgs_quantize_setup(ctx, inputs, output):
    x, lower, upper, levels, delta = inputs
    ctx.save_for_backward(x, lower, upper, delta)
    ctx.levels = levels


def _ewgs_quantize_backward(ctx, grad):
    x, lower, upper, delta = ctx.saved_tensors
    grad_x, grad_lower, grad_upper = torch.ops.gwkcuda.ewgs_quantize_backward.default(
        grad, x, lower, upper, ctx.levels, delta)  # the op lays grad out as it does x
    return grad_x, grad_lower, grad_upper, None, None


torch.library.register_autograd("gwkcuda::ewgs_quantize", _ewgs_quantize_backward, setup_context=_ewgs_quantize_setup)


def _ewgs_backward_setup(ctx, inputs, output):
    grad, x, lower, upper, levels, delta = inputs
    ctx.save_for_backward(grad, x, lower, upper, delta)
    ctx.levels = levels


def _ewgs_double_backward(ctx, gg_x, gg_lower, gg_upper):
    """The derivative of the backward (a Hessian-vector product through a quantiser differentiates
    it: ewgs.update_delta's estimate of the Hessian trace). It is the torch-op reference's own
    (ewgs_reference.ewgs_quantize, which holds the same values and first derivatives), by autograd
    on a copy of the inputs: rare, so clear rather than fast. A third derivative is refused rather
    than silently taken as zero."""
    if torch.is_grad_enabled():  # create_graph=True here: a derivative of this one is wanted
        raise RuntimeError("ewgs_quantize: expected at most two derivatives (the second for Hessian-vector "
                           "products), got a request for a third (create_graph=True in the second)")
    grad, x, lower, upper, delta = ctx.saved_tensors
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_(True) for t in (grad, x, lower, upper)]
        q = ewgs_reference.ewgs_quantize(leaves[1], leaves[2], leaves[3], ctx.levels, delta)
        first = torch.autograd.grad(q, leaves[1:], leaves[0], create_graph=True)
        cotangents = [g if g is not None else torch.zeros_like(f) for g, f in zip((gg_x, gg_lower, gg_upper), first)]
        second = torch.autograd.grad(first, leaves, cotangents, allow_unused=True)
    return (*second, None, None)


torch.library.register_autograd("gwkcuda::ewgs_quantize_backward", _ewgs_double_backward,
                                setup_context=_ewgs_backward_setup)


# --- Huffman-coded indices -----------------------------------------------------------------------

def huffman_decode(stream: torch.Tensor, code_lengths: torch.Tensor, numel: int) -> torch.Tensor:
    """The first ``numel`` symbols of a canonical-Huffman stream (gwkcuda/huffman.py's layout).

    Args:
        stream: uint8 [bytes] on the CPU.
        code_lengths: int64 [symbols], each in 0..48 (0: unused), satisfying Kraft's inequality.
        numel: symbols to decode, >= 0.
    Returns:
        int32 [numel]. Raises RuntimeError on a stream that ends early or matches no code word.
    """
    _check_int("huffman_decode", "numel", numel)
    return torch.ops.gwkcuda.huffman_decode.default(stream, code_lengths, numel)


@torch.library.register_fake("gwkcuda::huffman_decode")
def _huffman_decode_fake(stream, code_lengths, numel):
    _check_devices("huffman_decode", stream, code_lengths=code_lengths)
    return stream.new_empty((numel,), dtype=torch.int32)

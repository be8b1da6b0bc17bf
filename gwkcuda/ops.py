"""Typed Python wrappers of the torch.ops.gwkcuda ops, and their fake (meta) kernels.

The ops themselves are defined and implemented in C++ (csrc/); only what torch.compile needs is
registered here, with checks that mirror the C++ ones.
"""
import torch

from . import _C  # noqa: F401  (loading the extension registers torch.ops.gwkcuda.*)
from .shapes import CODE_DTYPES, MAX_BITS, accumulate_dtype, check_kmeans_shapes, packed_numel

_CODE_DTYPES = tuple(getattr(torch, name) for name in CODE_DTYPES)


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


def gwk_lloyd_step(x: torch.Tensor, weight, centroids: torch.Tensor, labels_out=None):
    """One fused gradient-weighted Lloyd iteration (assign, then weighted mean), B problems at once.

    Args:
        x: [B, N, d] float; weight: [B, N] finite, non-negative, or None; centroids: [B, k, d].
        labels_out: optional contiguous int64 [B, N] buffer the labels are written into (saves
            an allocation per iteration when iterating).
    Returns:
        (new_centroids [B, k, d], labels int64 [B, N], cluster_weight [B, k], inertia [B]).
        labels and inertia (sum of weight * squared distance) refer to the input centroids; a
        cluster whose total weight is zero keeps its centroid.
    """
    if labels_out is None:
        return torch.ops.gwkcuda.gwk_lloyd_step.default(x, weight, centroids)
    new, cluster_weight, inertia = torch.ops.gwkcuda.gwk_lloyd_step_into.default(
        x, weight, centroids, labels_out)
    return new, labels_out, cluster_weight, inertia


@torch.library.register_fake("gwkcuda::kmeans_assign")
def _kmeans_assign_fake(x, centroids):
    B, N, _, _ = check_kmeans_shapes(x, centroids=centroids, check=_fake_check)
    acc = accumulate_dtype(x.dtype)
    return x.new_empty((B, N), dtype=torch.int64), x.new_empty((B, N), dtype=acc)


@torch.library.register_fake("gwkcuda::cluster_reduce")
def _cluster_reduce_fake(x, weight, labels, k):
    B, _, d, k = check_kmeans_shapes(x, weight=weight, labels=labels, k=k, check=_fake_check)
    acc = accumulate_dtype(x.dtype)
    return x.new_empty((B, k, d), dtype=acc), x.new_empty((B, k), dtype=acc)


@torch.library.register_fake("gwkcuda::gwk_lloyd_step")
def _gwk_lloyd_step_fake(x, weight, centroids):
    B, N, d, k = check_kmeans_shapes(x, centroids=centroids, weight=weight, check=_fake_check)
    acc = accumulate_dtype(x.dtype)
    return (x.new_empty((B, k, d), dtype=acc), x.new_empty((B, N), dtype=torch.int64),
            x.new_empty((B, k), dtype=acc), x.new_empty((B,), dtype=acc))


@torch.library.register_fake("gwkcuda::gwk_lloyd_step_into")
def _gwk_lloyd_step_into_fake(x, weight, centroids, labels):
    new, _, cluster_weight, inertia = _gwk_lloyd_step_fake(x, weight, centroids)
    torch._check(labels.dtype == torch.int64 and tuple(labels.shape) == tuple(x.shape[:2]),
                 lambda: f"gwk_lloyd_step: expected an int64 labels buffer of shape {list(x.shape[:2])}")
    return new, cluster_weight, inertia


def _fake_check(cond, msg):
    torch._check(cond, msg)

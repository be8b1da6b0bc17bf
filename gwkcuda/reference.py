"""Pure-PyTorch reference implementations of the gwkcuda ops: the test oracle.

Written for clarity, never for speed: every bit is spelled out as an integer tensor of 0s and 1s.
"""
import torch

from .shapes import CODE_DTYPES, MAX_BITS, accumulate_dtype, check_kmeans_shapes, packed_numel


def _check_nbits(nbits):
    if not 1 <= nbits <= MAX_BITS:
        raise ValueError(f"expected nbits in 1..{MAX_BITS}, got {nbits}")


def pack_bits(codes: torch.Tensor, nbits: int) -> torch.Tensor:
    """Reference of ``torch.ops.gwkcuda.pack_bits``.

    codes: integer tensor of any shape, read flat, each in [0, 2**nbits).
    Returns uint8 [ceil(numel * nbits / 8)]: code i in stream bits [i*nbits, (i+1)*nbits), least
    significant bit first; stream bit b is bit (b % 8) of byte b // 8.
    """
    _check_nbits(nbits)
    if str(codes.dtype).removeprefix("torch.") not in CODE_DTYPES:
        raise TypeError(f"expected integer codes ({', '.join(CODE_DTYPES)}), got {codes.dtype}")
    flat = codes.reshape(-1).to(torch.int64).cpu()
    if flat.numel() and (flat.min() < 0 or flat.max() >= 2**nbits):
        raise ValueError(f"expected every code in [0, {2**nbits}), got values in "
                         f"[{int(flat.min())}, {int(flat.max())}]")
    # bits[i, b] = bit b of code i; the stream is these bits in row-major order.
    bits = (flat[:, None] >> torch.arange(nbits)) & 1
    stream = bits.reshape(-1)
    nbytes = packed_numel(flat.numel(), nbits)
    stream = torch.cat([stream, stream.new_zeros(nbytes * 8 - stream.numel())])
    # byte j = sum over t of stream[8j + t] * 2**t
    return (stream.reshape(nbytes, 8) << torch.arange(8)).sum(1).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, nbits: int, numel: int) -> torch.Tensor:
    """Reference of ``torch.ops.gwkcuda.unpack_bits``: int32 [numel], the inverse of pack_bits."""
    _check_nbits(nbits)
    if numel < 0:
        raise ValueError(f"expected numel >= 0, got {numel}")
    needed = packed_numel(numel, nbits)
    if packed.numel() < needed:
        raise ValueError(f"{numel} codes of {nbits} bits need {needed} bytes, got {packed.numel()}")
    stream = ((packed.reshape(-1).to(torch.int64).cpu()[:, None] >> torch.arange(8)) & 1).reshape(-1)
    bits = stream[: numel * nbits].reshape(numel, nbits)
    return (bits << torch.arange(nbits)).sum(1).to(torch.int32)


# --- k-means family ------------------------------------------------------------------------------

def kmeans_assign(x: torch.Tensor, centroids: torch.Tensor):
    """Reference of ``kmeans_assign``: x [B, N, d], centroids [B, k, d] ->
    (labels int64 [B, N], sqdist [B, N]); ties go to the lowest index."""
    check_kmeans_shapes(x, centroids=centroids)
    acc = accumulate_dtype(x.dtype)
    diff = x.to(acc)[:, :, None, :] - centroids.to(acc)[:, None, :, :]  # [B, N, k, d]
    sqdist = (diff * diff).sum(-1)
    best, labels = sqdist.min(-1)  # first minimum: the lowest index wins a tie
    return labels, best


def _cluster_sums(x: torch.Tensor, weight, labels: torch.Tensor, k: int):
    """Exact float64 (sums [B, k, d], weight_sums [B, k]): the points and weights are taken in the
    op's accumulation dtype (as the kernels read them), every product and sum in float64."""
    B, N, d, k = check_kmeans_shapes(x, weight=weight, labels=labels, k=k)
    acc = accumulate_dtype(x.dtype)
    w = torch.ones(B, N, dtype=torch.float64) if weight is None else weight.to(acc).to(torch.float64)
    sums = torch.zeros(B, k, d, dtype=torch.float64)
    weight_sums = torch.zeros(B, k, dtype=torch.float64)
    for b in range(B):
        sums[b].index_add_(0, labels[b], w[b, :, None] * x[b].to(acc).to(torch.float64))
        weight_sums[b].index_add_(0, labels[b], w[b])
    return sums, weight_sums


def cluster_reduce(x: torch.Tensor, weight, labels: torch.Tensor, k: int):
    """Reference of ``cluster_reduce``: (sums [B, k, d], weight_sums [B, k]) of weight * x and of
    weight over the points of each label."""
    acc = accumulate_dtype(x.dtype)
    sums, weight_sums = _cluster_sums(x, weight, labels, k)
    return sums.to(acc), weight_sums.to(acc)


def gwk_lloyd_step(x: torch.Tensor, weight, centroids: torch.Tensor):
    """Reference of ``gwk_lloyd_step``: one weighted Lloyd iteration ->
    (new_centroids [B, k, d], labels [B, N], cluster_weight [B, k], inertia [B]).
    The weighted means divide the float64 sums (never sums first rounded to float32, which loses
    everything for weights near the smallest subnormals)."""
    labels, sqdist = kmeans_assign(x, centroids)
    k = centroids.shape[1]
    sums, wsums = _cluster_sums(x, weight, labels, k)
    acc = accumulate_dtype(x.dtype)
    old = centroids.to(acc).to(torch.float64)
    new = torch.where(wsums[..., None] > 0, sums / torch.where(wsums > 0, wsums, 1.0)[..., None], old)
    w = torch.ones_like(sqdist, dtype=torch.float64) if weight is None else weight.to(acc).to(torch.float64)
    inertia = (w * sqdist.to(torch.float64)).sum(1)
    return new.to(acc), labels, wsums.to(acc), inertia.to(acc)


# --- product-quantised weights -------------------------------------------------------------------

def pq_decode(codes: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Reference of ``pq_decode``: W [N, K] with W[n, s*d:(s+1)*d] = codebook[n // (N/G), codes[n, s]]."""
    G, k, d = codebook.shape
    N, S = codes.shape
    if N % G:
        raise ValueError(f"expected N = {N} divisible by G = {G}")
    c = codes.to(torch.int64)
    if c.numel() and (c.min() < 0 or c.max() >= k):
        raise ValueError(f"expected codes in [0, {k}), got values in [{int(c.min())}, {int(c.max())}]")
    group = torch.arange(N, device=codes.device) // (N // G)
    return codebook[group[:, None], c].reshape(N, S * d)  # [N, S, d] -> [N, K]


def pq_linear(x, codes, codebook, bias=None):
    """Reference of ``pq_linear``: x @ pq_decode(codes, codebook).T + bias, in float64."""
    y = x.to(torch.float64) @ pq_decode(codes, codebook).to(torch.float64).t()
    return y if bias is None else y + bias.to(torch.float64)


# --- Huffman -------------------------------------------------------------------------------------

def huffman_decode(stream: torch.Tensor, lengths, numel: int) -> torch.Tensor:
    """Reference of ``huffman_decode``, one bit at a time: the stream's bits LSB-first per byte,
    each canonical code word (gwkcuda.huffman.canonical_codes) most significant bit first."""
    import numpy as np

    from .huffman import canonical_codes

    bits = np.unpackbits(stream.cpu().numpy().astype(np.uint8), bitorder="little")
    table = {(l, c): s for s, (l, c) in enumerate(zip(lengths, canonical_codes(lengths))) if l > 0}
    out = np.empty(numel, dtype=np.int64)
    pos = 0
    for n in range(numel):
        code, length = 0, 0
        while (length, code) not in table:
            if pos >= bits.size:
                raise ValueError(f"reference.huffman_decode: stream ended after {n} of {numel} symbols")
            if length > max(lengths):
                raise ValueError("reference.huffman_decode: corrupted stream (no code word matches)")
            code = (code << 1) | int(bits[pos])
            pos += 1
            length += 1
        out[n] = table[(length, code)]
    return torch.from_numpy(out)

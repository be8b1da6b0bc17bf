"""Output-shape rules shared by the fake (meta) kernels and the pure-PyTorch reference."""

MAX_BITS = 16
CODE_DTYPES = ("uint8", "int8", "int16", "int32", "int64")


def packed_numel(numel, nbits):
    """Bytes of a packed stream of ``numel`` codes of ``nbits`` bits: ceil(numel * nbits / 8)."""
    return (numel * nbits + 7) // 8


def check_kmeans_shapes(x, centroids=None, weight=None, labels=None, k=None, check=None):
    """Shape rules of the k-means ops, for the fake kernels (check = torch._check) and the
    reference (check raises ValueError). Returns (B, N, d, k)."""
    if check is None:
        def check(cond, msg):
            if not cond:
                raise ValueError(msg())
    check(x.dim() == 3, lambda: f"expected x of shape [B, N, d], got {tuple(x.shape)}")
    B, N, d = x.shape
    if centroids is not None:
        check(centroids.dim() == 3 and centroids.shape[0] == B and centroids.shape[2] == d,
              lambda: f"expected centroids [B, k, d] matching x {tuple(x.shape)}, got {tuple(centroids.shape)}")
        k = centroids.shape[1]
    check(k >= 1, lambda: f"expected k >= 1, got {k}")
    if weight is not None:
        check(weight.dim() == 2 and weight.shape[0] == B and weight.shape[1] == N,
              lambda: f"expected weight of shape [B, N] = [{B}, {N}], got {tuple(weight.shape)}")
    if labels is not None:
        check(labels.dim() == 2 and labels.shape[0] == B and labels.shape[1] == N,
              lambda: f"expected labels of shape [B, N] = [{B}, {N}], got {tuple(labels.shape)}")
    return B, N, d, k


def accumulate_dtype(x_dtype):
    """float64 stays float64; float32, float16 and bfloat16 accumulate in float32."""
    import torch
    return torch.float64 if x_dtype == torch.float64 else torch.float32

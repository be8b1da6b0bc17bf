"""Product quantisation of weight tensors, gradient-weighted (GWK) when importances are given.

A weight [N, ...] is viewed as a matrix [N, K] (rows: output features or filters; K: the flattened
input axis, Cin*kh*kw for a convolution). Each row is split into S = K / d sub-vectors of length d;
the N rows form ``groups`` equal groups of consecutive rows, and each group's sub-vectors are
clustered into k codewords by (importance-)weighted k-means. Storage: ceil(log2 k) bits per
sub-vector index, i.e. ceil(log2 k) / d bits per weight, plus the codebooks.
"""
import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from . import io, ops


@dataclass(frozen=True)
class PQConfig:
    """d: sub-vector length; k: codewords per group (2..65536); groups: codebooks per layer."""
    d: int
    k: int
    groups: int = 1

    def __post_init__(self):
        for name, value, low in (("d", self.d, 1), ("k", self.k, 1), ("groups", self.groups, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"PQConfig: expected {name} an int >= {low}, got {value!r}")
        if self.k > 2**16:
            raise ValueError(f"PQConfig: expected k <= 65536 (16-bit codes), got {self.k}")

    @property
    def index_bits(self) -> int:
        """Bits stored per sub-vector index: ceil(log2 k) (at least 1)."""
        return max(1, math.ceil(math.log2(self.k)))

    @property
    def code_dtype(self) -> torch.dtype:
        return torch.uint8 if self.k <= 256 else torch.int32


@dataclass
class PQWeight:
    """A product-quantised weight: codes [N, K/d] into codebook [G, k, d], and the original shape."""
    codes: torch.Tensor
    codebook: torch.Tensor
    shape: Tuple[int, ...]
    config: PQConfig

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def decode(self) -> torch.Tensor:
        """The dense weight, in its original shape and the codebook's dtype."""
        return ops.pq_decode(self.codes, self.codebook).reshape(self.shape)

    @property
    def index_bits(self) -> int:
        return self.codes.numel() * self.config.index_bits

    @property
    def codebook_bits(self) -> int:
        return self.codebook.numel() * self.codebook.element_size() * 8

    @property
    def bits_per_weight(self) -> dict:
        """{"indices": index bits per weight, "with_codebooks": (indices + codebooks) per weight}."""
        return {"indices": self.index_bits / self.numel,
                "with_codebooks": (self.index_bits + self.codebook_bits) / self.numel}

    def to_tensors(self, prefix: str = ""):
        """(tensors, meta) for gwkcuda.io: codes packed at ceil(log2 k) bits, and the codebook."""
        packed = ops.pack_bits(self.codes.reshape(-1).to(torch.int32), self.config.index_bits)
        tensors = {prefix + "codes": packed, prefix + "codebook": self.codebook.detach()}
        meta = {"shape": list(self.shape), "codes_shape": list(self.codes.shape),
                "d": self.config.d, "k": self.config.k, "groups": self.config.groups}
        return tensors, meta

    @classmethod
    def from_tensors(cls, tensors, meta, prefix: str = ""):
        config = PQConfig(meta["d"], meta["k"], meta["groups"])
        n, s = meta["codes_shape"]
        codes = ops.unpack_bits(tensors[prefix + "codes"], config.index_bits, n * s)
        return cls(codes.reshape(n, s).to(config.code_dtype), tensors[prefix + "codebook"],
                   tuple(meta["shape"]), config)

    def save(self, path):
        tensors, meta = self.to_tensors()
        io.save_compressed(path, tensors, {"pq_weight": meta})

    @classmethod
    def load(cls, path):
        tensors, meta = io.load_compressed(path)
        if "pq_weight" not in meta:
            raise io.CompressedFileError(f"{path}: holds no PQ weight (keys: {sorted(meta)})")
        return cls.from_tensors(tensors, meta["pq_weight"])


def pq_quantize(weight: torch.Tensor, config: PQConfig, importance: Optional[torch.Tensor] = None,
                *, iters: int = 25, seed: int = 0) -> PQWeight:
    """Product-quantises ``weight`` [N, ...] with (gradient-)weighted k-means.

    Args:
        weight: float tensor, dim >= 2; rows are weight.shape[0], K = the rest flattened.
        config: PQConfig(d, k, groups); K must be divisible by d, N by groups, and each group
            must hold at least k sub-vectors.
        importance: None (plain k-means), or non-negative per-weight importances of weight's
            shape (accumulated |g| or g^2); a sub-vector's weight is the sum over its d entries.
        iters, seed: passed to gwkcuda.kmeans.weighted_kmeans.
    Returns:
        PQWeight with codes [N, K/d] (uint8 when k <= 256, else int32) and codebook [G, k, d]
        in weight's dtype.
    """
    if not isinstance(weight, torch.Tensor) or weight.dim() < 2 or not weight.dtype.is_floating_point:
        raise ValueError("pq_quantize: expected a floating-point weight with at least 2 dims, got "
                         f"{tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__}")
    N = weight.shape[0]
    K = weight[0].numel()
    d, k, G = config.d, config.k, config.groups
    if K % d:
        raise ValueError(f"pq_quantize: expected the row length K = {K} of weight {tuple(weight.shape)} "
                         f"to be divisible by d = {d}")
    if N % G:
        raise ValueError(f"pq_quantize: expected the N = {N} rows to split into groups = {G} equal groups")
    S = K // d
    per_group = (N // G) * S
    if k > per_group:
        raise ValueError(f"pq_quantize: k = {k} codewords but each group has only {per_group} "
                         f"sub-vectors of length {d}")
    if importance is not None and tuple(importance.shape) != tuple(weight.shape):
        raise ValueError(f"pq_quantize: expected importance of the weight's shape "
                         f"{tuple(weight.shape)}, got {tuple(importance.shape)}")
    from .gwk import gwk_quantize  # the one clustering of a layer's groups (gwk imports this module)
    return gwk_quantize({"w": weight}, {"w": config}, None if importance is None else {"w": importance},
                        iters=iters, seed=seed)["w"]

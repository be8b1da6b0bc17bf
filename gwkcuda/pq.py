"""Product quantisation of weight tensors, gradient-weighted (GWK) when importances are given.

A weight [N, ...] is viewed as a matrix [N, K] (rows: output features or filters; K: the flattened
input axis, Cin*kh*kw for a convolution). Each row is split into S = K / d sub-vectors of length d;
the N rows form ``groups`` equal groups of consecutive rows, and each group's sub-vectors are
clustered into k codewords by (importance-)weighted k-means (exactly, by dynamic programming, for
scalar codebooks d = 1: kmeans.cluster). Storage: ceil(log2 k) bits per
sub-vector index, i.e. ceil(log2 k) / d bits per weight, plus the codebooks.

:func:`gwk_quantize` clusters the layers of a plan (several at once, batched); :func:`pq_quantize`
is the same for one weight. The model-level pipeline (importances, the swap to PQ layers) is
gwkcuda.gwk, one layer above.
"""
import math
import warnings
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch

from . import io, ops
from .kmeans import cluster, stack_problems


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

    def __post_init__(self):
        ops.check_pq_codes(self.codes, self.config.k, "PQWeight")  # once here, never per call on CUDA

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
        iters, seed: passed to gwkcuda.kmeans.cluster (Lloyd's; scalar codebooks are exact).
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
    return gwk_quantize({"w": weight}, {"w": config}, None if importance is None else {"w": importance},
                        iters=iters, seed=seed)["w"]


def _points(weight: torch.Tensor) -> torch.Tensor:
    """The weight as k-means points: float32 and float64 as they are (no copy), half types in float32."""
    w = weight.detach()
    return w if w.dtype in (torch.float32, torch.float64) else w.float()


_POINTS_PER_CALL = 1 << 16  # per-row clustering: points per batched call (work arrays of ~1 MiB)


def _nudge(s: torch.Tensor, beta: Optional[float], mean: float) -> torch.Tensor:
    """Sub-vector weights s -> 1 + beta * s / mean (GWKConfig.beta; mean: over the whole layer), in
    place, so that a streamed layer gets no second point-sized array; s itself when beta is None."""
    if beta is not None:
        s.mul_(beta / max(mean, torch.finfo(torch.float32).tiny)).add_(1)
    return s


def gwk_quantize(weights: Dict[str, torch.Tensor], plan: Dict[str, PQConfig],
                 importance: Optional[Dict[str, torch.Tensor]] = None, *, beta: Optional[float] = None,
                 iters: int = 25, seed: int = 0, show_progress: bool = False,
                 init: Optional[Dict[str, torch.Tensor]] = None) -> Dict[str, PQWeight]:
    """Product-quantises every weight of ``plan`` with (gradient-)weighted k-means, the layers that
    share (d, k) in one batched call (padded with zero-weight points).

    A layer with groups > 1 (for example PQConfig(1, 2**bits, groups=rows): per-row scalar
    clustering, as SqueezeLLM) is clustered on its own, its groups as a batch of problems, a slice
    of groups at a time (about 2**16 points per call) so that its work arrays stay small.

    Args:
        weights: name -> weight [N, ...]; plan: name -> PQConfig.
        importance: name -> per-weight importance of the weight's shape, or None (plain k-means).
        beta: see GWKConfig (the mean is over the whole layer).
        init: name -> codebook [G, k, d] to start that layer's Lloyd iterations from (say its
            codebook from an earlier clustering) instead of k-means++; layers of one batched call
            start from k-means++ unless all of them have one. Scalar codebooks solved exactly
            need none.
    Returns:
        name -> PQWeight (codes [N, K/d], codebook [G, k, d])."""
    def sub_weights(n, d):
        """Per sub-vector [N*K/d]: the sum of its importances, nudged by beta; None for k-means."""
        if importance is None:
            return None
        s = importance[n].detach().float().reshape(-1, d).sum(-1)
        return _nudge(s, beta, float(s.mean()))

    def result_for(n, labels, centroids):
        weight, cfg = weights[n], plan[n]
        return PQWeight(labels.reshape(weight.shape[0], -1).to(cfg.code_dtype),
                        centroids.to(weight.dtype).contiguous(), tuple(weight.shape), cfg)

    init = {n: _check_init(c, plan.get(n), n) for n, c in (init or {}).items()}
    by_shape, out = {}, {}
    for name, cfg in plan.items():
        if cfg.groups == 1:
            by_shape.setdefault((cfg.d, cfg.k), []).append(name)
            continue
        G, d = cfg.groups, cfg.d
        if weights[name].shape[0] % G:
            raise ValueError(f"gwk_quantize: expected the {weights[name].shape[0]} rows of {name} to split "
                             f"into groups = {G} equal groups")
        x = _points(weights[name]).reshape(G, -1, d)
        imp = None if importance is None else importance[name].detach().float().reshape(G, -1, d)
        mean = None if imp is None else float(imp.sum()) / (imp.numel() // d)  # over the whole layer
        codes = torch.empty(x.shape[:2], dtype=cfg.code_dtype, device=x.device)
        codebook = x.new_empty(G, cfg.k, d)
        step = max(1, _POINTS_PER_CALL // x.shape[1])
        unweighted = 0  # groups without any importance (embedding rows of tokens never seen)
        for g in range(0, G, step):  # small work arrays; results go straight into codes and codebook
            w = None if imp is None else _nudge(imp[g:g + step].sum(-1), beta, mean)
            if w is not None:
                unweighted += int((w.sum(1) <= 0).sum())
            with warnings.catch_warnings():  # one warning per layer below, not one per slice
                warnings.filterwarnings("ignore", "weighted_kmeans: every weight is zero", RuntimeWarning)
                start = init[name][g:g + step] if name in init else None
                r = cluster(x[g:g + step], w, k=cfg.k, iters=iters, seed=seed, show_progress=show_progress,
                            init=start)
            codes[g:g + step], codebook[g:g + step] = r.labels, r.centroids
        if unweighted:
            warnings.warn(f"gwk_quantize: {name}: {unweighted} of {G} groups have zero importance everywhere "
                          "(never reached by the calibration gradients); clustered with uniform weights",
                          RuntimeWarning, stacklevel=2)
        out[name] = result_for(name, codes, codebook)
    for (d, k), names in by_shape.items():
        xs = [_points(weights[n]).reshape(-1, d) for n in names]
        ws = None if importance is None else [sub_weights(n, d) for n in names]
        if len(xs) == 1:  # one layer (as when streaming): no padding, so no copies of the weight
            x, w, lengths = xs[0].unsqueeze(0), None if ws is None else ws[0].unsqueeze(0), None
        else:
            x, w, lengths = stack_problems(xs, ws)
        start = None
        if all(n in init for n in names):
            start = torch.cat([init[n] for n in names]).to(x.device, x.dtype)
        result = cluster(x, w, k=k, iters=iters, seed=seed, lengths=lengths,
                         show_progress=show_progress, labels_dtype=torch.int32, init=start)
        del x, w, ws  # the point weights go before the codes are made
        for b, n in enumerate(names):
            out[n] = result_for(n, result.labels[b, : xs[b].shape[0]], result.centroids[b:b + 1])
    return {n: out[n] for n in plan}


def _check_init(codebook: torch.Tensor, cfg: Optional[PQConfig], name: str) -> torch.Tensor:
    """A layer's starting codebook, checked against its PQConfig: [G, k, d]."""
    if cfg is None:
        raise ValueError(f"gwk_quantize: init names {name!r}, which is not in the plan")
    expected = (cfg.groups, cfg.k, cfg.d)
    if not isinstance(codebook, torch.Tensor) or tuple(codebook.shape) != expected:
        got = list(codebook.shape) if isinstance(codebook, torch.Tensor) else type(codebook).__name__
        raise ValueError(f"gwk_quantize: expected init[{name!r}] a codebook of shape {list(expected)}, got {got}")
    return codebook.detach()

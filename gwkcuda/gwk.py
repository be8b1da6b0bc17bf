"""GWK: gradient-weighted product quantisation of a model's Conv2d/Linear layers (paper-spec 2.2-2.4).

1. Importances: per-weight |g| (or g^2) accumulated over T calibration batches
   (:func:`accumulate_importance`); "uniform" gives plain k-means, the baseline.
2. Clustering: each layer's d-long sub-vectors (rows of W [N, K] cut along K, as in "And the bit
   goes down") are clustered into k codewords by weighted k-means, a sub-vector weighing the sum of
   its entries' importances, optionally nudged (s <- 1 + beta * s / mean(s)); all layers with the
   same (d, k) are clustered in one batched call (:func:`gwkcuda.pq.gwk_quantize`, re-exported here).
3. The layers become PQConv2d/PQLinear (codes fixed, codebooks trainable), to be fine-tuned with
   :func:`gwkcuda.train.train` (codebooks, batch norm, biases and any float layers).

Layers with fewer than ``min_weights`` weights (in the CIFAR ResNets and the demo CNN: the first
convolution and the classifier) stay in float, as do layers named in ``keep_float`` and layers whose
row length is not divisible by d; the report says which and why.
"""
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn

from .nn import install_pq
from .pq import PQConfig, PQWeight, gwk_quantize  # noqa: F401  (gwk_quantize: part of this module's API)

IMPORTANCE_MODES = ("abs", "square", "uniform")


@dataclass
class GWKConfig:
    """d, k: sub-vector length and codewords per layer (per-layer overrides in ``layers``: name ->
    (d, k)); importance: "abs" (sum of |g|), "square" (sum of g^2) or "uniform" (plain k-means);
    beta: None for the plain weighted mean, else importances become 1 + beta * s / mean(s);
    calib_batches: batches T for the importances; iters: Lloyd iterations; min_weights, keep_float:
    layers left in float."""
    d: int = 4
    k: int = 16
    importance: str = "abs"
    beta: Optional[float] = None
    calib_batches: int = 16
    iters: int = 25
    min_weights: int = 1024
    keep_float: Tuple[str, ...] = ()
    layers: Dict[str, Tuple[int, int]] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self):
        if self.importance not in IMPORTANCE_MODES:
            raise ValueError(f"GWKConfig: expected importance one of {IMPORTANCE_MODES}, got {self.importance!r}")
        PQConfig(self.d, self.k)  # validates d and k
        if self.beta is not None and not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"GWKConfig: expected beta a finite number >= 0, or None, got {self.beta!r}")
        if not isinstance(self.calib_batches, int) or self.calib_batches < 1:
            raise ValueError(f"GWKConfig: expected calib_batches an int >= 1, got {self.calib_batches!r}")


def plan_layers(model: nn.Module, config: GWKConfig):
    """(plan, skipped): plan maps layer name -> PQConfig for each layer to quantise; skipped maps
    the other Conv2d/Linear layers to the reason they stay in float."""
    plan, skipped = {}, {}
    for name, m in model.named_modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        d, k = config.layers.get(name, (config.d, config.k))
        rows, K = m.weight.shape[0], m.weight[0].numel()
        if name in config.keep_float:
            skipped[name] = "kept in float (keep_float)"
        elif m.weight.numel() < config.min_weights:
            skipped[name] = f"{m.weight.numel()} weights < min_weights {config.min_weights}"
        elif K % d:
            skipped[name] = f"row length {K} not divisible by d = {d}"
        elif rows * K // d < k:
            skipped[name] = f"{rows * K // d} sub-vectors < k = {k}"
        else:
            plan[name] = PQConfig(d, k)
    return plan, skipped


def accumulate_importance(model: nn.Module, names, run_backward: Callable[[Callable[[], None]], None],
                          mode: str = "abs") -> Dict[str, torch.Tensor]:
    """Per-weight importances of the named layers: sum over backward passes of |g| ("abs") or g^2
    ("square"); "uniform" gives ones without running anything.

    run_backward(after_each) must run the backward passes (e.g. ``lambda f:
    train.backward_batches(model, x, y, batches=T, after_each=f)``); the importances accumulate
    through gradient hooks, so after_each may be called or not.
    Returns name -> tensor of the layer's weight shape (float32, on the weight's device)."""
    weights = {n: model.get_submodule(n).weight for n in names}
    if mode == "uniform":
        return {n: torch.ones_like(w, dtype=torch.float32) for n, w in weights.items()}
    if mode not in IMPORTANCE_MODES:
        raise ValueError(f"accumulate_importance: expected mode one of {IMPORTANCE_MODES}, got {mode!r}")
    acc = {n: torch.zeros_like(w, dtype=torch.float32) for n, w in weights.items()}

    def accumulate(name):
        # Runs as soon as the weight's gradient is complete, and drops it: a large model never
        # holds all its gradients at once, only the importances.
        def hook(w):
            g = w.grad.detach().float()
            acc[name] += g.abs() if mode == "abs" else g * g
            w.grad = None
        return hook

    model.zero_grad(set_to_none=True)
    handles = [w.register_post_accumulate_grad_hook(accumulate(n)) for n, w in weights.items()]
    try:
        run_backward(lambda: None)
    finally:
        for h in handles:
            h.remove()
    model.zero_grad(set_to_none=True)
    return acc


def replace_with_pq(model: nn.Module, pq: Dict[str, PQWeight]) -> nn.Module:
    """Swaps each named Conv2d/Linear for a PQConv2d/PQLinear holding its PQWeight (bias kept);
    an EWGS layer (QConv2d/QLinear) keeps its quantisers and takes codes and codebook instead of
    its weight."""
    for name, weight in pq.items():
        install_pq(model, name, weight)
    return model


def gwk_compress(model: nn.Module, config: GWKConfig,
                 run_backward: Optional[Callable[[Callable[[], None]], None]] = None,
                 show_progress: bool = False):
    """Importances (unless uniform), batched GWK clustering and the swap to PQ layers, in place.

    run_backward: see :func:`accumulate_importance` (not needed for importance "uniform").
    Returns (model, report): report lists per layer the (d, k), bits per weight of the indices and
    the inertia-free facts, and the layers left in float with their reason."""
    plan, skipped = plan_layers(model, config)
    if not plan:
        raise ValueError(f"gwk_compress: no layer to quantise ({skipped})")
    importance = None
    if config.importance != "uniform":
        if run_backward is None:
            raise ValueError("gwk_compress: importance from gradients needs run_backward")
        importance = accumulate_importance(model, plan, run_backward, config.importance)
    weights = {n: model.get_submodule(n).weight for n in plan}
    pq = gwk_quantize(weights, plan, importance, beta=config.beta, iters=config.iters, seed=config.seed,
                      show_progress=show_progress)
    replace_with_pq(model, pq)
    report = {"layers": [{"name": n, "shape": list(p.shape), "d": p.config.d, "k": p.config.k,
                          "bits_per_weight": p.bits_per_weight["indices"]} for n, p in pq.items()],
              "float_layers": skipped}
    return model, report

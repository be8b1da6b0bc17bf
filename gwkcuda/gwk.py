"""GWK: gradient-weighted product quantisation of a model's Conv2d/Linear layers and recurrent
matrices (paper-spec 2.2-2.4).

1. Importances: per-weight |g| (or g^2) accumulated over T calibration batches
   (:func:`accumulate_importance`), or the per-sample Fisher sum of g_i^2 over calibration samples
   (:func:`gwkcuda.importance.fisher_importance`); "uniform" gives plain k-means, the baseline.
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
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .importance import MODES as IMPORTANCE_MODES
from .importance import accumulate_importance, check_samples, fisher_of_samples
from .nn import ewgs_layer, install_pq
from .pq import PQConfig, PQWeight, gwk_quantize  # noqa: F401  (gwk_quantize: part of this module's API)
from .weights import candidate_weights, gates, weight_of


@dataclass
class GWKConfig:
    """d, k: sub-vector length and codewords per layer (per-layer overrides in ``layers``: name ->
    (d, k)); importance: "abs" (sum of |g|), "square" (sum of g^2) or "uniform" (plain k-means);
    beta: None for the plain weighted mean, else importances become 1 + beta * s / mean(s);
    calib_batches: batches T for the importances; iters: Lloyd iterations; min_weights, keep_float:
    layers left in float; gate_codebooks: each gate of a recurrent matrix (LSTM 4, GRU 3) gets its
    own codebook (PQConfig groups), instead of one per matrix."""
    d: int = 4
    k: int = 16
    importance: str = "abs"
    beta: Optional[float] = None
    calib_batches: int = 16
    fisher_samples: int = 1024
    iters: int = 25
    min_weights: int = 1024
    keep_float: Tuple[str, ...] = ()
    layers: Dict[str, Tuple[int, int]] = field(default_factory=dict)
    seed: int = 0
    gate_codebooks: bool = False

    def __post_init__(self):
        if self.importance not in IMPORTANCE_MODES:
            raise ValueError(f"GWKConfig: expected importance one of {IMPORTANCE_MODES}, got {self.importance!r}")
        PQConfig(self.d, self.k)  # validates d and k
        if self.beta is not None and not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"GWKConfig: expected beta a finite number >= 0, or None, got {self.beta!r}")
        if not isinstance(self.calib_batches, int) or self.calib_batches < 1:
            raise ValueError(f"GWKConfig: expected calib_batches an int >= 1, got {self.calib_batches!r}")
        check_samples(self.fisher_samples, "GWKConfig")


def plan_layers(model: nn.Module, config: GWKConfig):
    """(plan, skipped): plan maps layer name -> PQConfig for each layer (Conv2d, Linear, or recurrent
    matrix named by its parameter, see gwkcuda.weights) to quantise; skipped maps the others to
    the reason they stay in float."""
    plan = {}
    found, skipped = candidate_weights(model, (nn.Conv2d, nn.Linear))
    for name, w in found:
        d, k = config.layers.get(name, (config.d, config.k))
        rows, K = w.shape[0], w[0].numel()
        groups = gates(model, name) if config.gate_codebooks else 1
        if name in config.keep_float:
            skipped[name] = "kept in float (keep_float)"
        elif w.numel() < config.min_weights:
            skipped[name] = f"{w.numel()} weights < min_weights {config.min_weights}"
        elif K % d:
            skipped[name] = f"row length {K} not divisible by d = {d}"
        elif rows * K // d < k:
            skipped[name] = f"{rows * K // d} sub-vectors < k = {k}"
        else:
            plan[name] = PQConfig(d, k, groups)
    return plan, skipped


def replace_with_pq(model: nn.Module, pq: Dict[str, PQWeight], keep_latent: bool = False) -> nn.Module:
    """Swaps each named Conv2d/Linear for a PQConv2d/PQLinear holding its PQWeight (bias kept);
    an EWGS layer (QConv2d/QLinear) keeps its quantisers and takes codes and codebook instead of
    its weight (and keeps the weight too with keep_latent, see nn.install_pq); a recurrent matrix
    becomes codes and codebook inside its module."""
    for name, weight in pq.items():
        install_pq(model, name, weight, keep_latent=keep_latent)
    return model


def gwk_compress(model: nn.Module, config: GWKConfig,
                 run_backward: Optional[Callable[[Callable[[], None]], None]] = None,
                 show_progress: bool = False, samples: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                 keep_latent: bool = False, freeze_latent: bool = False, only: Optional[Sequence[str]] = None):
    """Importances (unless uniform), batched GWK clustering and the swap to PQ layers, in place.

    run_backward: see :func:`accumulate_importance` (importances "abs" and "square").
    samples: (inputs [S, ...], targets [S]) for importance "fisher" (cross-entropy per sample; the
    first config.fisher_samples are used).
    keep_latent: the EWGS layers keep their float weights, trained straight through the codebooks
    (clustering inside retraining); the other planned layers (say a float classifier) are left
    for a later call without it. Called again on such a model, it clusters those weights afresh,
    each layer's k-means warm-started from its current codebook; with freeze_latent it clusters
    them no more: each such layer keeps its trained codebook and the codes its forward uses now
    (QConv2d.freeze_codes), and only the layers not clustered before are clustered.
    only: with keep_latent, the layers to cluster (progressive clustering, see latent_layers);
    the other EWGS layers are left as they are.
    Returns (model, report): report lists per layer the (d, k), bits per weight of the indices and
    the inertia-free facts, and the layers left in float with their reason."""
    if keep_latent and freeze_latent:
        raise ValueError("gwk_compress: expected keep_latent (cluster and keep training the latent weights) or "
                         "freeze_latent (stop clustering them), got both")
    plan, skipped = plan_layers(model, config)
    if keep_latent:
        for n in [n for n in plan if ewgs_layer(model, n) is None]:
            del plan[n]
            skipped[n] = "not an EWGS layer: clustered when the latent weights are dropped"
    if only is not None:
        if not keep_latent:
            raise ValueError("gwk_compress: only (a subset of the EWGS layers) goes with keep_latent")
        unknown = sorted(set(only) - set(plan))
        if unknown:
            raise ValueError(f"gwk_compress: expected only to name EWGS layers to quantise ({sorted(plan)}), "
                             f"got {unknown}")
        wanted = set(only)
        plan = {n: cfg for n, cfg in plan.items() if n in wanted}
    frozen = {}
    if freeze_latent:
        for n in list(_current_codebooks(model, plan)):
            module = ewgs_layer(model, n)
            module.freeze_codes()
            frozen[n] = module.pq_weight()
            del plan[n]
    if not plan and not frozen:
        raise ValueError(f"gwk_compress: no layer to quantise ({skipped})")
    pq = _cluster(model, plan, config, run_backward, samples, show_progress) if plan else {}
    replace_with_pq(model, pq, keep_latent=keep_latent)
    report = {"layers": [{"name": n, "shape": list(p.shape), "d": p.config.d, "k": p.config.k,
                          "bits_per_weight": p.bits_per_weight["indices"],
                          "codes": "frozen" if n in frozen else "clustered"} for n, p in {**frozen, **pq}.items()],
              "float_layers": skipped}
    return model, report


def latent_layers(model: nn.Module, config: GWKConfig) -> List[str]:
    """The EWGS layers gwk_compress(keep_latent=True) would cluster, in model order."""
    plan, _ = plan_layers(model, config)
    return [n for n in plan if ewgs_layer(model, n) is not None]


def _cluster(model: nn.Module, plan, config: GWKConfig, run_backward, samples, show_progress) -> Dict[str, PQWeight]:
    """name -> PQWeight of every planned layer: importances (unless uniform), then one batched
    GWK clustering, each layer clustered before warm-started from its current codebook."""
    importance = None
    if config.importance == "fisher":
        importance = fisher_of_samples(model, plan, samples, config.fisher_samples, "gwk_compress")
    elif config.importance != "uniform":
        if run_backward is None:
            raise ValueError("gwk_compress: importance from gradients needs run_backward")
        importance = accumulate_importance(model, plan, run_backward, config.importance)
    weights = {n: weight_of(model, n) for n in plan}
    return gwk_quantize(weights, plan, importance, beta=config.beta, iters=config.iters, seed=config.seed,
                        show_progress=show_progress, init=_current_codebooks(model, plan) or None)


def _current_codebooks(model: nn.Module, plan) -> Dict[str, torch.Tensor]:
    """name -> codebook [G, k, d] of each planned layer clustered before with the same PQConfig
    and still keeping its float weight: the warm start of its next clustering."""
    out = {}
    for name, cfg in plan.items():
        module = ewgs_layer(model, name)
        if module is not None and module.keeps_latent and module.pq_config == cfg:
            out[name] = module.codebook.detach()
    return out

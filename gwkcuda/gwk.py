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

from .allocate import min_distortion, pq_layer_bytes
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


K_CHOICES = (8, 16, 32, 64, 128, 256)


def allocate_layers(model: nn.Module, config: GWKConfig, budget_bits: float,
                    run_backward: Callable[[Callable[[], None]], None], *, k_choices: Sequence[int] = K_CHOICES,
                    float_bits: int = 32, samples: Optional[Tuple[torch.Tensor, torch.Tensor]] = None):
    """Per-layer k from sensitivity within a size budget: each planned layer (at its d) is clustered
    at every k of ``k_choices`` as gwk_compress would (config's importance), its distortion is the
    sensitivity-weighted squared error sum(F * (w - w_q)^2) with F the sum of g^2 over the
    calibration batches (an estimate of the loss the clustering adds, comparable across layers),
    and the k of all layers together minimise the summed distortion with the stored codes and
    codebooks at most ``budget_bits`` per clustered weight on average (exact, allocate.min_distortion).

    float_bits: bits of a codebook entry outside EWGS layers (whose codebooks are stored at the
    weight quantiser's bits): 32, or 16 for a file stored in float16.
    Returns (layers, report): layers maps name -> (d, k), for GWKConfig.layers; report holds the
    budget, the bytes chosen and, per layer, the options (k, bytes, distortion) and the choice."""
    if not (isinstance(budget_bits, (int, float)) and math.isfinite(budget_bits) and budget_bits > 0):
        raise ValueError(f"allocate_layers: expected budget_bits a finite number > 0 (bits per weight), "
                         f"got {budget_bits!r}")
    if not k_choices or any(not isinstance(k, int) or isinstance(k, bool) or not 2 <= k <= 2**16 for k in k_choices):
        raise ValueError(f"allocate_layers: expected k_choices ints in 2..65536, got {k_choices!r}")
    plan, _ = plan_layers(model, config)
    if not plan:
        raise ValueError("allocate_layers: no layer to quantise")
    check_budget(model, config, budget_bits, k_choices, float_bits)
    fisher = accumulate_importance(model, plan, run_backward, "square")
    importance = fisher if config.importance == "square" else _importances(model, plan, config, run_backward,
                                                                             samples)
    weights = {n: weight_of(model, n).detach() for n in plan}
    sizes = {n: _sizes(model, n, cfg, k_choices, float_bits) for n, cfg in plan.items()}
    options = {n: [] for n in plan}
    for k in sorted(set(k_choices)):
        plan_k = {n: PQConfig(cfg.d, k, cfg.groups) for n, cfg in plan.items() if k in sizes[n]}
        if not plan_k:
            continue
        pq = gwk_quantize({n: weights[n] for n in plan_k}, plan_k, importance, beta=config.beta,
                          iters=config.iters, seed=config.seed)
        for n, p in pq.items():
            w = weights[n].float()
            err = float((fisher[n] * (w - p.decode().float().reshape(w.shape)) ** 2).sum())
            options[n].append((k, sizes[n][k], err))
    total = sum(weights[n].numel() for n in plan)
    budget = int(budget_bits * total // 8)
    pick = min_distortion({n: [(b, e) for _, b, e in opts] for n, opts in options.items()}, budget)
    layers = {n: (plan[n].d, options[n][j][0]) for n, j in pick.items()}
    chosen = sum(options[n][j][1] for n, j in pick.items())
    report = {"budget_bits": budget_bits, "budget_bytes": budget, "bytes": chosen,
              "bits_per_weight": 8 * chosen / total, "k_choices": sorted(set(k_choices)),
              "layers": [{"name": n, "d": plan[n].d, "k": layers[n][1], "bytes": options[n][pick[n]][1],
                          "options": [list(o) for o in options[n]]} for n in plan]}
    return layers, report


def check_budget(model: nn.Module, config: GWKConfig, budget_bits: float, k_choices: Sequence[int] = K_CHOICES,
                 float_bits: int = 32, ewgs_bits: Optional[int] = None) -> None:
    """Raises ValueError when ``budget_bits`` is below what allocate_layers can meet (every planned
    layer at its smallest k), before any clustering or training. ewgs_bits: the codebook bits of
    layers that are to become EWGS layers (say a float model before QAT); the EWGS layers already
    there count at their own."""
    plan, _ = plan_layers(model, config)
    smallest = total = 0
    for n, cfg in plan.items():
        sizes = _sizes(model, n, cfg, k_choices, ewgs_bits or float_bits)
        smallest += min(sizes.values(), default=0)
        total += weight_of(model, n).numel()
    if total and 8 * smallest > budget_bits * total:
        raise ValueError(f"allocate_layers: expected budget_bits at least {8 * smallest / total:.4f} (every layer "
                         f"at its smallest k of {sorted(set(k_choices))}), got {budget_bits!r}")


def _sizes(model: nn.Module, name: str, cfg: PQConfig, k_choices: Sequence[int], other_bits: int) -> Dict[int, int]:
    """k -> stored bytes of layer ``name`` at (cfg.d, k), for each k of k_choices that leaves every
    codeword a sub-vector; codebook entries at an EWGS layer's weight bits, else ``other_bits``."""
    w, module = weight_of(model, name), ewgs_layer(model, name)
    cb_bits = module.bits_w if module is not None else other_bits
    return {k: pq_layer_bytes(w.shape[0], w[0].numel(), cfg.d, k, cb_bits, cfg.groups)
            for k in sorted(set(k_choices)) if w.numel() // cfg.d >= k * cfg.groups}


def _importances(model: nn.Module, plan, config: GWKConfig, run_backward, samples):
    """name -> per-weight importance of every planned layer under config.importance (None: uniform)."""
    if config.importance == "fisher":
        return fisher_of_samples(model, plan, samples, config.fisher_samples, "gwk_compress")
    if config.importance == "uniform":
        return None
    if run_backward is None:
        raise ValueError("gwk_compress: importance from gradients needs run_backward")
    return accumulate_importance(model, plan, run_backward, config.importance)


def _cluster(model: nn.Module, plan, config: GWKConfig, run_backward, samples, show_progress) -> Dict[str, PQWeight]:
    """name -> PQWeight of every planned layer: importances (unless uniform), then one batched
    GWK clustering, each layer clustered before warm-started from its current codebook."""
    importance = _importances(model, plan, config, run_backward, samples)
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

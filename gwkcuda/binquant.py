"""Bin & Quant: compression of a trained model with no retraining, guided by sensitivity
(paper-spec section 1; the authors' public B&Q code).

Each selected layer's weights are binned by edges e_0 < ... < e_B (initially min, mu-sigma, mu,
mu+sigma, max of the layer's weights; half-open bins, the last closed) and every weight is replaced
by its bin's value: the bin midpoint (the authors' rule) or the mean of its members. While the
model misses its accuracy floor, the most sensitive bin is split at its middle, up to max_bins.
Sensitivity of a bin: the accuracy after scaling only that bin's weights by (1 + p_bin)
("perturb", one evaluation per new bin), or our second-order proxy of the loss its quantisation
costs, sum g_i^2 (w_i - q_j)^2 over its weights with g accumulated over calibration batches
("gradient", no evaluations per bin). In gradient mode the whole split sequence up to max_bins is known
without evaluating, so the fewest bins that meet the floor are found by bisection over it
(about log2(max_bins) evaluations per layer instead of one per bin count).

Budget: layers are processed largest first, and each receives a share of max_drop proportional
to its number of weights (the bits at stake): after compressing the layers holding a fraction f of
the selected weights, the model (every layer so far compressed) must keep accuracy >=
A0 - max_drop * f on the search data, so the whole model ends within max_drop of A0, and budget a
layer leaves unused passes to the next. The fewest bins that meet the floor are kept; a layer that
cannot meet it with max_bins bins stays uncompressed.
"""
import math
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import torch
from torch import nn

from . import model_file
from .importance import check_samples, fisher_of_samples
from .progress import progress
from .weights import compressible_weights, module_kind, owner, parameter_name, skipped_weights, weight_of


@dataclass
class BinQuantConfig:
    """max_drop: accuracy points (percent) the model may lose on the search data; max_bins: bins
    per layer at most; p_layer, p_bin: multiplicative perturbations for layer and bin sensitivity;
    sensitivity: "perturb" or "gradient"; values: "midpoint" or "mean"; min_weights: smaller
    layers stay uncompressed; layer_sensitivity: measure (and report) each layer's S_l, two
    evaluations per layer; share: "none" (bins per layer) or "kind" (one set of bins and values
    shared by all layers of one kind, searched and stored once, as the ICASSP paper allows);
    allocation: "layer" (the authors' greedy, layer by layer, each with its share of the budget)
    or "global" (gradient mode: one split order across all layers by estimated loss cost per
    weight, and one bisection over it with every layer quantised, against the whole budget);
    importance (gradient mode): "square", the square of the calibration gradient (grad_fn's
    backward passes summed), or "fisher", the sum over fisher_samples calibration samples of their
    own squared gradients (see gwkcuda.importance)."""
    max_drop: float = 1.0
    max_bins: int = 16
    p_layer: float = 0.03
    p_bin: float = 0.2
    sensitivity: str = "perturb"
    values: str = "midpoint"
    min_weights: int = 1024
    layer_sensitivity: bool = True
    share: str = "none"
    allocation: str = "layer"
    importance: str = "square"
    fisher_samples: int = 1024
    progress: bool = False

    def __post_init__(self):
        if self.sensitivity not in ("perturb", "gradient"):
            raise ValueError(f"BinQuantConfig: expected sensitivity 'perturb' or 'gradient', got {self.sensitivity!r}")
        if self.values not in ("midpoint", "mean"):
            raise ValueError(f"BinQuantConfig: expected values 'midpoint' or 'mean', got {self.values!r}")
        if not 2 <= self.max_bins <= 2**16:
            raise ValueError(f"BinQuantConfig: expected max_bins in 2..65536, got {self.max_bins}")
        if self.allocation not in ("layer", "global"):
            raise ValueError(f"BinQuantConfig: expected allocation 'layer' or 'global', got {self.allocation!r}")
        if self.allocation == "global" and self.sensitivity != "gradient":
            raise ValueError("BinQuantConfig: allocation 'global' needs sensitivity 'gradient' (its split "
                             "order comes from gradients, without evaluations)")
        if self.importance not in ("square", "fisher"):
            raise ValueError(f"BinQuantConfig: expected importance 'square' or 'fisher', got {self.importance!r}")
        check_samples(self.fisher_samples, "BinQuantConfig")
        if self.share not in ("none", "kind"):
            raise ValueError(f"BinQuantConfig: expected share 'none' or 'kind', got {self.share!r}")
        if not (math.isfinite(self.max_drop) and self.max_drop >= 0):
            raise ValueError(f"BinQuantConfig: expected max_drop a finite number >= 0, got {self.max_drop}")


@dataclass
class LayerResult:
    name: str
    shape: List[int]
    edges: Optional[List[float]]  # None: left uncompressed
    values: Optional[List[float]]
    accuracy: float               # model accuracy after this layer (search data)
    sensitivity: Optional[float]  # layer sensitivity S_l (mean accuracy under +-p_layer)
    evaluations: int
    searched_edges: List[float] = field(default_factory=list)  # the finest binning tried
    members: List[str] = field(default_factory=list)  # layers sharing these bins (name first)
    shapes: List[List[int]] = field(default_factory=list)

    @property
    def bins(self) -> int:
        return 0 if self.edges is None else len(self.edges) - 1


@dataclass
class BinQuantResult:
    model: nn.Module
    layers: List[LayerResult]
    evaluations: int
    baseline_accuracy: float
    accuracy: float
    seconds: float
    report: dict = field(default_factory=dict)
    uint8: dict = field(default_factory=dict)  # name -> Uint8Weight of the compressed uint8 layers


def initial_edges(v: torch.Tensor) -> List[float]:
    """[min, mu - sigma, mu, mu + sigma, max] of v, kept strictly increasing inside [min, max]."""
    lo, hi = float(v.min()), float(v.max())
    mu, sigma = float(v.mean()), float(v.std())
    inner = sorted({e for e in (mu - sigma, mu, mu + sigma) if lo < e < hi})
    return [lo] + inner + [hi]


def bin_index(v: torch.Tensor, edges: List[float]) -> torch.Tensor:
    """Bin of each weight: half-open [e_j, e_{j+1}), the last bin closed [e_{B-1}, e_B]."""
    inner = torch.tensor(edges[1:-1], dtype=v.dtype, device=v.device)
    return torch.bucketize(v, inner, right=True).clamp_max(len(edges) - 2)


def bin_values(v: torch.Tensor, edges: List[float], idx: torch.Tensor, rule: str) -> torch.Tensor:
    """Each bin's value: its midpoint, or the mean of its members (midpoint if it has none)."""
    e = torch.tensor(edges, dtype=torch.float64)
    mid = (e[:-1] + e[1:]) / 2
    if rule == "midpoint":
        return mid.to(v.dtype)
    B = len(edges) - 1
    sums = torch.zeros(B, dtype=torch.float64).index_add_(0, idx.cpu(), v.double().cpu())
    counts = torch.bincount(idx.cpu(), minlength=B).double()
    return torch.where(counts > 0, sums / counts.clamp_min(1), mid).to(v.dtype)


def quantize(v: torch.Tensor, edges: List[float], rule: str = "midpoint", integer: bool = False):
    """(quantised v, bin indices, bin values); integer: values rounded (uint8 codes)."""
    idx = bin_index(v, edges)
    values = bin_values(v, edges, idx, rule)
    if integer:
        values = values.round().clamp(0, 255)
    return values.to(v.device)[idx], idx, values


def _split(edges: List[float], j: int) -> List[float]:
    """Edges with bin j split at its middle."""
    return edges[: j + 1] + [(edges[j] + edges[j + 1]) / 2] + edges[j + 1:]


def _grow_bins(v, config, accuracy_with, floor, perturbed_accuracy):
    """The authors' search: from the initial edges, while the model misses the floor, split the bin
    whose perturbation hurts accuracy most (one evaluation per new bin; unchanged bins cached).
    Returns (edges or None, accuracy, the finest edges tried)."""
    edges = initial_edges(v)
    cache = {}
    while True:
        acc = accuracy_with(edges)
        if acc >= floor:
            return list(edges), acc, list(edges)
        if len(edges) - 1 >= config.max_bins:
            return None, None, list(edges)
        idx = bin_index(v, edges)
        scores = []
        for j in range(len(edges) - 1):
            key = (edges[j], edges[j + 1])
            if key not in cache:
                cache[key] = perturbed_accuracy(idx == j)  # lower accuracy: more sensitive
            scores.append(cache[key])
        edges = _split(edges, min(range(len(scores)), key=lambda j: scores[j]))


def split_sequence(v: torch.Tensor, fisher: torch.Tensor, max_bins: int, rule: str = "midpoint",
                   integer: bool = False) -> List[List[float]]:
    """Gradient mode's binnings from the initial edges up to max_bins bins, each one the previous
    with one bin split at its middle: the bin whose quantisation costs the most loss by the
    second-order (Fisher) estimate sum_i g_i^2 (v_i - q_j)^2 over its members. Splitting it
    halves its width, so each step removes about 3/4 of the largest estimated cost. Needs no
    evaluation. fisher: g^2 per element of v (in v's units: the chain rule factor of uint8 codes
    scales every element alike and does not change the order)."""
    edges = initial_edges(v)
    sequence = [edges]
    f = fisher.double()
    while len(edges) - 1 < max_bins:
        q, idx, _ = quantize(v, edges, rule, integer)
        cost = torch.zeros(len(edges) - 1, dtype=torch.float64).index_add_(0, idx, f * (v.double() - q.double()) ** 2)
        edges = _split(edges, int(torch.argmax(cost)))
        sequence.append(edges)
    return sequence


def _fewest_passing(last: int, accuracy_at, floor):
    """Bisection for the smallest step t in 0..last whose accuracy meets the floor, assuming
    accuracy grows with t: (t, its accuracy), or (None, None) if even ``last`` misses. Each step
    is evaluated at most once; about log2(last) evaluations."""
    acc = {}

    def ok(t):
        if t not in acc:
            acc[t] = accuracy_at(t)
        return acc[t] >= floor

    if ok(0):
        return 0, acc[0]
    if not ok(last):
        return None, None
    lo, hi = 0, last  # ok(hi), not ok(lo)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi, acc[hi]


def _bisect_bins(v, fisher, max_bins, accuracy_with, floor, rule="midpoint", integer=False):
    """Gradient mode: the split order needs no evaluations, so the fewest bins meeting the floor
    are found by bisection over the sequence (about log2(max_bins) evaluations instead of one per
    bin count); the result always meets the floor."""
    sequence = split_sequence(v, fisher, max_bins, rule, integer)
    t, acc = _fewest_passing(len(sequence) - 1, lambda i: accuracy_with(sequence[i]), floor)
    if t is None:
        return None, None, list(sequence[-1])
    return list(sequence[t]), acc, list(sequence[-1])


@dataclass
class Uint8Weight:
    """A weight held as uint8 codes with an affine scale and zero point: w = (codes - zero_point) * scale."""
    codes: torch.Tensor
    scale: float
    zero_point: int

    def dequantize(self, codes=None) -> torch.Tensor:
        return ((self.codes if codes is None else codes).float() - self.zero_point) * self.scale


def quantize_uint8(model: nn.Module, min_weights: int = 1024) -> dict:
    """Turns the model into a uint8 model (per-tensor affine, as TFLite): every compressible weight
    (gwkcuda.weights) with >= min_weights weights becomes its uint8 dequantisation, in place.
    Returns name -> Uint8Weight, to pass to :func:`bin_and_quant` as ``uint8``."""
    out = {}
    for name, weight in compressible_weights(model, min_weights):
        w = weight.data
        lo, hi = min(float(w.min()), 0.0), max(float(w.max()), 0.0)
        scale = (hi - lo) / 255 or 1.0
        zero_point = int(round(-lo / scale))
        codes = torch.clamp(torch.round(w / scale) + zero_point, 0, 255).to(torch.uint8)
        out[name] = Uint8Weight(codes, scale, zero_point)
        w.copy_(out[name].dequantize().view_as(w))
    return out


class _Unit:
    """The layers binned together (one layer, or every layer of one kind when sharing): the values
    v being binned (the weights, or uint8 codes), and writing binned values back as weights."""

    def __init__(self, layers, uint8):
        self.names = [n for n, _ in layers]
        self.weights = [w.data for _, w in layers]
        self.originals = [w.clone() for w in self.weights]
        self.codecs = [uint8.get(n) for n in self.names]
        self.v = torch.cat([(c.codes.float() if c is not None else w).reshape(-1)
                            for w, c in zip(self.originals, self.codecs)])
        self.sizes = [w.numel() for w in self.weights]
        self.is_uint8 = all(c is not None for c in self.codecs)
        if any(c is not None for c in self.codecs) and not self.is_uint8:
            raise ValueError(f"bin_and_quant: layers {self.names} share bins but only some are uint8")

    @property
    def numel(self):
        return sum(self.sizes)

    def set_values(self, v):
        for w, c, part in zip(self.weights, self.codecs, v.split(self.sizes)):
            w.copy_((part if c is None else c.dequantize(part)).view_as(w))

    def scale_weights(self, factor):
        """Every weight of the unit times factor."""
        for w, o in zip(self.weights, self.originals):
            w.copy_(o * factor)

    def perturb(self, members, p):
        """Only the weights selected by ``members`` (a mask over v) times (1 + p)."""
        for w, o, m in zip(self.weights, self.originals, members.split(self.sizes)):
            w.copy_(torch.where(m.view_as(o), o * (1 + p), o))

    def restore(self):
        for w, o in zip(self.weights, self.originals):
            w.copy_(o)


def _units(model, config):
    """Lists of (name, weight) binned together, largest first: one per layer, or with
    share="kind" one per layer kind (Conv1d, Conv2d, Linear, Embedding, and the recurrent
    matrices of each of LSTM, GRU, RNN)."""
    layers = compressible_weights(model, config.min_weights)
    if config.share == "none":
        return [[nw] for nw in layers]
    kinds = {}
    for name, w in layers:
        kinds.setdefault(module_kind(owner(model, name)), []).append((name, w))
    return sorted(kinds.values(), key=lambda u: -sum(w.numel() for _, w in u))


def bin_and_quant(model: nn.Module, eval_fn: Callable[[nn.Module], float], config: BinQuantConfig,
                  grad_fn: Optional[Callable[[nn.Module], None]] = None,
                  uint8: Optional[dict] = None,
                  samples: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> BinQuantResult:
    """Compresses ``model`` in place (its selected weights become bin values).

    Args:
        model: a trained float model, or a uint8 model (see ``uint8``).
        eval_fn: model -> accuracy in [0, 1] on the search data.
        config: BinQuantConfig.
        grad_fn: model -> None, runs backward over calibration batches (gradient mode, importance
            "square").
        samples: (inputs [S, ...], targets [S]) for importance "fisher" (cross-entropy per
            sample; the first config.fisher_samples are used).
        uint8: name -> Uint8Weight for layers held as uint8 codes (see :func:`quantize_uint8`);
            their bins are taken over the codes and bin values are rounded to integer codes, as
            the authors' code does for TFLite models; the scale and zero point are kept.
    Returns:
        BinQuantResult with the model, a per-layer table, the evaluations spent, accuracies and a
        report dict (without file sizes: see :func:`save_binquant` for those).
    """
    start = time.perf_counter()
    counter = {"n": 0}
    uint8 = uint8 or {}

    def evaluate():
        counter["n"] += 1
        with torch.no_grad():
            return float(eval_fn(model))

    units = [_Unit(u, uint8) for u in _units(model, config)]
    if not units:
        raise ValueError(f"bin_and_quant: no Conv/Linear/Embedding layer or recurrent matrix with >= "
                         f"{config.min_weights} weights")
    importance = {}
    if config.sensitivity == "gradient" and config.importance == "fisher":
        fisher = fisher_of_samples(model, [nm for u in units for nm in u.names], samples, config.fisher_samples,
                                   "bin_and_quant")
        for unit in units:
            importance[unit.names[0]] = torch.cat([fisher[nm].reshape(-1) for nm in unit.names])
    elif config.sensitivity == "gradient":
        if grad_fn is None:
            raise ValueError("bin_and_quant: the gradient mode needs grad_fn (runs backward over calibration batches)")
        model.zero_grad(set_to_none=True)
        grad_fn(model)
        for unit in units:
            parts = []
            for name, w in zip(unit.names, unit.weights):
                g = weight_of(model, name).grad
                if g is None:
                    raise ValueError(f"bin_and_quant: grad_fn left no gradient on {parameter_name(name)}")
                parts.append((g.detach() ** 2).reshape(-1))
            importance[unit.names[0]] = torch.cat(parts)
        model.zero_grad(set_to_none=True)

    baseline = evaluate()
    if config.allocation == "global":
        try:
            results = _global_allocation(units, importance, config, evaluate,
                                         baseline - config.max_drop / 100, counter)
            return _result(model, results, counter, baseline, start, uint8, config)
        except _GlobalMiss:
            for unit in units:
                unit.restore()
    total_weights = sum(u.numel for u in units)
    done_weights = 0
    results = []
    bar = progress(None, config.progress, total=len(units), desc="bin & quant", unit="layer")
    for unit in units:
        spent = counter["n"]
        rule = config.values
        v = unit.v

        # Layer sensitivity: mean accuracy with the layer scaled by 1 +- p_layer (reported).
        layer_sensitivity = None
        if config.layer_sensitivity:
            accs = []
            for sign in (1, -1):
                unit.scale_weights(1 + sign * config.p_layer)
                accs.append(evaluate())
            unit.restore()
            layer_sensitivity = sum(accs) / 2

        done_weights += unit.numel
        floor = baseline - config.max_drop / 100 * done_weights / total_weights

        def accuracy_with(edges):
            bar.set_postfix(layer=unit.names[0], bins=len(edges) - 1, evaluations=counter["n"])
            unit.set_values(quantize(v, edges, rule, integer=unit.is_uint8)[0])
            return evaluate()

        if config.sensitivity == "gradient":
            chosen, chosen_acc, searched = _bisect_bins(v, importance[unit.names[0]], config.max_bins,
                                                        accuracy_with, floor, rule, unit.is_uint8)
        else:
            def perturbed(members):
                unit.perturb(members, config.p_bin)
                return evaluate()
            chosen, chosen_acc, searched = _grow_bins(v, config, accuracy_with, floor, perturbed)
        if chosen is None:
            unit.restore()
            chosen_acc = evaluate()
            values = None
        else:
            q, _, values = quantize(v, chosen, rule, integer=unit.is_uint8)
            unit.set_values(q)
            values = values.tolist()
        shapes = [list(w.shape) for w in unit.weights]
        results.append(LayerResult(unit.names[0], shapes[0], chosen, values, chosen_acc, layer_sensitivity,
                                   counter["n"] - spent, searched, members=unit.names, shapes=shapes))
        bar.set_postfix(layer=unit.names[0], bins=results[-1].bins, acc=f"{chosen_acc:.4f}")
        bar.update(1)
    bar.close()
    return _result(model, results, counter, baseline, start, uint8, config)


def _result(model, results, counter, baseline, start, uint8, config) -> BinQuantResult:
    final = results[-1].accuracy
    result = BinQuantResult(model, results, counter["n"], baseline, final, time.perf_counter() - start)
    result.uint8 = {n: uint8[n] for r in results if r.edges is not None for n in r.members if n in uint8}
    result.report = {
        "method": "binquant", "baseline_accuracy": baseline, "accuracy": final,
        "evaluations": counter["n"], "seconds": result.seconds,
        "layers": [{"name": r.name, "members": r.members, "shape": r.shape,
                    "method": "binquant" if r.edges else "float32", "bins": r.bins,
                    "bits_per_weight": math.ceil(math.log2(r.bins)) if r.bins else 32,
                    "accuracy": r.accuracy, "sensitivity": r.sensitivity, "evaluations": r.evaluations}
                   for r in results],
        "float_layers": skipped_weights(model, config.min_weights)}
    return result


def global_split_order(units, fishers, rule: str, max_bins: int):
    """The splits of the global allocation, in order: (unit index, bin's lower edge, upper edge).

    Every unit starts from its initial edges; each step splits, across all units, the bin with
    the largest estimated loss cost per weight, sum_i g_i^2 (v_i - q)^2 / n over its n members
    (the cost removed per bit of index spent, to first order), up to max_bins per unit."""
    import heapq

    heap, edges, order = [], [], []
    sorted_units = []
    for u, (unit, fisher) in enumerate(zip(units, fishers)):
        vs, perm = torch.sort(unit.v.double())
        fs = fisher.double()[perm]
        sorted_units.append((vs, fs))
        edges.append(initial_edges(unit.v))

    def push(u, lo, hi, last):
        vs, fs = sorted_units[u]
        a = int(torch.searchsorted(vs, lo, right=False))
        b = int(torch.searchsorted(vs, hi, right=last))
        if b <= a:
            return
        members = vs[a:b]
        q = (lo + hi) / 2 if rule == "midpoint" else float(members.mean())
        if units[u].is_uint8:
            q = min(max(round(q), 0), 255)
        cost = float((fs[a:b] * (members - q) ** 2).sum()) / (b - a)
        heapq.heappush(heap, (-cost, u, lo, hi, last))

    for u, e in enumerate(edges):
        for j in range(len(e) - 1):
            push(u, e[j], e[j + 1], j == len(e) - 2)
    while heap:
        _, u, lo, hi, last = heapq.heappop(heap)
        if len(edges[u]) - 1 >= max_bins:
            continue
        mid = (lo + hi) / 2
        edges[u].insert(edges[u].index(hi), mid)
        order.append((u, lo, hi))
        push(u, lo, mid, False)
        push(u, mid, hi, last)
    return order


def _global_allocation(units, importance, config, evaluate, floor, counter):
    """allocation="global": bisection over the global split order for the fewest splits whose
    model (every unit quantised) meets the floor; if even the finest state misses it, the
    layer-by-layer search runs instead."""
    rule = config.values
    fishers = [importance[u.names[0]] for u in units]
    order = global_split_order(units, fishers, rule, config.max_bins)

    def state(t):
        edges = [initial_edges(u.v) for u in units]
        for u, lo, hi in order[:t]:
            e = edges[u]
            e.insert(e.index(hi), (lo + hi) / 2)
        return edges

    # The bisection evaluates no split and every split, then halves [0, len(order)]: log2 of it more.
    bar = progress(None, config.progress, total=math.ceil(math.log2(len(order) + 1)) + 2,
                   desc="bin & quant (global)", unit="evaluation")

    def accuracy_at(t):
        for unit, e in zip(units, state(t)):
            unit.set_values(quantize(unit.v, e, rule, integer=unit.is_uint8)[0])
        acc = evaluate()
        bar.set_postfix(splits=t, accuracy=f"{acc:.4f}")
        bar.update(1)
        return acc

    hi, final_acc = _fewest_passing(len(order), accuracy_at, floor)
    bar.close()
    if hi is None:
        raise _GlobalMiss()
    final = state(hi)
    results = []
    for i, (unit, e) in enumerate(zip(units, final)):
        q, _, values = quantize(unit.v, e, rule, integer=unit.is_uint8)
        unit.set_values(q)
        shapes = [list(w.shape) for w in unit.weights]
        results.append(LayerResult(unit.names[0], shapes[0], list(e), values.tolist(), final_acc, None,
                                   counter["n"] if i == 0 else 0, list(e), members=unit.names, shapes=shapes))
    return results


class _GlobalMiss(Exception):
    """The finest global state misses the floor."""


def save_binquant(path, result: BinQuantResult, arch: Optional[dict] = None, **storage) -> dict:
    """Writes the compressed model (gwkcuda.model_file format: per compressed layer its bin
    indices, bit array or Huffman, and the bin values, stored once per set of shared bins; uint8
    layers keep their scale and zero point) and returns :func:`gwkcuda.model_file.describe` of the
    file: every byte counted against the fp32 model. arch, storage (float_dtype, fold_batchnorm):
    see save_model."""
    model = result.model
    bins = {}
    for r in result.layers:
        if r.edges is None:
            continue
        owner = parameter_name(r.members[0])
        for i, name in enumerate(r.members):
            codec = result.uint8.get(name)
            v = codec.codes.float() if codec is not None else weight_of(model, name).detach()
            entry = {"indices": bin_index(v.reshape(-1).float(), r.edges)}
            if i == 0:
                dtype = torch.uint8 if codec is not None else torch.float32
                entry["values"] = torch.tensor(r.values, dtype=dtype)
            else:
                entry["values_from"] = owner
            if codec is not None:
                entry["affine"] = [codec.scale, codec.zero_point]
            bins[parameter_name(name)] = entry
    return model_file.save_model(path, model, arch=arch, bins=bins, meta={"method": "binquant"},
                                 **storage)


def load_binquant(path, model: Optional[nn.Module] = None) -> nn.Module:
    """Loads a file written by :func:`save_binquant` (into ``model`` when given)."""
    return model_file.load_model(path, model)

"""EWGS quantization-aware training (Lee, Kim, Ham, CVPR 2021; paper-spec 4.1).

Weights and input activations of a layer are quantised to b bits by a discretizer whose forward
rounds and whose backward scales each element's gradient (element-wise gradient scaling):

    g_x = g_xq * (1 + delta * sign(g_xq) * (x - x_q)),       x, x_q in the normalised [0, 1]

delta = 0 is the straight-through estimator. Per layer, with learnable bounds (l, u) and output
scale alpha:
    weights:     w_hat = clamp((w - l_W) / (u_W - l_W), 0, 1);  w_q = 2 (round(w_hat (L-1)) / (L-1) - 0.5)
    activations: a_hat = clamp((a - l_A) / (u_A - l_A), 0, 1);  a_q = round(a_hat (L-1)) / (L-1)
    output = op(a_q, w_q) * |alpha| (+ bias)
Bounds are initialised on the first batch (u_W = -l_W = 3 sigma(W); l_A = min(a),
u_A = 3 sigma(a) / sqrt(1 - 2/pi)) and alpha so that the mean output magnitude matches the float
layer's. delta is either fixed or estimated from the Hessian trace (:func:`update_delta`).
"""
import math
from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import ewgs_reference, ops
from .pq import PQWeight
from .ewgs_reference import EWGSDiscretizer


def ewgs_round(x: torch.Tensor, bits: int, delta=0.0) -> torch.Tensor:
    """EWGS discretizer of x in [0, 1] at 2**bits levels (delta: float or 0-d tensor)."""
    return EWGSDiscretizer.apply(x, 2 ** bits, delta)


def ewgs_quantize_reference(x: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, bits: int,
                            delta) -> torch.Tensor:
    """The quantiser of the layers below as torch ops (ewgs_reference.ewgs_quantize at 2**bits levels).
    ops.ewgs_quantize computes the same values and gradients in one pass each way
    (tests/test_ewgs_op.py); this form is the reference, and what the layers run with
    ``_Quantized.fused = False`` (bench/bench_train.py times both)."""
    return ewgs_reference.ewgs_quantize(x, lower, upper, 2 ** bits, delta)


class _Quantized:
    """Mixed into nn.Conv2d / nn.Linear: EWGS quantisation of weight and input activation."""

    def _init_quant(self, bits_w: int, bits_a: Optional[int]):
        if not (isinstance(bits_w, int) and 1 <= bits_w <= 16):
            raise ValueError(f"{type(self).__name__}: expected bits_w in 1..16, got {bits_w!r}")
        if bits_a is not None and not (isinstance(bits_a, int) and 1 <= bits_a <= 16):
            raise ValueError(f"{type(self).__name__}: expected bits_a in 1..16 or None, got {bits_a!r}")
        self.bits_w, self.bits_a = bits_w, bits_a
        self.w_lower = nn.Parameter(torch.tensor(-1.0))
        self.w_upper = nn.Parameter(torch.tensor(1.0))
        self.a_lower = nn.Parameter(torch.tensor(0.0))
        self.a_upper = nn.Parameter(torch.tensor(1.0))
        self.output_scale = nn.Parameter(torch.tensor(1.0))
        self.register_buffer("delta_w", torch.tensor(0.0))
        self.register_buffer("delta_a", torch.tensor(0.0))
        self.register_buffer("initialized", torch.tensor(False))
        self.codebook = None  # set by use_pq
        self.keep_grad = False  # update_delta: keep the discretizer outputs (graph nodes) for Hessian estimates
        self.last_wq = self.last_aq = None

    def latent_weight(self) -> torch.Tensor:
        """The float weight the quantiser sees: the parameter, or after :meth:`use_pq` the
        product-quantised weight decoded from codes and codebook (differentiable in the codebook).
        While the layer keeps its float weight (use_pq(..., keep_latent=True)), the codes follow
        it: each forward assigns every sub-vector of the float weight to its nearest codeword, and
        the decoded weight passes its gradient on to the float weight (straight-through), so that
        the float weight trains with the quantised forward in the loop and can be clustered
        again."""
        if self.codebook is None:
            return self.weight
        if not self.keeps_latent:
            return ops.pq_decode(self.codes, self.codebook).reshape(self.weight_shape)
        with torch.no_grad():
            self.codes.copy_(self._nearest_codes())
        decoded = ops.pq_decode(self.codes, self.codebook).reshape(self.weight_shape)
        return decoded + (self.weight - self.weight.detach())

    def _nearest_codes(self) -> torch.Tensor:
        """[N, K/d]: the nearest codeword of each d-long sub-vector of the float weight (rows of
        [N, K] cut along K), in its row group's codebook."""
        G, k, d = self.codebook.shape
        points = self.weight.detach().reshape(G, -1, d).to(self.codebook.dtype)
        labels, _ = ops.kmeans_assign(points.contiguous(), self.codebook.detach().contiguous())
        return labels.reshape(self.codes.shape)

    @property
    def keeps_latent(self) -> bool:
        return self.codebook is not None and isinstance(getattr(self, "weight", None), nn.Parameter)

    def use_pq(self, pq: PQWeight, keep_latent: bool = False) -> None:
        """Replaces the weight parameter by fixed codes and a trainable codebook (GWK-PQ of the
        latent weights; EWGS then quantises the decoded weight element-wise). keep_latent: keep
        the float weight as well, trained straight through the codebook (clustering inside
        retraining: the next use_pq clusters it again); False drops it (codes fixed from then on)."""
        expected = tuple(self.weight_shape if self.codebook is not None else self.weight.shape)
        if tuple(pq.shape) != expected:
            raise ValueError(f"{type(self).__name__}.use_pq: expected a PQ weight of shape {list(expected)}, "
                             f"got {list(pq.shape)}")
        if not keep_latent and hasattr(self, "weight"):
            del self.weight
        self.register_buffer("codes", pq.codes.clone())
        self.codebook = nn.Parameter(pq.codebook.clone())
        self.pq_config, self.weight_shape = pq.config, tuple(pq.shape)

    def freeze_codes(self) -> None:
        """Ends clustering inside retraining without clustering again: the codes stay those the
        forward uses now (each latent sub-vector's nearest codeword), the codebook stays as
        trained, and the float weight is dropped, so the layer computes what it computed."""
        if not self.keeps_latent:
            raise ValueError(f"{type(self).__name__}.freeze_codes: expected a layer that keeps its latent "
                             "weight (use_pq(..., keep_latent=True)), got one without")
        with torch.no_grad():
            codes = self._nearest_codes().to(self.codes.dtype)
        self.use_pq(PQWeight(codes, self.codebook.detach(), self.weight_shape, self.pq_config))

    def codebook_levels(self) -> torch.Tensor:
        """The codebook as the integer levels [0, 2**bits_w) the weight quantiser maps it to: all
        a deployed model needs, since quantisation is element-wise (Q(C)[codes] = Q(C[codes]))."""
        w_hat = ((self.codebook.detach() - self.w_lower) / (self.w_upper - self.w_lower)).clamp(0, 1)
        return torch.round(w_hat * (2 ** self.bits_w - 1)).to(torch.int32)

    def set_codebook_levels(self, levels: torch.Tensor) -> None:
        """A latent codebook that quantises to exactly ``levels`` (inverse of codebook_levels)."""
        with torch.no_grad():
            span = self.w_upper - self.w_lower
            self.codebook.copy_(self.w_lower + levels.to(span.dtype) / (2 ** self.bits_w - 1) * span)

    def pq_weight(self) -> PQWeight:
        return PQWeight(self.codes, self.codebook.detach(), self.weight_shape, self.pq_config)

    def quantizer_parameters(self):
        return [self.w_lower, self.w_upper, self.a_lower, self.a_upper, self.output_scale]

    fused = True  # the quantiser as one op (ops.ewgs_quantize); False: as torch ops (the reference)

    def _quantize(self, x, lower, upper, bits, delta):
        if self.fused:
            return ops.ewgs_quantize(x, lower, upper, 2 ** bits, delta)
        return ewgs_quantize_reference(x, lower, upper, bits, delta)

    def quantized_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """w_q in [-1, 1] at 2**bits_w levels."""
        wq = self._quantize(weight, self.w_lower, self.w_upper, self.bits_w, self.delta_w)
        if self.keep_grad:
            self.last_wq = wq
        return 2 * (wq - 0.5)

    def quantized_input(self, x: torch.Tensor) -> torch.Tensor:
        """a_q in [0, 1] at 2**bits_a levels (x unchanged when bits_a is None)."""
        if self.bits_a is None:
            return x
        aq = self._quantize(x, self.a_lower, self.a_upper, self.bits_a, self.delta_a)
        if self.keep_grad:
            self.last_aq = aq
        return aq

    def _maybe_initialize(self, x, weight):
        if bool(self.initialized):
            return
        with torch.no_grad():
            s = float(weight.std())
            self.w_lower.fill_(-3 * s)
            self.w_upper.fill_(3 * s)
            if self.bits_a is not None:
                self.a_lower.fill_(float(x.min()))
                self.a_upper.fill_(float(x.min()) + max(3 * float(x.std()) / math.sqrt(1 - 2 / math.pi), 1e-8))
            full = self._op(x, weight)
            quant = self._op(self.quantized_input(x), self.quantized_weight(weight))
            self.output_scale.fill_(float(full.abs().mean() / quant.abs().mean().clamp_min(1e-12)))
            self.initialized.fill_(True)

    def _forward_quantized(self, x, weight):
        self._maybe_initialize(x, weight)
        y = self._op(self.quantized_input(x), self.quantized_weight(weight)) * self.output_scale.abs()
        return y if self.bias is None else self._add_bias(y)


class QConv2d(_Quantized, nn.Conv2d):
    """nn.Conv2d with EWGS-quantised weights (bits_w) and input activations (bits_a; None keeps
    them in float). Input [B, Cin, H, W] -> [B, Cout, H', W']."""

    def __init__(self, *args, bits_w: int = 4, bits_a: Optional[int] = 4, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_quant(bits_w, bits_a)

    def _op(self, x, w):
        return F.conv2d(x, w, None, self.stride, self.padding, self.dilation, self.groups)

    def _add_bias(self, y):
        return y + self.bias.view(1, -1, 1, 1)

    def forward(self, x):
        return self._forward_quantized(x, self.latent_weight())


class QLinear(_Quantized, nn.Linear):
    """nn.Linear with EWGS-quantised weights and input activations. [..., in] -> [..., out]."""

    def __init__(self, *args, bits_w: int = 4, bits_a: Optional[int] = 4, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_quant(bits_w, bits_a)

    def _op(self, x, w):
        return F.linear(x, w)

    def _add_bias(self, y):
        return y + self.bias

    def forward(self, x):
        return self._forward_quantized(x, self.latent_weight())


def _quantized_copy(m: nn.Module, bits_w, bits_a):
    if isinstance(m, nn.Conv2d):
        q = QConv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                    m.groups, m.bias is not None, bits_w=bits_w, bits_a=bits_a)
    else:
        q = QLinear(m.in_features, m.out_features, m.bias is not None, bits_w=bits_w, bits_a=bits_a)
    with torch.no_grad():
        q.weight.copy_(m.weight)
        if m.bias is not None:
            q.bias.copy_(m.bias)
    return q.to(m.weight.device)


def quantize_model(model: nn.Module, bits_w: int = 4, bits_a: Optional[int] = 4,
                   keep_float: Optional[Iterable[str]] = None) -> nn.Module:
    """Replaces every Conv2d/Linear (except those in keep_float; default: the first Conv2d and the
    last Linear, as in EWGS) by QConv2d/QLinear with the same weights, in place."""
    layers = [(n, m) for n, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]
    if keep_float is None:
        convs = [n for n, m in layers if isinstance(m, nn.Conv2d)]
        linears = [n for n, m in layers if isinstance(m, nn.Linear)]
        keep_float = set(convs[:1] + linears[-1:])
    for name, m in layers:
        if name in keep_float:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _quantized_copy(m, bits_w, bits_a))
    return model


def quantized_layers(model: nn.Module):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _Quantized)]


def update_delta(model: nn.Module, loss_fn, batches, *, samples: int = 50, tol: float = 1e-3,
                 seed: int = 0) -> dict:
    """Sets each quantised layer's delta_w and delta_a to (Tr(H)/N) / (3 std(g)), averaged over
    ``batches`` and clipped at >= 0, where H is the Hessian of the loss with respect to the
    discretizer output, N its size and g the loss gradient there.

    Tr(H) by Hutchinson's estimator: v^T H v with Rademacher v, at most ``samples`` draws per
    batch, stopping once every running mean changes by less than tol (relative). One Hessian-vector
    product serves all layers at once: v spans every discretizer output, and the cross terms
    v_s^T H_st v_t have zero mean, so each layer's block yields its own trace estimate.

    loss_fn(model, batch) -> scalar loss. Returns name -> (delta_w, delta_a)."""
    layers = quantized_layers(model)
    gen = torch.Generator().manual_seed(seed)
    sums = {}
    batches = list(batches)
    for _, m in layers:
        m.keep_grad = True
    try:
        for batch in batches:
            model.zero_grad(set_to_none=True)
            loss = loss_fn(model, batch)
            keys, targets = [], []
            for n, m in layers:
                for slot, t in ((0, m.last_wq), (1, m.last_aq)):
                    if t is not None:
                        keys.append((n, slot))
                        targets.append(t)
            grads = torch.autograd.grad(loss, targets, create_graph=True)
            traces = [0.0] * len(targets)
            for count in range(1, samples + 1):
                vs = [(torch.randint(0, 2, t.shape, generator=gen) * 2 - 1).to(t) for t in targets]
                hvs = torch.autograd.grad(grads, targets, vs, retain_graph=True, allow_unused=True)
                new = [tr + (float((v * hv).sum()) - tr) / count if hv is not None else 0.0
                       for tr, v, hv in zip(traces, vs, hvs)]
                done = count > 1 and all(abs(a - b) <= tol * abs(b) for a, b in zip(new, traces))
                traces = new
                if done:
                    break
            for key, t, g, tr in zip(keys, targets, grads, traces):
                sums[key] = sums.get(key, 0.0) + (tr / t.numel()) / (3 * float(g.detach().std()) + 1e-12)
    finally:
        for _, m in layers:
            m.keep_grad = False
            m.last_wq = m.last_aq = None
        model.zero_grad(set_to_none=True)
    out = {}
    for n, m in layers:
        dw = max(sums.get((n, 0), 0.0) / len(batches), 0.0)
        da = max(sums.get((n, 1), 0.0) / len(batches), 0.0)
        m.delta_w.fill_(dw)
        m.delta_a.fill_(da)
        out[n] = (dw, da)
    return out

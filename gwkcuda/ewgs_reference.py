"""The EWGS quantiser as torch ops: the reference of ``torch.ops.gwkcuda.ewgs_quantize``, what the
QAT layers run with ``_Quantized.fused = False``, and the op's second derivative (ops.py). A module
of its own, below ops.py (gwkcuda.reference, the other ops' oracle, imports modules above it)."""
import torch


class EWGSDiscretizer(torch.autograd.Function):
    """x in [0, 1] -> round(x (L-1)) / (L-1); backward: EWGS gradient scaling with delta (x - x_q
    saved as a constant, so a double backward differentiates the scaling in the incoming gradient
    only)."""

    @staticmethod
    def forward(ctx, x, levels: int, delta):
        xq = torch.round(x * (levels - 1)) / (levels - 1)
        ctx.save_for_backward(x - xq, torch.as_tensor(delta, dtype=x.dtype, device=x.device))
        return xq

    @staticmethod
    def backward(ctx, g):
        diff, delta = ctx.saved_tensors
        return g * (1 + delta * torch.sign(g) * diff), None, None


def ewgs_quantize(x: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, levels: int, delta) -> torch.Tensor:
    """Reference of ``torch.ops.gwkcuda.ewgs_quantize``: the EWGS discretizer of
    clamp((x - lower) / (upper - lower), 0, 1), differentiable to any order. An element exactly on
    a bound passes its gradient (the op's rule; torch.clamp's own backward stopped doing so in
    torch 2.14), hence the clamp only where t leaves [0, 1]."""
    t = (x - lower) / (upper - lower)
    return EWGSDiscretizer.apply(torch.where((t >= 0) & (t <= 1), t, t.clamp(0, 1)), levels, delta)

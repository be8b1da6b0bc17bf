"""Per-weight importances from gradients: the point weights of GWK's k-means and the sensitivities
that order Bin & Quant's gradient-mode splits.

Modes (g_b: the gradient of calibration batch b's mean loss; g_i: the gradient of sample i's own
loss):

- ``abs``: sum over batches of |g_b|;
- ``square``: sum over batches of g_b^2;
- ``fisher``: sum over samples of g_i^2, the diagonal of the empirical Fisher information (what
  SqueezeLLM and coremltools' sensitive k-means weigh with). Mini-batch gradients average the
  samples' gradients before squaring, so opposite-signed per-sample gradients cancel; the Fisher
  sum keeps every sample's contribution.
- ``uniform``: ones (plain k-means), nothing is run.

:func:`accumulate_importance` takes any backward passes (any loss) for ``abs`` and ``square``;
:func:`fisher_importance` takes samples (inputs, targets) and a per-sample loss;
:func:`fisher_from_losses` takes the per-sample losses themselves (inputs that are not one tensor).
"""
import warnings
from typing import Callable, Dict, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .weights import parameter_name, weight_of

MODES = ("abs", "square", "fisher", "uniform")
FISHER_METHODS = ("auto", "vmap", "loop")
# vmap path: per-sample gradients of one chunk live at once; chunks sized to stay under this.
FISHER_CHUNK_BYTES = 256 << 20
FISHER_MAX_CHUNK = 64


def accumulate_importance(model: nn.Module, names: Iterable[str], run_backward: Callable[[Callable[[], None]], None],
                          mode: str = "abs") -> Dict[str, torch.Tensor]:
    """Per-weight importances of the named layers: sum over backward passes of |g| ("abs") or g^2
    ("square"); "uniform" gives ones without running anything.

    run_backward(after_each) must run the backward passes (e.g. ``lambda f:
    train.backward_batches(model, x, y, batches=T, after_each=f)``); the importances accumulate
    through gradient hooks, so after_each may be called or not.
    Returns name -> tensor of the layer's weight shape (float32, on the weight's device)."""
    weights = {n: weight_of(model, n) for n in names}
    if mode == "uniform":
        return {n: torch.ones_like(w, dtype=torch.float32) for n, w in weights.items()}
    if mode not in ("abs", "square"):
        hint = " (fisher: use fisher_importance, it takes samples)" if mode == "fisher" else ""
        raise ValueError(f"accumulate_importance: expected mode 'abs', 'square' or 'uniform', got {mode!r}{hint}")
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


def fisher_importance(model: nn.Module, names: Iterable[str], inputs: torch.Tensor, targets: torch.Tensor, *,
                      loss: Callable = F.cross_entropy, method: str = "auto",
                      device=None) -> Dict[str, torch.Tensor]:
    """Empirical Fisher diagonal of the named layers' weights: sum over the samples i of
    (d loss(model(inputs[i:i+1]), targets[i:i+1]) / dW)^2, in eval mode (batch-norm statistics
    untouched; the model's mode is restored after).

    Args:
        inputs: [S, ...] samples; targets: [S, ...] their targets (S >= 1).
        loss: (outputs [1, ...], targets [1, ...]) -> scalar; cross-entropy by default.
        method: "vmap" (per-sample gradients of a chunk of samples at once with torch.func:
            vmap over grad of functional_call; chunks keep the per-sample gradients under
            FISHER_CHUNK_BYTES), "loop" (one backward per sample, the gradients taken with
            torch.autograd.grad and dropped at once), or "auto": vmap, and the loop with a warning
            where the model cannot be vmapped (data-dependent control flow, in-place updates of
            inputs, ...).
        device: where the samples go (the model's device by default).
    Returns:
        name -> float32 tensor of the layer's weight shape, on the weight's device."""
    if method not in FISHER_METHODS:
        raise ValueError(f"fisher_importance: expected method one of {FISHER_METHODS}, got {method!r}")
    names = list(names)
    weights = {n: weight_of(model, n) for n in names}
    if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor) \
            or len(inputs) < 1 or len(inputs) != len(targets):
        shapes = [tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in (inputs, targets)]
        raise ValueError(f"fisher_importance: expected inputs [S, ...] and targets [S, ...] with S >= 1 "
                         f"samples, got {shapes[0]} and {shapes[1]}")
    if device is None:
        device = next(iter(weights.values())).device
    was_training = model.training
    model.eval()
    try:
        if method != "loop":
            try:
                return _fisher_vmap(model, weights, inputs, targets, loss, device)
            except Exception as exc:  # noqa: BLE001 (torch.func raises many kinds; the loop is exact)
                if method == "vmap":
                    raise
                warnings.warn(f"fisher_importance: per-sample gradients by vmap failed "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); taking one "
                              "backward per sample instead (slower, same result)", RuntimeWarning, stacklevel=2)
        return _fisher_loop(model, weights, inputs, targets, loss, device)
    finally:
        model.train(was_training)


def _fisher_loop(model, weights, inputs, targets, loss, device):
    losses = (loss(model(inputs[i:i + 1].to(device)), targets[i:i + 1].to(device)) for i in range(len(inputs)))
    return _sum_squared_grads(weights, losses)


def _sum_squared_grads(weights, losses):
    names, tensors = list(weights), list(weights.values())
    acc = {n: torch.zeros_like(w, dtype=torch.float32) for n, w in weights.items()}
    count = 0
    for value in losses:
        # autograd.grad returns the gradients without storing them in .grad: nothing accumulates.
        for n, g in zip(names, torch.autograd.grad(value, tensors)):
            g = g.float()
            acc[n].addcmul_(g, g)
        count += 1
    if count == 0:
        raise ValueError("fisher importances: expected at least one per-sample loss, got none")
    return acc


def fisher_from_losses(model: nn.Module, names: Iterable[str], losses: Iterable[torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Empirical Fisher diagonal of the named layers' weights from per-sample losses of any kind of
    input (text, dicts of tensors, variable-length sequences: what cannot be stacked into one
    tensor for :func:`fisher_importance`): the sum over the losses of (d loss / dW)^2, one backward
    each.

    losses: an iterable of scalar losses, each one sample's loss computed by ``model`` (a generator
        computes each only when it is needed, so one sample's graph lives at a time). The model is
        put in eval mode while they are drawn (its mode is restored after).
    Returns name -> float32 tensor of the layer's weight shape, on the weight's device."""
    weights = {n: weight_of(model, n) for n in names}
    was_training = model.training
    model.eval()
    try:
        return _sum_squared_grads(weights, losses)
    finally:
        model.train(was_training)


def _fisher_vmap(model, weights, inputs, targets, loss, device):
    from torch.func import functional_call, grad, vmap

    wanted = {parameter_name(n): w.detach() for n, w in weights.items()}
    rest = {k: v.detach() for k, v in model.named_parameters() if k not in wanted}
    rest.update(dict(model.named_buffers()))

    def sample_loss(params, x, y):
        out = functional_call(model, {**rest, **params}, (x.unsqueeze(0),))
        return loss(out, y.unsqueeze(0))

    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    numel = sum(w.numel() for w in weights.values())
    chunk = max(1, min(FISHER_MAX_CHUNK, FISHER_CHUNK_BYTES // (4 * numel)))
    acc = {n: torch.zeros_like(w, dtype=torch.float32) for n, w in weights.items()}
    for start in range(0, len(inputs), chunk):
        g = per_sample(wanted, inputs[start:start + chunk].to(device), targets[start:start + chunk].to(device))
        for n in weights:
            acc[n] += g[parameter_name(n)].float().square().sum(0)
        del g
    return acc


def fisher_of_samples(model: nn.Module, names: Iterable[str], samples, count: int, who: str) -> Dict[str, torch.Tensor]:
    """fisher_importance over the first ``count`` of ``samples`` = (inputs [S, ...], targets [S])
    (cross-entropy per sample): what a config's importance "fisher" with fisher_samples = count
    means; ``who`` names the caller when samples are missing."""
    if samples is None:
        raise ValueError(f"{who}: importance 'fisher' needs samples (inputs, targets)")
    return fisher_importance(model, names, samples[0][:count], samples[1][:count])


def sample_rows(count: int, samples: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``samples`` of ``count`` rows, drawn without replacement (seeded, CPU generator):
    the calibration samples of the Fisher importances."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(count, generator=gen)[:min(samples, count)]


def check_samples(samples: Optional[int], who: str) -> None:
    """samples: a positive int (the Fisher sample count knob)."""
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ValueError(f"{who}: expected fisher_samples an int >= 1, got {samples!r}")


"""Compress your own model in one call: ``gwkcuda.compress(model, config, ...)``, then
``gwkcuda.save(path, model)`` and ``gwkcuda.load(path, model=None)``.

The config says the method: a :class:`gwkcuda.binquant.BinQuantConfig` (Bin & Quant: no
retraining; a search keeps ``eval_fn`` within ``max_drop`` points) or a :class:`gwkcuda.gwk.GWKConfig`
(product quantisation by gradient-weighted k-means; ``importance="uniform"`` is plain k-means).
Gradient importances and Bin & Quant's gradient sensitivity come from ``calibration``.
"""
import dataclasses
from typing import Callable, Iterable, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from . import model_file
from .binquant import BinQuantConfig, bin_and_quant, save_binquant
from .gwk import GWKConfig, gwk_compress

Calibration = Union[Iterable, Callable[[nn.Module], None]]


def _batches(calibration: Iterable):
    """(index, (inputs, targets)) for each calibration batch, each checked to be a pair."""
    for i, batch in enumerate(calibration):
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise ValueError(f"compress: expected calibration batches (inputs, targets), got a "
                             f"{type(batch).__name__} for batch {i}")
        yield i, batch


def _calibration_backward(model: nn.Module, calibration: Calibration, after_each=None) -> None:
    """Runs the calibration's backward passes on ``model`` (eval mode: batch-norm statistics stay)."""
    model.eval()
    if callable(calibration):
        calibration(model)
        return
    count = 0
    for i, (inputs, targets) in _batches(calibration):
        try:
            loss = F.cross_entropy(model(inputs), targets)
        except (RuntimeError, TypeError, ValueError, IndexError) as exc:
            shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
            raise ValueError(f"compress: the model cannot take calibration batch {i} (inputs {shape}): "
                             f"{str(exc).splitlines()[0]}") from exc
        loss.backward()
        count += 1
        if after_each is not None:
            after_each()
    if count == 0:
        raise ValueError("compress: the calibration held no batch")


def _calibration_samples(calibration: Calibration, count: int):
    """(inputs, targets): the first ``count`` samples of the calibration batches (Fisher
    importances take per-sample gradients, so they need the samples, not a callable)."""
    if callable(calibration):
        raise ValueError("compress: importance 'fisher' takes per-sample gradients of a cross-entropy, so it "
                         "needs calibration batches (inputs, targets), got a callable")
    inputs, targets, held = [], [], 0
    for _, (x, y) in _batches(calibration):
        inputs.append(x)
        targets.append(y)
        held += len(x)
        if held >= count:
            break
    if not inputs:
        raise ValueError("compress: the calibration held no batch")
    return torch.cat(inputs)[:count], torch.cat(targets)[:count]


def compress(model: nn.Module, config: Union[BinQuantConfig, GWKConfig], *,
             calibration: Optional[Calibration] = None,
             eval_fn: Optional[Callable[[nn.Module], float]] = None, progress: bool = True) -> dict:
    """Compresses ``model`` (any nn.Module; its Conv2d, Linear and Embedding layers) in place.

    Args:
        model: a trained float model.
        config: BinQuantConfig or GWKConfig (see their docstrings for every knob).
        calibration: batches (inputs, targets) for a cross-entropy backward, or a callable
            model -> None that runs the backward passes itself (any loss); needed by GWK unless
            importance is "uniform", and by Bin & Quant's sensitivity "gradient". Importance
            "fisher" takes the first ``fisher_samples`` samples of the batches (not a callable).
        eval_fn: model -> score in [0, 1] (accuracy on held-out data, say); Bin & Quant keeps
            it within config.max_drop points of the uncompressed model's. Not used by GWK.
        progress: progress bars (Bin & Quant's evaluations, GWK's clustering).
    Returns:
        The method's report: per layer its setting and bits per weight, the layers left in
        float and why (GWK), evaluations and accuracy (Bin & Quant).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"compress: expected an nn.Module, got {type(model).__name__}")
    if isinstance(config, BinQuantConfig):
        if eval_fn is None:
            raise ValueError("compress: Bin & Quant searches against eval_fn(model) -> score; pass eval_fn")
        grad_fn = None
        if config.sensitivity == "gradient":
            if calibration is None:
                raise ValueError("compress: Bin & Quant's gradient sensitivity needs calibration batches "
                                 "(or use BinQuantConfig(sensitivity='perturb'))")
            grad_fn = lambda m: _calibration_backward(m, calibration)  # noqa: E731
        samples = None
        if config.sensitivity == "gradient" and config.importance == "fisher":
            samples = _calibration_samples(calibration, config.fisher_samples)
        result = bin_and_quant(model, eval_fn, dataclasses.replace(config, progress=progress), grad_fn,
                               samples=samples)
        model._gwkcuda_binquant = result  # what save() writes: bins and values per layer
        return result.report
    if isinstance(config, GWKConfig):
        run_backward = None
        if config.importance != "uniform":
            if calibration is None:
                raise ValueError(f"compress: GWK importance {config.importance!r} needs calibration batches "
                                 "(or GWKConfig(importance='uniform') for plain k-means)")
            run_backward = lambda after_each: _calibration_backward(model, calibration, after_each)  # noqa: E731
        samples = None
        if config.importance == "fisher":
            samples = _calibration_samples(calibration, config.fisher_samples)
        _, report = gwk_compress(model, config, run_backward, show_progress=progress, samples=samples)
        return report
    raise TypeError(f"compress: expected a BinQuantConfig or a GWKConfig, got {type(config).__name__}")


def save(path, model: nn.Module, **storage) -> dict:
    """Writes a model compressed by :func:`compress` (or any model holding PQ layers) to ``path``
    atomically; storage: ``float_dtype="float16"``, ``fold_batchnorm=True`` (see
    gwkcuda.model_file.save_model). Returns the file's size accounting (model_file.describe)."""
    result = getattr(model, "_gwkcuda_binquant", None)
    if result is not None and result.model is model:
        return save_binquant(path, result, **storage)
    return model_file.save_model(path, model, meta={"method": "gwk"}, **storage)


def load(path, model: Optional[nn.Module] = None) -> nn.Module:
    """The model stored in ``path``, in eval mode: loaded into ``model`` (a float model of the same
    architecture, modified in place: its compressed layers become PQ layers), or rebuilt from the
    architecture the file records (the models of gwkcuda.models)."""
    return model_file.load_model(path, model)

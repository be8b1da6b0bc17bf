"""Streaming compression: a model's Linear and Embedding layers clustered one at a time, each written to disk as
soon as it is done, so that a model larger than the compute device fits, and a killed run loses at
most one layer.

    importance = accumulate_importance(model, plan, run_backward)      # calibration, on the host
    report = stream_compress(model, plan, importance, "model.parts", device="cuda")
    model_file.save_model("model.gwk", model)                          # one file at the end

Per layer: its weight and importances go to ``device``, are clustered (GWK-PQ: importance-weighted
k-means of the d-long sub-vectors, ``gwkcuda.pq.gwk_quantize``), the codes and codebook come back,
are written atomically to ``<parts>/<layer>.gwk`` and the layer is swapped for a PQLinear on the
host (PQEmbedding for an embedding table); the device copies are released before the next layer. So device memory holds one layer, its
importances and the clustering's work arrays at a time. The parts folder is valid after every
layer: started again on it, stream_compress reloads the finished layers (checking that each holds
the layer and the (d, k) asked for) and continues with the next one, ending with the same codes
and codebooks as an uninterrupted run.
"""
import math
import os
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Optional

import torch
from torch import nn

from .nn import install_pq
from .pq import PQConfig, PQWeight, gwk_quantize


def layer_plan(model: nn.Module, d: int, k: int, min_weights: int = 4096, skip=(),
               per_row: bool = False) -> Dict[str, PQConfig]:
    """name -> PQConfig for every nn.Linear and nn.Embedding with at least ``min_weights`` weights
    whose row length divides by d, in model order; ``skip``: names (or name prefixes) to leave in
    float. per_row=False: PQConfig(d, k), one codebook per layer; per_row=True: one codebook of k
    entries per row (output feature), PQConfig(d, k, groups=rows): with d = 1 this is per-row
    scalar clustering, as SqueezeLLM does."""
    plan = {}
    for name, m in model.named_modules():
        if not isinstance(m, (nn.Linear, nn.Embedding)) or any(name == s or name.startswith(s + ".") for s in skip):
            continue
        rows, cols = m.weight.shape
        points = cols // d if per_row else rows * cols // d
        if m.weight.numel() >= min_weights and cols % d == 0 and points >= k:
            plan[name] = PQConfig(d, k, groups=rows if per_row else 1)
    return plan


class PeakMemory:
    """Peak memory of the compute device while the block runs, above what it held on entry:
    torch.cuda.max_memory_allocated on CUDA; on the CPU, the process's resident set sampled every
    millisecond (Linux /proc; 0 where it cannot be read)."""

    def __init__(self, device):
        self.device = torch.device(device)
        self.peak = 0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = _rss()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss() - self._base)
            time.sleep(0.001)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss() - self._base)
        return False


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def part_path(parts: Path, name: str) -> Path:
    return parts / f"{name}.gwk"


def _load_part(path: Path, config: PQConfig, shape) -> Optional[PQWeight]:
    """The finished layer in ``path``, or None when it is missing or holds another shape or (d, k, groups)."""
    if not path.exists():
        return None
    pq = PQWeight.load(path)
    if (pq.config.d, pq.config.k) != (config.d, config.k) or tuple(pq.shape) != tuple(shape):
        return None
    return pq


def stream_compress(model: nn.Module, plan: Dict[str, PQConfig], importance: Optional[Dict[str, torch.Tensor]],
                    parts, *, beta: Optional[float] = None, iters: int = 25, seed: int = 0, device="cpu",
                    on_layer: Optional[Callable[[dict], None]] = None) -> dict:
    """Clusters the Linear/Embedding layers of ``plan`` one at a time on ``device`` and swaps each
    for a PQLinear/PQEmbedding in ``model`` (in place, on the host), writing each to ``parts`` as it finishes.

    Args:
        plan: name -> PQConfig (see layer_plan); importance: name -> per-weight importance of the
            weight's shape (accumulate_importance), or None for plain k-means; beta: see GWKConfig.
        parts: folder of the per-layer files; finished layers found there are reused (resume).
        on_layer: called with each layer's report entry as it finishes (progress).
    Returns:
        {"layers": [{name, shape, d, k, seconds, resumed, peak_bytes, layer_bytes}],
         "peak_bytes": the largest per-layer peak, "largest_layer_bytes": the largest fp32 weight}.
    """
    parts = Path(parts)
    parts.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, config in plan.items():
        layer = model.get_submodule(name)
        if not isinstance(layer, (nn.Linear, nn.Embedding)):
            raise TypeError(f"stream_compress: {name} is a {type(layer).__name__}, expected nn.Linear or nn.Embedding")
        shape = tuple(layer.weight.shape)
        started = time.perf_counter()
        path = part_path(parts, name)
        pq = _load_part(path, config, shape)
        resumed, peak = pq is not None, 0
        if pq is None:
            with PeakMemory(device) as mem:
                weight = layer.weight.detach().to(device)
                imp = None if importance is None else {name: importance[name].to(device)}
                pq = gwk_quantize({name: weight}, {name: config}, imp, beta=beta, iters=iters, seed=seed)[name]
                pq = PQWeight(pq.codes.cpu(), pq.codebook.cpu(), pq.shape, pq.config)
                del weight, imp
            peak = mem.peak
            pq.save(path)  # atomic: a kill leaves the layer either whole or absent
            if torch.device(device).type == "cuda":
                torch.cuda.empty_cache()
        install_pq(model, name, pq)
        row = {"name": name, "shape": list(shape), "d": config.d, "k": config.k, "resumed": resumed,
               "seconds": time.perf_counter() - started, "peak_bytes": peak, "layer_bytes": 4 * math.prod(shape)}
        rows.append(row)
        if on_layer is not None:
            on_layer(row)
    return {"layers": rows, "peak_bytes": max((r["peak_bytes"] for r in rows), default=0),
            "largest_layer_bytes": max((r["layer_bytes"] for r in rows), default=0)}

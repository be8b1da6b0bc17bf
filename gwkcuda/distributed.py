"""Multi-process compression on torch.distributed (gloo on CPUs, nccl on GPUs; launch with
torchrun): the calibration batches, the layers, the search images and the training batches are
split across ranks, and what each rank computed is combined with PyTorch's own collectives
(all_reduce, DistributedDataParallel) and the parts folder (a shared file system).

    torchrun --nproc-per-node 2 bench/exp_minilm.py --settings gwk:4:256

- Streaming GWK-PQ: :func:`all_reduce_importance`, :func:`stream_compress_distributed`.
- Bin & Quant: :func:`shared_score` (every candidate evaluation split across ranks, the counts
  summed, so the score is exactly the single-process one) and :func:`all_reduce_grads`.
- GWK fine-tuning: :func:`train_ddp` (DistributedDataParallel; every codebook update identical
  on all ranks).

Every rank ends holding the whole compressed model; rank 0 writes the single file.
"""
import gc
from pathlib import Path
from typing import Callable, Dict, Optional

import torch
import torch.distributed as dist
from torch import nn

from .nn import install_pq
from .pq import PQConfig, PQWeight
from .streaming import part_path, stream_compress


def rank_and_world():
    """(rank, world size): (0, 1) when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def my_share(items, rank: int, world: int):
    """Round-robin: the items i with i % world == rank (a list, or a dict's items in order)."""
    if isinstance(items, dict):
        return {k: v for i, (k, v) in enumerate(items.items()) if i % world == rank}
    return [x for i, x in enumerate(items) if i % world == rank]


def all_reduce_importance(importance: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Sums each rank's importances (from its share of the calibration batches) over all ranks,
    in place: every rank then holds the importances of all the batches."""
    _, world = rank_and_world()
    if world > 1:
        for name in sorted(importance):  # the same order on every rank
            dist.all_reduce(importance[name], op=dist.ReduceOp.SUM)
    return importance


def stream_compress_distributed(model: nn.Module, plan: Dict[str, PQConfig],
                                importance: Optional[Dict[str, torch.Tensor]], parts, **kwargs) -> dict:
    """stream_compress with the layers split round-robin across ranks: each rank clusters its
    share into ``parts`` (which every rank must see), waits for the others, then installs their
    layers from their part files, so every rank holds the same whole model. kwargs: those of
    stream_compress. Returns this rank's report."""
    rank, world = rank_and_world()
    report = stream_compress(model, my_share(plan, rank, world), importance, parts, **kwargs)
    if world > 1:
        dist.barrier()
    mine = {r["name"] for r in report["layers"]}
    for name in plan:
        if name not in mine:
            install_pq(model, name, PQWeight.load(part_path(Path(parts), name)))
    return report


def shared_score(predict: Callable, inputs, targets=None, reference: Optional[nn.Module] = None
                 ) -> Callable[[nn.Module], float]:
    """A search score (model -> fraction of matched predictions, in [0, 1]) whose work is split
    across ranks: each rank runs predict(model, share) -> labels on its share inputs[rank::world],
    and the counts of matches are summed with all_reduce, so every rank gets the same score,
    exactly the single-process one (integer counts).

    inputs: a sequence (list or tensor); match against ``targets`` (same length: accuracy) or, when
    ``reference`` is given instead, against predict(reference, share) taken now (agreement)."""
    rank, world = rank_and_world()
    mine = inputs[rank::world]
    if (targets is None) == (reference is None):
        raise ValueError("shared_score: expected exactly one of targets (accuracy) or reference (agreement)")
    with torch.no_grad():
        goal = torch.as_tensor(predict(reference, mine) if targets is None else targets[rank::world]).cpu()

    def score(model: nn.Module) -> float:
        with torch.no_grad():
            hits = (torch.as_tensor(predict(model, mine)).cpu() == goal).sum().reshape(1).to(torch.int64)
        if world > 1:
            dist.all_reduce(hits)
        return int(hits) / len(inputs)
    return score


def all_reduce_grads(model: nn.Module) -> None:
    """Sums every parameter's .grad over all ranks, in place (each rank ran backward on its share of
    the calibration batches); a no-op in a single process."""
    _, world = rank_and_world()
    if world > 1:
        for _, p in sorted(model.named_parameters()):
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


def train_ddp(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs) -> list:
    """gwkcuda.train.train under DistributedDataParallel: every rank draws the same batch order and
    trains on its share of each batch (rows rank, rank + world, ...); DDP averages the gradients
    with all_reduce, so every optimiser step, the codebook (centroid) updates of a PQ model
    included, is the same on all ranks and the codebooks stay bit-identical. kwargs: those of
    train.train except ``checkpoint`` (not supported here). Returns this rank's losses per epoch.
    In a single process this is train.train."""
    from .train import train
    if kwargs.get("checkpoint") is not None:
        raise ValueError("train_ddp: checkpoint is not supported under DistributedDataParallel")
    rank, world = rank_and_world()
    if world == 1:
        return train(model, x, y, **kwargs)
    from torch.nn.parallel import DistributedDataParallel
    device = torch.device(kwargs.get("device", "cpu"))
    ddp = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    try:
        return train(ddp, x, y, shard=(rank, world), **kwargs)
    finally:
        # DDP's reducer must be gone before the process group is destroyed (else the process can
        # abort at exit); the wrapper sits in reference cycles, so collect them now.
        del ddp
        gc.collect()

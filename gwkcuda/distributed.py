"""Multi-process compression on torch.distributed (gloo on CPUs, nccl on GPUs; launch with
torchrun): the calibration batches and the layers are split across ranks, and what each rank
computed is combined with PyTorch's own collectives and the parts folder (a shared file system).

    torchrun --nproc-per-node 2 bench/exp_minilm.py --settings gwk:4:256

Every rank ends holding the whole compressed model; rank 0 writes the single file.
"""
from pathlib import Path
from typing import Dict, Optional

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

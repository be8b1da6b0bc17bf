"""Product-quantised recurrent matrices. An nn.LSTM / nn.GRU / nn.RNN (or cell) keeps its class and runs
PyTorch's fused recurrent kernels: each compressed matrix ``weight_*_l*`` stops being a parameter
and becomes codes (buffer ``<matrix>_codes``) into a trainable codebook (parameter
``<matrix>_codebook``), decoded into the dense matrix by a forward pre-hook before every forward
(differentiable in the codebook, so fine-tuning trains it). Decoding costs one pass over the
matrix's bytes per forward, against the recurrence's T passes over the same matrix
(``bench/bench_recurrent.py`` measures both), so no cache is kept to go stale.
"""
from typing import Dict

import torch
from torch import nn

from . import ops
from .pq import PQWeight
from .weights import RECURRENT_KINDS, is_recurrent_weight


def _decode(module: nn.Module, local: str) -> torch.Tensor:
    shape, _ = module.pq_configs[local]
    return ops.pq_decode(getattr(module, local + "_codes"), getattr(module, local + "_codebook")).reshape(shape)


def _decode_before_forward(module, args):
    # A plain attribute under the matrix's name: what a cell's forward reads, and RNNBase's
    # __setattr__ keeps _flat_weights (what its fused kernel reads) in step.
    for local in module.pq_configs:
        setattr(module, local, _decode(module, local))


def _drop_graph_after_forward(module, args, output):
    # Keep no autograd graph on the module between calls (deepcopy and pickling need leaves).
    for local in module.pq_configs:
        setattr(module, local, getattr(module, local).detach())


def _check_loaded_codes(module, incompatible_keys):
    for local, (_, config) in module.pq_configs.items():
        ops.check_pq_codes(getattr(module, local + "_codes"), config.k, f"{type(module).__name__}.load_state_dict")


def install_recurrent_pq(model: nn.Module, name: str, pq: PQWeight) -> None:
    """Gives the recurrent matrix ``name`` (e.g. "rnn.weight_hh_l1_reverse") the PQ weight ``pq``,
    in place, on the codebook's device. ValueError if name is not a matrix of an
    nn.LSTM/nn.GRU/nn.RNN or pq does not have its shape."""
    module_name, _, local = name.rpartition(".")
    rnn = model.get_submodule(module_name) if module_name else model
    if not isinstance(rnn, RECURRENT_KINDS) or not is_recurrent_weight(local) or local not in rnn._parameters:
        raise ValueError(f"install_recurrent_pq: {name} is not a weight matrix of an nn.LSTM, nn.GRU, nn.RNN "
                         "or one of their cells")
    dense = getattr(rnn, local)
    if tuple(dense.shape) != tuple(pq.shape):
        raise ValueError(f"install_recurrent_pq: {name} is {list(dense.shape)}, the PQ weight {list(pq.shape)}")
    if "pq_configs" not in rnn.__dict__:
        rnn.pq_configs = {}
        rnn.register_forward_pre_hook(_decode_before_forward)
        rnn.register_forward_hook(_drop_graph_after_forward)
        rnn.register_load_state_dict_post_hook(_check_loaded_codes)
    del rnn._parameters[local]
    device = pq.codebook.device
    rnn.register_buffer(local + "_codes", pq.codes.clone().to(device))
    rnn.register_parameter(local + "_codebook", nn.Parameter(pq.codebook.detach().clone()))
    rnn.pq_configs[local] = (tuple(pq.shape), pq.config)
    setattr(rnn, local, _decode(rnn, local).detach())


def recurrent_pq_weights(module: nn.Module) -> Dict[str, PQWeight]:
    """Matrix name (local to the module) -> PQWeight of every product-quantised recurrent matrix."""
    return {local: PQWeight(getattr(module, local + "_codes"), getattr(module, local + "_codebook").detach(),
                            shape, config)
            for local, (shape, config) in module.__dict__.get("pq_configs", {}).items()}

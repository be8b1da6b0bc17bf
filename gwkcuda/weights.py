"""Compressible weights by name, for every method: a Conv/Linear/Embedding layer is named by its
module (``"layer1.0.conv1"``, the weight being its ``.weight``), a recurrent weight by its own
parameter name (``"rnn.weight_hh_l2_reverse"``): each input-to-hidden and hidden-to-hidden matrix
of an nn.LSTM / nn.GRU / nn.RNN is a layer of its own, with its own bins, codebook and
sensitivity.

A recurrent matrix [gates * hidden, inputs] stacks its gates along the rows (LSTM: i, f, g, o;
GRU: r, z, n), and every method here cuts along the input axis only (a bin holds single weights;
a PQ sub-vector is d consecutive weights of one row), so no bin value or codeword mixes two
gates' rows by construction; PQ's ``groups`` set to the gate count gives each gate its own
codebook. Biases stay in float, as for the other layers.
"""
from typing import Dict, List, Tuple

import torch
from torch import nn

LAYER_KINDS = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.Embedding)
RECURRENT_KINDS = (nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell, nn.GRUCell, nn.RNNCell)
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1, "LSTMCell": 4, "GRUCell": 3, "RNNCell": 1}


def module_kind(m: nn.Module) -> str:
    """A module's layer kind: the name of the torch.nn class it is (or derives from), or for a
    TorchScript module the class it was scripted from, so that the weights of an off-the-shelf
    TorchScript model (an LSTMCell inside silero-vad, say) are found like any other."""
    if isinstance(m, torch.jit.ScriptModule):
        return m.original_name
    for cls in LAYER_KINDS + RECURRENT_KINDS:
        if isinstance(m, cls):
            return cls.__name__
    return type(m).__name__


def is_recurrent_weight(name: str) -> bool:
    """A recurrent matrix's parameter name (its last part weight_ih_l* or weight_hh_l* of an
    LSTM/GRU/RNN, or weight_ih / weight_hh of a cell)."""
    last = name.rpartition(".")[2]
    return last.startswith(("weight_ih_l", "weight_hh_l")) or last in ("weight_ih", "weight_hh")


def submodule(model: nn.Module, path: str) -> nn.Module:
    """model.get_submodule(path), for TorchScript modules too (which do not have it)."""
    for part in path.split(".") if path else []:
        model = getattr(model, part)
    return model


def weight_of(model: nn.Module, name: str):
    """The weight tensor a layer name stands for (a module's .weight, or a recurrent parameter)."""
    return getattr(owner(model, name), name.rpartition(".")[2] if is_recurrent_weight(name) else "weight")


def parameter_name(name: str) -> str:
    """The state-dict key of the weight a layer name stands for."""
    return name if is_recurrent_weight(name) else name + ".weight"


def recurrent_weights(model: nn.Module) -> Tuple[List[Tuple[str, nn.Parameter]], Dict[str, str]]:
    """(found, skipped): found lists (parameter name, tensor) of every input-to-hidden and
    hidden-to-hidden matrix of the model's LSTM/GRU/RNN modules and cells; skipped maps a
    recurrent module that cannot be compressed to the reason (an LSTM with proj_size, or another
    kind of nn.RNNBase / nn.RNNCellBase)."""
    names = {cls.__name__ for cls in RECURRENT_KINDS}
    found, skipped = [], {}
    for mname, m in model.named_modules():
        if module_kind(m) in names:
            if getattr(m, "proj_size", 0):
                skipped[mname] = f"an LSTM with proj_size {m.proj_size} (projected LSTMs are not supported)"
                continue
            found += [(f"{mname}.{pname}" if mname else pname, p)
                      for pname, p in m.named_parameters(recurse=False) if is_recurrent_weight(pname)]
        elif isinstance(m, (nn.RNNBase, nn.RNNCellBase)):
            skipped[mname] = (f"a {type(m).__name__} (mode {getattr(m, 'mode', '?')}): only LSTM, GRU and RNN "
                              "modules and their cells are supported")
    return found, skipped


def owner(model: nn.Module, name: str) -> nn.Module:
    """The module holding the weight a layer name stands for (a recurrent matrix's LSTM/GRU/RNN)."""
    return submodule(model, name.rpartition(".")[0] if is_recurrent_weight(name) else name)


def gates(model: nn.Module, name: str) -> int:
    """Gates stacked along the rows of the recurrent matrix ``name`` (1 for any other layer)."""
    if not is_recurrent_weight(name):
        return 1
    return GATES.get(module_kind(owner(model, name)), 1)


def candidate_weights(model: nn.Module, kinds=LAYER_KINDS) -> Tuple[List[Tuple[str, nn.Parameter]], Dict[str, str]]:
    """(found, skipped): (layer name, weight) of every layer of ``kinds`` and every recurrent
    matrix, in module order; skipped: the recurrent modules that cannot be compressed, each with
    its reason."""
    names = {cls.__name__ for cls in kinds}
    found = [(n, m.weight) for n, m in model.named_modules() if module_kind(m) in names]
    recurrent, skipped = recurrent_weights(model)
    return found + recurrent, skipped


def compressible_weights(model: nn.Module, min_weights: int) -> List[Tuple[str, nn.Parameter]]:
    """(layer name, weight) of every Conv/Linear/Embedding layer and recurrent matrix with at least
    min_weights weights, largest first."""
    found, _ = candidate_weights(model)
    return sorted([(n, w) for n, w in found if w.numel() >= min_weights], key=lambda nw: -nw[1].numel())


def skipped_weights(model: nn.Module, min_weights: int) -> Dict[str, str]:
    """The layers :func:`compressible_weights` leaves out, each with the reason."""
    found, skipped = candidate_weights(model)
    skipped = dict(skipped)
    skipped.update({n: f"{w.numel()} weights < min_weights {min_weights}" for n, w in found if w.numel() < min_weights})
    return skipped


def layer_name(key: str) -> str:
    """The layer name of a weight's state-dict key (the inverse of :func:`parameter_name`)."""
    return key if is_recurrent_weight(key) else key.rpartition(".")[0]

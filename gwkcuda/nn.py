"""Layers whose weights are product-quantised: trainable codebooks, fixed codes, bias kept."""
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import ops
from .pq import PQConfig, PQWeight, pq_quantize
from .recurrent import install_recurrent_pq, recurrent_pq_weights
from .weights import is_recurrent_weight


class _PQBase(nn.Module):
    """Holds codes (a buffer: fixed) and codebook (a parameter: trainable) of a PQ weight."""

    def _init_pq(self, pq: PQWeight, bias: Optional[torch.Tensor]):
        self.config = pq.config
        self.weight_shape = tuple(pq.shape)
        self.register_buffer("codes", pq.codes.clone())
        self.codebook = nn.Parameter(pq.codebook.clone())
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None
        # The codes came through PQWeight's check; codes loaded later are checked once on load.
        self.register_load_state_dict_post_hook(_check_loaded_codes)

    def pq_weight(self) -> PQWeight:
        return PQWeight(self.codes, self.codebook.detach(), self.weight_shape, self.config)

    def decoded_weight(self) -> torch.Tensor:
        """The dense weight, differentiable in the codebook."""
        return ops.pq_decode(self.codes, self.codebook).reshape(self.weight_shape)


def _check_loaded_codes(module, incompatible_keys):
    ops.check_pq_codes(module.codes, module.config.k, f"{type(module).__name__}.load_state_dict")


class PQLinear(_PQBase):
    """y = x @ W.T + b with W [out, in] stored as codes [out, in/d] into codebook [G, k, d].

    Input [..., in] -> output [..., out]; the product runs through torch.ops.gwkcuda.pq_linear,
    which never builds W for few rows.
    """

    def __init__(self, pq: PQWeight, bias: Optional[torch.Tensor] = None):
        super().__init__()
        if len(pq.shape) != 2:
            raise ValueError(f"PQLinear: expected a 2-D weight, got shape {pq.shape}")
        self.out_features, self.in_features = pq.shape
        self._init_pq(pq, bias)

    @classmethod
    def from_float(cls, linear: nn.Linear, config: PQConfig, importance=None, **kwargs) -> "PQLinear":
        """Quantises an nn.Linear (importance: per-weight, e.g. accumulated |grad|, or None)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"PQLinear.from_float: expected an nn.Linear, got {type(linear).__name__}")
        return cls(pq_quantize(linear.weight, config, importance, **kwargs), linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"PQLinear: expected input [..., {self.in_features}], got {tuple(x.shape)}")
        flat = x.reshape(-1, self.in_features)
        y = ops.pq_linear(flat, self.codes, self.codebook, self.bias)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self):
        c = self.config
        return f"in_features={self.in_features}, out_features={self.out_features}, d={c.d}, k={c.k}, groups={c.groups}"


class PQConv2d(_PQBase):
    """A 2-D convolution whose filters [out, in/groups, kh, kw] are product-quantised along the
    flattened (in/groups)*kh*kw axis of each filter, as in "And the bit goes down". Grouped and
    depthwise convolutions keep their groups. The forward decodes the filters (pq_decode) and
    runs F.conv2d."""

    def __init__(self, pq: PQWeight, bias, stride, padding, dilation, groups, padding_mode="zeros"):
        super().__init__()
        if len(pq.shape) != 4:
            raise ValueError(f"PQConv2d: expected a 4-D weight, got shape {pq.shape}")
        if padding_mode != "zeros":
            raise ValueError(f"PQConv2d: only padding_mode='zeros' is supported, got {padding_mode!r}")
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.out_channels = pq.shape[0]
        self.in_channels = pq.shape[1] * groups
        self.kernel_size = tuple(pq.shape[2:])
        self._init_pq(pq, bias)

    @classmethod
    def from_float(cls, conv: nn.Conv2d, config: PQConfig, importance=None, **kwargs) -> "PQConv2d":
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"PQConv2d.from_float: expected an nn.Conv2d, got {type(conv).__name__}")
        return cls(pq_quantize(conv.weight, config, importance, **kwargs), conv.bias, conv.stride,
                   conv.padding, conv.dilation, conv.groups, conv.padding_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.decoded_weight(), self.bias, self.stride, self.padding,
                        self.dilation, self.groups)

    def extra_repr(self):
        c = self.config
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, groups={self.groups}, d={c.d}, k={c.k}")


class PQEmbedding(_PQBase):
    """An embedding table [num, dim] stored as codes [num, dim/d] into codebook [G, k, d] (rows
    of group g = row // (num / G) use codebook g; G = 1: one codebook): a lookup gathers the rows'
    codes, then their codewords. Input int64 [...] -> output [..., dim]."""

    def __init__(self, pq: PQWeight, padding_idx: Optional[int] = None):
        super().__init__()
        if len(pq.shape) != 2:
            raise ValueError(f"PQEmbedding: expected a 2-D table, got shape {pq.shape}")
        self.num_embeddings, self.embedding_dim = pq.shape
        self.padding_idx = padding_idx
        self._init_pq(pq, None)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        codes = F.embedding(idx, self.codes).long()  # [..., dim/d]
        G, k, d = self.codebook.shape
        group = torch.div(idx, self.num_embeddings // G, rounding_mode="floor")
        return self.codebook.reshape(G * k, d)[group[..., None] * k + codes].reshape(*idx.shape, self.embedding_dim)

    def extra_repr(self):
        c = self.config
        return f"{self.num_embeddings}, {self.embedding_dim}, d={c.d}, k={c.k}"


def ewgs_layer(model: nn.Module, name: str):
    """The EWGS layer (QConv2d/QLinear, anything with use_pq) a layer name stands for, or None for
    any other kind (a recurrent matrix's name included)."""
    module = None if is_recurrent_weight(name) else model.get_submodule(name)
    return module if hasattr(module, "use_pq") else None


def install_pq(model: nn.Module, name: str, pq: PQWeight, keep_latent: bool = False) -> None:
    """Gives the layer ``name`` of ``model`` the product-quantised weight ``pq``, in place: an EWGS
    layer (QConv2d/QLinear) takes codes and codebook instead of its weight and keeps its
    quantisers; an nn.Linear/nn.Conv2d/nn.Embedding is replaced by a PQLinear/PQConv2d/PQEmbedding
    with its bias and geometry, on the codebook's device; a recurrent matrix (a parameter name such
    as "rnn.weight_ih_l0") becomes codes and codebook inside its nn.LSTM/nn.GRU/nn.RNN (see
    gwkcuda.recurrent). TypeError for any other kind of layer. keep_latent: an EWGS layer keeps
    its float weight, trained straight through the codebook (see ewgs.QConv2d.use_pq); only EWGS
    layers can."""
    ewgs = ewgs_layer(model, name)
    if ewgs is not None:
        ewgs.use_pq(pq, keep_latent=keep_latent)
        return
    if keep_latent:
        kind = "a recurrent matrix" if is_recurrent_weight(name) else type(model.get_submodule(name)).__name__
        raise TypeError(f"install_pq: keep_latent needs an EWGS layer (QConv2d/QLinear, after QAT), "
                        f"got {name}: {kind}")
    if is_recurrent_weight(name):
        try:
            install_recurrent_pq(model, name, pq)
        except ValueError as exc:
            raise TypeError(str(exc)) from exc
        return
    module = model.get_submodule(name)
    if isinstance(module, nn.Linear):
        new = PQLinear(pq, module.bias)
    elif isinstance(module, nn.Conv2d):
        new = PQConv2d(pq, module.bias, module.stride, module.padding, module.dilation, module.groups,
                       module.padding_mode)
    elif isinstance(module, nn.Embedding):
        new = PQEmbedding(pq, module.padding_idx)
    else:
        raise TypeError(f"a PQ weight for {name}, a {type(module).__name__}: only Linear, Conv2d and "
                        "Embedding layers and recurrent matrices can be product-quantised")
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new.to(pq.codebook.device))


def pq_weights(module: nn.Module) -> Dict[str, PQWeight]:
    """Local weight name -> PQWeight of every product-quantised weight ``module`` holds itself:
    {"weight": ...} for a PQLinear/PQConv2d/PQEmbedding or an EWGS layer after use_pq, one entry
    per compressed matrix for a recurrent module, {} otherwise."""
    if isinstance(module, _PQBase) or getattr(module, "codebook", None) is not None:
        return {"weight": module.pq_weight()}
    return recurrent_pq_weights(module)


def pq_prefix(key: str) -> str:
    """Where a PQ weight's codes and codebook live in a state dict and a model file, from the key
    of the weight it replaces: "conv.weight" -> "conv." ("conv.codes", "conv.codebook"), a
    recurrent "rnn.weight_ih_l0" -> "rnn.weight_ih_l0_" ("rnn.weight_ih_l0_codes", ...)."""
    module, _, local = key.rpartition(".")
    return (module + "." if module else "") + ("" if local == "weight" else local + "_")

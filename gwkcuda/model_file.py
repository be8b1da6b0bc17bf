"""A whole compressed model in one gwkcuda.io file, whatever the method, and its size accounting.

Every weight is stored one of three ways, named by its entry in the header's ``layers``:
- ``"pq"``: a product-quantised layer (PQLinear / PQConv2d): codes packed at ceil(log2 k) bits and
  the codebook;
- ``"bins"``: a Bin & Quant weight: bin indices, as a bit array or canonical Huffman code
  (whichever is smaller), and the bin values;
- anything else is a plain tensor, e.g. batch norm, biases and the layers left uncompressed;
  floating-point tensors (these, float codebooks and float bin values) are stored at
  ``float_dtype``: float32 (exact) or float16 (half the bytes; the reloaded model computes in
  float32 from the rounded values).
The header also records the architecture (a name for :func:`gwkcuda.models.build_model`), so that
:func:`load_model` rebuilds the model from the file alone, and the bytes of the fp32 original.

Compression ratios (paper-spec 2.6): (a) indices only and (b) indices plus codebooks, both over
the compressed weights at 32 bits each; (c) all-inclusive: the fp32 model's bytes (every floating
parameter and buffer at 4 bytes) over the file's bytes.
"""
import math
import os
from typing import Dict, Optional

import torch
from torch import nn

from . import huffman, io, ops
from .io import dtype_name
from .nn import install_pq, pq_prefix, pq_weights
from .pq import PQWeight
from .weights import layer_name

STORE_DTYPES = {"float32": torch.float32, "float16": torch.float16}
MAX_CLASSES, MAX_CHANNELS = 1 << 20, 1 << 16  # bounds on a recorded architecture


def _is_int(v, low=0, high=None) -> bool:
    return type(v) is int and v >= low and (high is None or v <= high)


def _is_shape(v, rank=None) -> bool:
    return (isinstance(v, list) and (rank is None or len(v) == rank) and len(v) >= 1
            and all(_is_int(n, 1) for n in v))


def check_model_meta(path, meta: dict) -> None:
    """The header of a model file, field by field (JSON types, ranges, counts that must agree),
    before anything is built from it; CompressedFileError names the first bad field."""
    def bad(field, expected, got):
        raise io.CompressedFileError(f"{path}: bad model header: {field}: expected {expected}, got {str(got)[:80]}")

    if "checkpoint" in meta and "layers" not in meta:
        raise io.CompressedFileError(f"{path}: a training checkpoint (per-epoch state of a run), not a "
                                     "compressed model file")
    if "layers" not in meta or "fp32_bytes" not in meta:
        raise io.CompressedFileError(f"{path}: not a gwkcuda model file (header keys {sorted(meta)[:8]})")
    if not _is_int(meta["fp32_bytes"], 1):
        bad("fp32_bytes", "an int >= 1", meta["fp32_bytes"])
    arch = meta.get("arch")
    if arch is not None:
        if not isinstance(arch, dict) or not isinstance(arch.get("name"), str):
            bad("arch", "{name: str, num_classes: int, in_channels: int}", arch)
        if not _is_int(arch.get("num_classes", 10), 1, MAX_CLASSES):
            bad("arch.num_classes", f"an int in 1..{MAX_CLASSES}", arch.get("num_classes"))
        if not _is_int(arch.get("in_channels", 1), 1, MAX_CHANNELS):
            bad("arch.in_channels", f"an int in 1..{MAX_CHANNELS}", arch.get("in_channels"))
    layers = meta["layers"]
    if not isinstance(layers, dict):
        bad("layers", "an object of layer name -> entry", type(layers).__name__)
    for name, info in layers.items():
        field = f"layers[{name!r}]"
        if not isinstance(info, dict) or info.get("kind") not in ("pq", "bins"):
            bad(field, "an entry of kind 'pq' or 'bins'", info)
        if not _is_shape(info.get("shape")) or info.get("numel") != math.prod(info["shape"]):
            bad(field + ".shape/numel", "a shape of positive ints and numel its product",
                [info.get("shape"), info.get("numel")])
        if info["kind"] == "pq":
            for key, high in (("d", None), ("k", 1 << 16), ("groups", None)):
                if not _is_int(info.get(key), 1, high):
                    bad(f"{field}.{key}", f"an int >= 1{'' if high is None else f' and <= {high}'}", info.get(key))
            cs = info.get("codes_shape")
            if not _is_shape(cs, 2) or cs[1] * info["d"] * cs[0] != info["numel"] or cs[0] % info["groups"]:
                bad(f"{field}.codes_shape", f"[N, K/d] covering the {info['numel']} weights with N divisible "
                                            f"by groups = {info['groups']}", cs)
            if "codebook_levels_bits" in info:
                if not _is_int(info["codebook_levels_bits"], 1, 16):
                    bad(f"{field}.codebook_levels_bits", "an int in 1..16", info["codebook_levels_bits"])
                if info.get("codebook_shape") != [info["groups"], info["k"], info["d"]]:
                    bad(f"{field}.codebook_shape", [info["groups"], info["k"], info["d"]], info.get("codebook_shape"))
        else:
            if not _is_int(info.get("bins"), 1, 1 << 16):
                bad(f"{field}.bins", "an int in 1..65536", info.get("bins"))
            if info.get("encoding") == "bitarray":
                if not _is_int(info.get("nbits"), 1, 16) or (1 << info["nbits"]) < info["bins"]:
                    bad(f"{field}.nbits", f"an int in 1..16 with room for {info['bins']} bins", info.get("nbits"))
            elif info.get("encoding") == "huffman":
                lengths, cap = info.get("code_lengths"), huffman.MAX_LENGTH
                if not (isinstance(lengths, list) and len(lengths) == info["bins"]
                        and all(_is_int(n, 0, cap) for n in lengths) and any(lengths)
                        and sum(1 << (cap - n) for n in lengths if n) <= 1 << cap):
                    bad(f"{field}.code_lengths", f"{info['bins']} ints in 0..{cap} forming a prefix code "
                                                 "(Kraft's inequality)", lengths)
            else:
                bad(f"{field}.encoding", "'bitarray' or 'huffman'", info.get("encoding"))
            if "values_from" in info and info["values_from"] not in layers:
                bad(f"{field}.values_from", "the name of another layer entry", info["values_from"])
            affine = info.get("affine")
            if affine is not None and not (isinstance(affine, list) and len(affine) == 2 and
                                           all(isinstance(v, (int, float)) and math.isfinite(v) for v in affine)):
                bad(f"{field}.affine", "[scale, zero_point], two finite numbers", affine)
    ewgs = meta.get("ewgs")
    if ewgs is not None and not (isinstance(ewgs, dict) and isinstance(ewgs.get("layers"), list)
                                 and all(isinstance(n, str) for n in ewgs["layers"])
                                 and _is_int(ewgs.get("bits_w"), 1, 16) and _is_int(ewgs.get("bits_a"), 1, 16)):
        bad("ewgs", "{layers: [str], bits_w: 1..16, bits_a: 1..16}", ewgs)
    folded = meta.get("folded_batchnorm", [])
    if not (isinstance(folded, list) and all(isinstance(n, str) for n in folded)):
        bad("folded_batchnorm", "a list of module names", folded)
    if not isinstance(meta.get("method", ""), (str, type(None))):
        bad("method", "a string", meta.get("method"))


def pq_entries(model: nn.Module) -> Dict[str, tuple]:
    """Key of each product-quantised weight (the state-dict key of the weight it replaces, e.g.
    "conv.weight" or "rnn.weight_ih_l0") -> (its module, its PQWeight)."""
    return {(f"{name}.{local}" if name else local): (m, pq)
            for name, m in model.named_modules() for local, pq in pq_weights(m).items()}


def _encode_bins(idx: torch.Tensor, bins: int):
    """The smaller of a bit array at ceil(log2 bins) bits and a canonical Huffman code."""
    nbits = max(1, math.ceil(math.log2(bins)))
    counts = torch.bincount(idx, minlength=bins).tolist()
    lengths = huffman.code_lengths(counts)
    if huffman.encoded_bits(counts, lengths) < idx.numel() * nbits and max(lengths) <= huffman.MAX_LENGTH:
        return huffman.encode(idx, lengths), {"encoding": "huffman", "code_lengths": lengths}
    return ops.pack_bits(idx.to(torch.int32), nbits), {"encoding": "bitarray", "nbits": nbits}


def _decode_bins(stream: torch.Tensor, meta: dict) -> torch.Tensor:
    if meta["encoding"] == "huffman":
        return huffman.decode(stream, meta["code_lengths"], meta["numel"])
    return ops.unpack_bits(stream, meta["nbits"], meta["numel"])  # int32 indices, as huffman.decode


def fp32_bytes(model: nn.Module) -> int:
    """Bytes of the model with every floating parameter and buffer at fp32 (PQ layers counted
    at their dense weight's size)."""
    entries = pq_entries(model)
    held = {pq_prefix(key) + part for key in entries for part in ("codes", "codebook")}
    total = sum(t.numel() * 4 for name, t in model.state_dict().items()
                if t.is_floating_point() and name not in held)
    return total + sum(math.prod(pq.shape) * 4 for _, pq in entries.values())


def save_model(path, model: nn.Module, *, arch: Optional[dict] = None,
               bins: Optional[Dict[str, tuple]] = None, meta: Optional[dict] = None,
               float_dtype: str = "float32", fold_batchnorm: bool = False) -> dict:
    """Writes ``model`` (its PQ layers as codes and codebooks) to ``path`` atomically.

    Args:
        arch: {"name": model name, "num_classes": int, "in_channels": int} to rebuild it; optional.
        bins: parameter name -> {"indices": int64 [numel], "values": [bins] float32 (or uint8
            codes), or "values_from": the parameter whose values it shares, optionally
            "affine": [scale, zero_point] for uint8 codes} for Bin & Quant weights: the model's
            weight there must equal values[indices] (dequantised when affine).
        meta: extra JSON metadata (method, report, ...).
        float_dtype: "float32" or "float16", the storage of every floating-point tensor that is
            not a code stream or an EWGS codebook (those are integers).
        fold_batchnorm: store each batch norm as the scale and shift it applies in eval mode (2
            numbers per channel instead of 4 and a counter); the reloaded batch norm computes the
            same affine map (eps 0, mean 0, variance 1), for inference, not for further training.
    Returns:
        :func:`describe` of the written file.
    """
    if float_dtype not in STORE_DTYPES:
        raise ValueError(f"save_model: expected float_dtype one of {sorted(STORE_DTYPES)}, got {float_dtype!r}")
    store = STORE_DTYPES[float_dtype]

    def stored(t: torch.Tensor) -> torch.Tensor:
        return t.detach().to(store) if t.is_floating_point() else t.detach()

    bins = bins or {}
    tensors, layers = {}, {}
    folded = {}
    if fold_batchnorm:
        for name, m in model.named_modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.affine:
                scale = m.weight.detach() / torch.sqrt(m.running_var + m.eps)
                tensors[name + ".scale"] = stored(scale)
                tensors[name + ".shift"] = stored(m.bias.detach() - m.running_mean * scale)
                folded.update({f"{name}.{k}": name for k in ("weight", "bias", "running_mean", "running_var",
                                                              "num_batches_tracked")})
    held = set()
    for key, (m, pq) in pq_entries(model).items():
        prefix = pq_prefix(key)
        pq_tensors, pq_meta = pq.to_tensors(prefix=prefix)
        tensors.update({k: stored(v) for k, v in pq_tensors.items()})
        held |= set(pq_tensors)
        info = {"kind": "pq", **pq_meta, "module": type(m).__name__, "numel": math.prod(pq.shape)}
        if hasattr(m, "codebook_levels"):  # EWGS: the codebook at the weight quantiser's bit width
            tensors[prefix + "codebook"] = ops.pack_bits(m.codebook_levels().reshape(-1), m.bits_w)
            info["codebook_levels_bits"] = m.bits_w
            info["codebook_shape"] = list(m.codebook.shape)
        layers[key] = info
    for name, t in model.state_dict().items():
        if name in held or name in folded:
            continue
        if name in bins:
            entry = bins[name]
            values = entry.get("values")
            if values is None:
                values = bins[entry["values_from"]]["values"]
            stream, enc = _encode_bins(entry["indices"].reshape(-1).cpu(), len(values))
            tensors[name + ".indices"] = stream
            info = {"kind": "bins", **enc, "shape": list(t.shape), "numel": t.numel(), "bins": len(values)}
            if "values_from" in entry:
                info["values_from"] = entry["values_from"]
            else:
                tensors[name + ".values"] = stored(values.reshape(-1))
            if "affine" in entry:
                info["affine"] = list(entry["affine"])
            layers[name] = info
        else:
            tensors[name] = stored(t)
    from .ewgs import quantized_layers

    header = {"arch": arch, "layers": layers, "fp32_bytes": fp32_bytes(model), **(meta or {})}
    if folded:
        header["folded_batchnorm"] = sorted(set(folded.values()))
    q = quantized_layers(model)
    if q:  # EWGS layers: rebuilt by load_model before their state is loaded
        header["ewgs"] = {"layers": [n for n, _ in q], "bits_w": q[0][1].bits_w, "bits_a": q[0][1].bits_a}
    io.save_compressed(path, tensors, header)
    return describe(path)


def load_model(path, model: Optional[nn.Module] = None) -> nn.Module:
    """The model stored in ``path``, in eval mode: PQ layers become PQLinear/PQConv2d (run through the codebook
    kernels), Bin & Quant weights are decoded to values[indices].

    Args:
        model: a float model of the same architecture to load into (modified in place); None to
            build it from the architecture recorded in the file.
    Raises:
        CompressedFileError on a corrupted file or one that does not fit the model.
    """
    tensors, meta = io.load_compressed(path)
    check_model_meta(path, meta)
    try:
        return _build(path, tensors, meta, model)
    except io.CompressedFileError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        # A header whose every field is well-typed can still disagree with its tensors or with
        # the architecture it names (a missing tensor or module, a wrong size): name it, in one line.
        raise io.CompressedFileError(f"{path}: does not describe a loadable model "
                                     f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc


def check_payload(path, tensors: dict, meta: dict) -> None:
    """Every stored stream against its header entry, before anything is decoded or allocated: packed
    codes of exactly ceil(count * bits / 8) bytes, codebooks of [groups, k, d], bin values of
    `bins` entries, bit-array indices of ceil(numel * nbits / 8) bytes, and a Huffman stream long
    enough for numel words of its shortest length (the code itself: check_model_meta).
    CompressedFileError names the tensor."""
    def need(name, what, ok):
        if name not in tensors:
            raise io.CompressedFileError(f"{path}: bad payload: {name}: missing ({what})")
        if not ok(tensors[name]):
            t = tensors[name]
            raise io.CompressedFileError(f"{path}: bad payload: {name}: expected {what}, got "
                                         f"{dtype_name(t.dtype)} {list(t.shape)}")

    def packed(count, bits):
        return lambda t: t.dtype == torch.uint8 and t.dim() == 1 and t.numel() == (count * bits + 7) // 8

    for name, info in meta["layers"].items():
        prefix = pq_prefix(name)
        if info["kind"] == "pq":
            bits = max(1, math.ceil(math.log2(info["k"])))
            count = math.prod(info["codes_shape"])
            need(prefix + "codes", f"{count} codes packed at {bits} bits", packed(count, bits))
            shape = [info["groups"], info["k"], info["d"]]
            if "codebook_levels_bits" in info:
                lb = info["codebook_levels_bits"]
                need(prefix + "codebook", f"{math.prod(shape)} levels packed at {lb} bits", packed(math.prod(shape), lb))
            else:
                need(prefix + "codebook", f"a float codebook {shape}",
                     lambda t: t.is_floating_point() and list(t.shape) == shape)
            continue
        if "values_from" not in info:
            need(name + ".values", f"{info['bins']} bin values", lambda t: t.dim() == 1 and t.numel() == info["bins"])
        if info["encoding"] == "bitarray":
            need(name + ".indices", f"{info['numel']} indices packed at {info['nbits']} bits",
                 packed(info["numel"], info["nbits"]))
            continue
        shortest = min(n for n in info["code_lengths"] if n)  # a prefix code: check_model_meta
        need(name + ".indices", f"a Huffman stream of at least {info['numel'] * shortest} bits",
             lambda t: t.dtype == torch.uint8 and t.dim() == 1 and t.numel() * 8 >= info["numel"] * shortest)


def _check_architecture(path, meta: dict, tensors: dict) -> None:
    """The recorded architecture, built on the meta device (no memory), against the stored shapes:
    a header naming a billion classes is refused before a billion-row classifier is allocated."""
    from .models import build_model

    arch = meta["arch"]
    with torch.device("meta"):
        skeleton = build_model(arch["name"], arch.get("num_classes", 10), arch.get("in_channels", 1))
    stored = {n: list(t.shape) for n, t in tensors.items()}
    stored.update({n: info["shape"] for n, info in meta["layers"].items()})
    for name, t in skeleton.state_dict().items():
        if name in stored and stored[name] != list(t.shape) and t.dim() > 0:
            raise io.CompressedFileError(f"{path}: does not fit {arch['name']} (num_classes "
                                         f"{arch.get('num_classes', 10)}, in_channels {arch.get('in_channels', 1)}): "
                                         f"{name} is {list(t.shape)} there, {stored[name]} in the file")


def _build(path, tensors: dict, meta: dict, model: Optional[nn.Module]) -> nn.Module:
    from .models import build_model

    check_payload(path, tensors, meta)
    tensors = {n: t.float() if t.is_floating_point() else t for n, t in tensors.items()}  # float16 storage
    if model is None:
        arch = meta.get("arch")
        if not arch:
            raise io.CompressedFileError(f"{path}: records no architecture; pass the model to load into")
        _check_architecture(path, meta, tensors)
        model = build_model(arch["name"], arch.get("num_classes", 10), arch.get("in_channels", 1))
    if "ewgs" in meta:
        from .ewgs import quantize_model

        q = meta["ewgs"]
        others = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
                  and n not in q["layers"]]
        quantize_model(model, q["bits_w"], q["bits_a"], keep_float=others)
    state, skip, levels = {}, set(), {}
    for name, info in meta["layers"].items():
        if info["kind"] == "pq":
            module_name, prefix = layer_name(name), pq_prefix(name)
            levels_bits = info.get("codebook_levels_bits")
            if levels_bits is not None:  # set from the levels once the quantiser bounds are loaded
                shape = info["codebook_shape"]
                stored = {prefix + "codes": tensors[prefix + "codes"], prefix + "codebook": torch.zeros(shape)}
                levels[module_name] = ops.unpack_bits(tensors[prefix + "codebook"], levels_bits,
                                                      math.prod(shape)).reshape(shape)
                pq = PQWeight.from_tensors(stored, info, prefix=prefix)
            else:
                pq = PQWeight.from_tensors(tensors, info, prefix=prefix)
            try:
                install_pq(model, module_name, pq)
            except TypeError as exc:
                raise io.CompressedFileError(f"{path}: {exc}") from exc
            skip |= {prefix + "codes", prefix + "codebook"}  # held by the new module
        elif info["kind"] == "bins":
            idx = _decode_bins(tensors[name + ".indices"], info)
            values = tensors[info.get("values_from", name) + ".values"]
            w = values[idx]
            if "affine" in info:
                scale, zero_point = info["affine"]
                w = (w.float() - zero_point) * scale
            state[name] = w.reshape(info["shape"])
            skip |= {name + ".indices", name + ".values"}
    for name in meta.get("folded_batchnorm", []):
        try:
            bn = model.get_submodule(name)
        except AttributeError as exc:
            raise io.CompressedFileError(f"{path}: does not fit {type(model).__name__}: {exc}") from exc
        bn.eps = 0.0  # with mean 0 and variance 1 the batch norm is exactly x * scale + shift
        scale, shift = tensors[name + ".scale"], tensors[name + ".shift"]
        state.update({name + ".weight": scale, name + ".bias": shift, name + ".running_mean": torch.zeros_like(scale),
                      name + ".running_var": torch.ones_like(scale), name + ".num_batches_tracked": torch.tensor(0)})
        skip |= {name + ".scale", name + ".shift"}
    state.update({n: t for n, t in tensors.items() if n not in skip})
    target = {n: t for n, t in model.state_dict().items() if n not in skip}
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    if missing or unexpected:
        raise io.CompressedFileError(f"{path}: does not fit {type(model).__name__}: missing "
                                     f"{missing[:5]}, unexpected {unexpected[:5]}")
    model.load_state_dict({k: v.to(target[k].dtype) for k, v in state.items()}, strict=False)
    for module_name, lv in levels.items():
        model.get_submodule(module_name).set_codebook_levels(lv)
    return model.eval()


def _natural_key(name: str):
    """'layer1.10.conv' after 'layer1.2.conv': numbers compared as numbers."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in name.split(".")]


def describe(path) -> dict:
    """Size accounting of a model file: per layer (module) its tensors' bytes, method and bits per
    weight; totals that add up to the file's size (the header is a row of its own); the ratios
    (a) indices_only, (b) with_codebooks, (c) all_inclusive."""
    tensors, meta = io.load_compressed(path)
    check_model_meta(path, meta)
    file_bytes = os.path.getsize(path)
    rows = {}

    def row(module):
        return rows.setdefault(module, {"layer": module, "shape": None, "method": None,
                                        "detail": "", "bytes": 0, "weights": 0,
                                        "index_bytes": 0, "codebook_bytes": 0})

    owner = {}
    for name, info in meta["layers"].items():
        module = layer_name(name)  # a recurrent matrix is a row of its own
        r = row(module)
        r["shape"], r["weights"] = info["shape"], info["numel"]
        if info["kind"] == "pq":
            r["method"], r["detail"] = "pq", f"d={info['d']} k={info['k']}"
            prefix = pq_prefix(name)
            owner[prefix + "codes"], owner[prefix + "codebook"] = (module, "index_bytes"), (module, "codebook_bytes")
        else:
            shared = f", values of {layer_name(info['values_from'])}" if "values_from" in info else ""
            codes = ", uint8 codes" if "affine" in info else ""
            r["method"], r["detail"] = "binquant", f"{info['bins']} bins, {info['encoding']}{codes}{shared}"
            owner[name + ".indices"], owner[name + ".values"] = (module, "index_bytes"), (module, "codebook_bytes")
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if name in owner:
            module, part = owner[name]
            rows[module][part] += nbytes
        else:
            module = name.rsplit(".", 1)[0] if "." in name else name
            r = row(module)
            if name.endswith(".weight") and t.dim() >= 2:  # a Conv/Linear weight, not batch norm's
                r["shape"], r["weights"] = list(t.shape), t.numel()
            if t.is_floating_point() and r["method"] is None:  # a plain row: named by its storage
                r["method"] = dtype_name(t.dtype)
        rows[module]["bytes"] += nbytes
    tensor_bytes = sum(r["bytes"] for r in rows.values())
    header_bytes = file_bytes - tensor_bytes
    for r in rows.values():
        r["bits_per_weight"] = (8 * r["bytes"] / r["weights"]) if r["weights"] else None
        r["share"] = r["bytes"] / file_bytes
        r["method"] = r["method"] or "plain"  # a row of integer tensors only
    compressed = [r for r in rows.values() if r["method"] in ("pq", "binquant")]
    n_c = sum(r["weights"] for r in compressed)
    idx_bytes = sum(r["index_bytes"] for r in compressed)
    cb_bytes = sum(r["codebook_bytes"] for r in compressed)
    return {
        "file_bytes": file_bytes, "header_bytes": header_bytes, "fp32_bytes": meta["fp32_bytes"],
        "layers": sorted(rows.values(), key=lambda r: _natural_key(r["layer"])),
        "compressed_weights": n_c,
        "bits_per_weight": {"indices": 8 * idx_bytes / n_c if n_c else None,
                            "with_codebooks": 8 * (idx_bytes + cb_bytes) / n_c if n_c else None,
                            "all_inclusive": 8 * file_bytes / (meta["fp32_bytes"] / 4)},
        "ratios": {"indices_only": 4 * n_c / idx_bytes if idx_bytes else None,
                   "with_codebooks": 4 * n_c / (idx_bytes + cb_bytes) if idx_bytes else None,
                   "all_inclusive": meta["fp32_bytes"] / file_bytes},
        "method": meta.get("method"), "arch": meta.get("arch"),
    }

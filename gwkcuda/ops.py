"""Typed Python wrappers of the torch.ops.gwkcuda ops, and their fake (meta) kernels.

The ops themselves are defined and implemented in C++ (csrc/); only what torch.compile needs is
registered here, with checks that mirror the C++ ones.
"""
import torch

from . import _C  # noqa: F401  (loading the extension registers torch.ops.gwkcuda.*)
from .shapes import CODE_DTYPES, MAX_BITS, packed_numel

_CODE_DTYPES = tuple(getattr(torch, name) for name in CODE_DTYPES)


def pack_bits(codes: torch.Tensor, nbits: int) -> torch.Tensor:
    """Packs integer codes into an LSB-first bit stream.

    Args:
        codes: integer tensor (uint8/int8/int16/int32/int64) of any shape, read flat; every code
            in [0, 2**nbits).
        nbits: bits per code, 1..16.
    Returns:
        uint8 tensor [ceil(codes.numel() * nbits / 8)] on codes' device. Raises on codes out of
        range (never truncates them).
    """
    return torch.ops.gwkcuda.pack_bits.default(codes, nbits)


def unpack_bits(packed: torch.Tensor, nbits: int, numel: int) -> torch.Tensor:
    """Unpacks the first ``numel`` codes of a stream made by :func:`pack_bits`.

    Args:
        packed: uint8 tensor with at least ceil(numel * nbits / 8) bytes (read flat).
        nbits: bits per code, 1..16.
        numel: number of codes, >= 0.
    Returns:
        int32 tensor [numel] on packed's device.
    """
    return torch.ops.gwkcuda.unpack_bits.default(packed, nbits, numel)


@torch.library.register_fake("gwkcuda::pack_bits")
def _pack_bits_fake(codes, nbits):
    torch._check(1 <= nbits <= MAX_BITS, lambda: f"pack_bits: expected nbits in 1..{MAX_BITS}, got {nbits}")
    torch._check(codes.dtype in _CODE_DTYPES,
                 lambda: f"pack_bits: expected an integer codes tensor, got {codes.dtype}")
    return codes.new_empty((packed_numel(codes.numel(), nbits),), dtype=torch.uint8)


@torch.library.register_fake("gwkcuda::unpack_bits")
def _unpack_bits_fake(packed, nbits, numel):
    torch._check(1 <= nbits <= MAX_BITS, lambda: f"unpack_bits: expected nbits in 1..{MAX_BITS}, got {nbits}")
    torch._check(numel >= 0, lambda: f"unpack_bits: expected numel >= 0, got {numel}")
    torch._check(packed.dtype == torch.uint8,
                 lambda: f"unpack_bits: expected a uint8 packed buffer, got {packed.dtype}")
    torch._check(packed.numel() >= packed_numel(numel, nbits),
                 lambda: f"unpack_bits: {numel} codes of {nbits} bits need "
                         f"{packed_numel(numel, nbits)} bytes, but the buffer holds {packed.numel()}")
    return packed.new_empty((numel,), dtype=torch.int32)

"""Pure-PyTorch reference implementations of the gwkcuda ops: the test oracle.

Written for clarity, never for speed: every bit is spelled out as an integer tensor of 0s and 1s.
"""
import torch

from .shapes import CODE_DTYPES, MAX_BITS, packed_numel


def _check_nbits(nbits):
    if not 1 <= nbits <= MAX_BITS:
        raise ValueError(f"expected nbits in 1..{MAX_BITS}, got {nbits}")


def pack_bits(codes: torch.Tensor, nbits: int) -> torch.Tensor:
    """Reference of ``torch.ops.gwkcuda.pack_bits``.

    codes: integer tensor of any shape, read flat, each in [0, 2**nbits).
    Returns uint8 [ceil(numel * nbits / 8)]: code i in stream bits [i*nbits, (i+1)*nbits), least
    significant bit first; stream bit b is bit (b % 8) of byte b // 8.
    """
    _check_nbits(nbits)
    if str(codes.dtype).removeprefix("torch.") not in CODE_DTYPES:
        raise TypeError(f"expected integer codes ({', '.join(CODE_DTYPES)}), got {codes.dtype}")
    flat = codes.reshape(-1).to(torch.int64).cpu()
    if flat.numel() and (flat.min() < 0 or flat.max() >= 2**nbits):
        raise ValueError(f"expected every code in [0, {2**nbits}), got values in "
                         f"[{int(flat.min())}, {int(flat.max())}]")
    # bits[i, b] = bit b of code i; the stream is these bits in row-major order.
    bits = (flat[:, None] >> torch.arange(nbits)) & 1
    stream = bits.reshape(-1)
    nbytes = packed_numel(flat.numel(), nbits)
    stream = torch.cat([stream, stream.new_zeros(nbytes * 8 - stream.numel())])
    # byte j = sum over t of stream[8j + t] * 2**t
    return (stream.reshape(nbytes, 8) << torch.arange(8)).sum(1).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, nbits: int, numel: int) -> torch.Tensor:
    """Reference of ``torch.ops.gwkcuda.unpack_bits``: int32 [numel], the inverse of pack_bits."""
    _check_nbits(nbits)
    if numel < 0:
        raise ValueError(f"expected numel >= 0, got {numel}")
    needed = packed_numel(numel, nbits)
    if packed.numel() < needed:
        raise ValueError(f"{numel} codes of {nbits} bits need {needed} bytes, got {packed.numel()}")
    stream = ((packed.reshape(-1).to(torch.int64).cpu()[:, None] >> torch.arange(8)) & 1).reshape(-1)
    bits = stream[: numel * nbits].reshape(numel, nbits)
    return (bits << torch.arange(nbits)).sum(1).to(torch.int32)

"""Output-shape rules shared by the fake (meta) kernels and the pure-PyTorch reference."""

MAX_BITS = 16
CODE_DTYPES = ("uint8", "int8", "int16", "int32", "int64")


def packed_numel(numel, nbits):
    """Bytes of a packed stream of ``numel`` codes of ``nbits`` bits: ceil(numel * nbits / 8)."""
    return (numel * nbits + 7) // 8

"""Benchmark cases shared by the pytest-benchmark files and bench/report.py.

A case is (group, name, fn, bytes_moved, baseline): `fn()` runs the work once (synchronised on
CUDA), bytes_moved counts bytes read plus bytes written, the quantity a memory-bound op is judged
by, and baseline marks what the group is compared with.
"""
import torch

from gwkcuda import ops

BITPACK_NUMEL = 64 * 2**20
BITPACK_NBITS = (1, 3, 4, 8, 13, 16)


def _sync(device):
    return torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)


def bitpack_cases(device="cpu", numel=BITPACK_NUMEL, nbits_list=BITPACK_NBITS):
    """pack_bits and unpack_bits on `numel` int32 codes, next to a clone of the int32 codes (the
    baseline: a buffer as large as what unpack writes and pack reads, so neither side runs from
    cache alone) and a clone of the packed bytes."""
    sync = _sync(device)
    gen = torch.Generator().manual_seed(0)
    for nbits in nbits_list:
        codes = torch.randint(0, 2**nbits, (numel,), generator=gen, dtype=torch.int32).to(device)
        packed = ops.pack_bits(codes, nbits)
        group = f"nbits={nbits}"

        def pack(codes=codes, nbits=nbits):
            ops.pack_bits(codes, nbits)
            sync()

        def unpack(packed=packed, nbits=nbits):
            ops.unpack_bits(packed, nbits, numel)
            sync()

        def copy_codes(codes=codes):
            codes.clone()
            sync()

        def copy_packed(packed=packed):
            packed.clone()
            sync()

        moved = codes.numel() * codes.element_size() + packed.numel()
        yield group, "pack_bits", pack, moved, False
        yield group, "unpack_bits", unpack, moved, False
        yield group, "copy of the int32 codes", copy_codes, 2 * codes.numel() * codes.element_size(), True
        yield group, "copy of packed bytes", copy_packed, 2 * packed.numel(), False

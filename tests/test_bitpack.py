"""pack_bits / unpack_bits against the pure-PyTorch reference, bit for bit."""
import pytest
import torch

from gwkcuda import ops, reference
from gwkcuda.shapes import packed_numel

from .conftest import needs_cuda

NBITS = list(range(1, 17))
SIZES = [0, 1, 7, 4097, 1_000_003]


def random_codes(numel, nbits, dtype=torch.int32, seed=0):
    gen = torch.Generator().manual_seed(seed * 131 + nbits)
    return torch.randint(0, 2**nbits, (numel,), generator=gen, dtype=torch.int64).to(dtype)


@pytest.mark.parametrize("numel", SIZES)
@pytest.mark.parametrize("nbits", NBITS)
def test_round_trip_matches_reference(device, nbits, numel):
    codes = random_codes(numel, nbits)
    packed = ops.pack_bits(codes.to(device), nbits)
    assert packed.dtype == torch.uint8 and packed.device.type == device
    assert packed.shape == (packed_numel(numel, nbits),)
    assert torch.equal(packed.cpu(), reference.pack_bits(codes, nbits))
    unpacked = ops.unpack_bits(packed, nbits, numel)
    assert unpacked.dtype == torch.int32 and unpacked.shape == (numel,)
    assert torch.equal(unpacked.cpu(), codes)
    assert torch.equal(reference.unpack_bits(packed.cpu(), nbits, numel), codes)


def test_reference_layout_by_hand():
    # nbits = 3, codes 1..8 (8 wraps to... no: 7 max), written out bit by bit, LSB first.
    codes = torch.tensor([1, 2, 3, 4, 5, 6, 7, 0])
    # stream bits: 100 010 110 001 101 011 111 000 -> bytes (LSB first) 0b01010001 ...
    bits = "100010110001101011111000"
    expected = torch.tensor([int(bits[i:i + 8][::-1], 2) for i in range(0, 24, 8)], dtype=torch.uint8)
    assert torch.equal(reference.pack_bits(codes, 3), expected)
    assert torch.equal(ops.pack_bits(codes, 3), expected)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64])
def test_every_integer_dtype(device, dtype):
    nbits = 7 if dtype in (torch.uint8, torch.int8) else 13
    codes = random_codes(1000, nbits, dtype)
    packed = ops.pack_bits(codes.to(device), nbits)
    assert torch.equal(packed.cpu(), reference.pack_bits(codes, nbits))


def test_non_contiguous_and_multidim_codes_read_flat(device):
    codes = random_codes(60, 5).reshape(6, 10).t()  # non-contiguous view
    packed = ops.pack_bits(codes.to(device), 5)
    assert torch.equal(packed.cpu(), reference.pack_bits(codes.contiguous(), 5))


def test_unpack_reads_only_what_numel_needs(device):
    codes = random_codes(10, 11)
    packed = torch.cat([ops.pack_bits(codes, 11), torch.full((5,), 255, dtype=torch.uint8)])
    assert torch.equal(ops.unpack_bits(packed.to(device), 11, 10).cpu(), codes)
    assert torch.equal(ops.unpack_bits(packed.to(device), 11, 3).cpu(), codes[:3])


@needs_cuda
@pytest.mark.parametrize("nbits", NBITS)
def test_cpu_and_cuda_give_identical_bytes(nbits):
    codes = random_codes(1_000_003, nbits, seed=1)
    cpu = ops.pack_bits(codes, nbits)
    gpu = ops.pack_bits(codes.cuda(), nbits)
    assert torch.equal(cpu, gpu.cpu())
    assert torch.equal(ops.unpack_bits(cpu.cuda(), nbits, codes.numel()).cpu(), codes)


@needs_cuda
def test_cuda_unpack_never_syncs_with_the_host():
    packed = ops.pack_bits(random_codes(4096 + 5, 7, seed=2), 7).cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        ops.unpack_bits(packed, 7, 4096 + 5)
        ops.unpack_bits(packed[1:], 7, 8)  # an offset view: the reads are bytes, any alignment
    finally:
        torch.cuda.set_sync_debug_mode("default")


# --- bad input: a clear error, never a crash or silent truncation ---------------------------------

@pytest.mark.parametrize("bad, nbits, pattern", [
    (8, 3, r"expected every code in \[0, 8\) for nbits=3, got 8 at flat index 2"),
    (-1, 4, r"expected every code in \[0, 16\) for nbits=4, got -1 at flat index 2"),
    (65536, 16, r"\[0, 65536\).*got 65536"),
])
def test_out_of_range_code_is_refused(device, bad, nbits, pattern):
    codes = torch.tensor([0, 1, bad, 1, bad], dtype=torch.int64, device=device)
    with pytest.raises(RuntimeError, match=pattern):
        ops.pack_bits(codes, nbits)


@pytest.mark.parametrize("nbits", [0, 17, -3])
def test_nbits_outside_range_is_refused(device, nbits):
    with pytest.raises(RuntimeError, match=rf"expected nbits in 1..16, got {nbits}"):
        ops.pack_bits(torch.zeros(4, dtype=torch.int32, device=device), nbits)
    with pytest.raises(RuntimeError, match=rf"expected nbits in 1..16, got {nbits}"):
        ops.unpack_bits(torch.zeros(4, dtype=torch.uint8, device=device), nbits, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bool])
def test_non_integer_codes_are_refused(device, dtype):
    with pytest.raises(RuntimeError, match=r"expected an integer codes tensor .* got"):
        ops.pack_bits(torch.zeros(4, dtype=dtype, device=device), 4)


def test_short_packed_buffer_is_refused(device):
    packed = torch.zeros(3, dtype=torch.uint8, device=device)
    with pytest.raises(RuntimeError, match=r"5 codes of 5 bits need 4 bytes, but the packed buffer holds 3"):
        ops.unpack_bits(packed, 5, 5)


def test_negative_numel_is_refused(device):
    with pytest.raises(RuntimeError, match=r"expected numel >= 0, got -1"):
        ops.unpack_bits(torch.zeros(3, dtype=torch.uint8, device=device), 4, -1)


def test_non_uint8_packed_buffer_is_refused(device):
    with pytest.raises(RuntimeError, match=r"expected a uint8 packed buffer, got Int"):
        ops.unpack_bits(torch.zeros(3, dtype=torch.int32, device=device), 4, 2)


def test_reference_refuses_the_same_inputs():
    with pytest.raises(ValueError):
        reference.pack_bits(torch.tensor([4]), 2)
    with pytest.raises(TypeError):
        reference.pack_bits(torch.tensor([1.0]), 2)
    with pytest.raises(ValueError):
        reference.unpack_bits(torch.zeros(1, dtype=torch.uint8), 4, 3)


# --- registration: schema, fake kernels, torch.compile ---------------------------------------------

@pytest.mark.parametrize("nbits", [1, 5, 13])
def test_opcheck(device, nbits):
    codes = random_codes(1001, nbits).to(device)
    torch.library.opcheck(torch.ops.gwkcuda.pack_bits.default, (codes, nbits))
    packed = ops.pack_bits(codes, nbits)
    torch.library.opcheck(torch.ops.gwkcuda.unpack_bits.default, (packed, nbits, 1001))


def test_torch_compile_fullgraph_round_trip():
    @torch.compile(fullgraph=True, backend="aot_eager")
    def round_trip(codes):
        return ops.unpack_bits(ops.pack_bits(codes, 6), 6, codes.numel()) + 1

    codes = random_codes(333, 6)
    assert torch.equal(round_trip(codes), codes + 1)

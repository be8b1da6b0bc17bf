"""pq_linear / pq_decode against a float64 reference; autograd, opcheck, torch.compile; the PQ
layers and the PQ weight file."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gwkcuda import ops, reference
from gwkcuda.io import load_compressed
from gwkcuda.nn import PQConv2d, PQLinear
from gwkcuda.pq import PQConfig, PQWeight, pq_quantize

from .conftest import needs_cuda

TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}

# (N, K, d, k, G): N and K not powers of two; G = 1 and G = N / 2; uint8 and int32 codes
SHAPES = [(30, 56, 8, 5, 1), (30, 56, 8, 256, 15), (46, 48, 16, 300, 2), (30, 42, 3, 7, 15), (10, 5, 1, 3, 1)]


def make(N, K, d, k, G, dtype=torch.float32, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, k, (N, K // d), generator=gen).to(torch.uint8 if k <= 256 else torch.int32)
    codebook = torch.randn(G, k, d, generator=gen, dtype=torch.float64).to(dtype)
    bias = torch.randn(N, generator=gen, dtype=torch.float64).to(dtype)
    return codes.to(device), codebook.to(device), bias.to(device)


def relative_error(actual, expected):
    expected = expected.to(torch.float64).cpu()
    return ((actual.to(torch.float64).cpu() - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()


@pytest.mark.parametrize("dtype", list(TOLERANCE))
@pytest.mark.parametrize("M", [1, 3, 17])
@pytest.mark.parametrize("shape", SHAPES, ids=[str(s) for s in SHAPES])
def test_pq_linear_matches_float64_reference(device, shape, M, dtype):
    N, K, d, k, G = shape
    codes, codebook, bias = make(N, K, d, k, G, dtype, device)
    x = torch.randn(M, K, dtype=torch.float64).to(dtype).to(device)
    for b in (bias, None):
        y = ops.pq_linear(x, codes, codebook, b)
        assert y.shape == (M, N) and y.dtype == dtype
        expected = x.double().cpu() @ reference.pq_decode(codes.cpu(), codebook.cpu()).double().t()
        if b is not None:
            expected = expected + b.double().cpu()
        assert relative_error(y, expected) <= TOLERANCE[dtype]


@pytest.mark.parametrize("M", [1, 16])
@pytest.mark.parametrize("d", [8, 4])
def test_pq_linear_with_long_rows_matches_float64_reference(device, M, d):
    # K/d = 512 and 1024 codes per row: a CUDA warp's lanes loop over a row 16 and 32 times (the
    # shapes above never loop twice), and the CPU's row tiles split it.
    N, K, k = 384, 4096, 256
    codes, codebook, bias = make(N, K, d, k, 1, device=device)
    x = torch.randn(M, K, dtype=torch.float64).float().to(device)
    expected = x.double().cpu() @ reference.pq_decode(codes.cpu(), codebook.cpu()).double().t() + bias.double().cpu()
    assert relative_error(ops.pq_linear(x, codes, codebook, bias), expected) <= TOLERANCE[torch.float32]


@pytest.mark.parametrize("M", [1, 16])
@pytest.mark.parametrize("G", [2, 5])
def test_pq_linear_with_many_rows_per_codebook_group_matches_float64_reference(device, M, G):
    # 20000 rows in G groups: on CUDA each group's codebook is staged in shared memory, and there
    # are more row tiles than resident blocks, so a block moves on to another group and restages.
    N, K, d, k = 20000, 64, 8, 16
    codes, codebook, bias = make(N, K, d, k, G, device=device)
    x = torch.randn(M, K, dtype=torch.float64).float().to(device)
    expected = x.double().cpu() @ reference.pq_decode(codes.cpu(), codebook.cpu()).double().t() + bias.double().cpu()
    assert relative_error(ops.pq_linear(x, codes, codebook, bias), expected) <= TOLERANCE[torch.float32]


# (N, K, d, k, G) at M = 1 that CUDA serves with lookup tables (uint8 codes, K/d a multiple of 16,
# >= 4k rows per group): 9 blocks of rows, the last one partial, and splits of 2 staged tables;
# 2 groups of half a block; k = 16 with one table and one split (y written directly); k = 100, a
# run-time k, whose last table holds 16 of 32 positions.
LUT_SHAPES = [(36000, 1024, 2, 256, 1), (4096, 2048, 8, 256, 2), (5000, 1024, 4, 16, 2), (3000, 640, 8, 100, 3)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", LUT_SHAPES, ids=[str(s) for s in LUT_SHAPES])
def test_pq_linear_of_one_row_through_lookup_tables_matches_float64_reference(device, shape, dtype):
    N, K, d, k, G = shape
    codes, codebook, bias = make(N, K, d, k, G, dtype, device)
    x = torch.randn(1, K, dtype=torch.float64).to(dtype).to(device)
    expected = x.double().cpu() @ reference.pq_decode(codes.cpu(), codebook.cpu()).double().t()
    assert relative_error(ops.pq_linear(x, codes, codebook, None), expected) <= TOLERANCE[dtype]
    expected = expected + bias.double().cpu()
    assert relative_error(ops.pq_linear(x, codes, codebook, bias), expected) <= TOLERANCE[dtype]
    # Codes not 16-byte aligned (a view one byte into its storage) take the other kernel on CUDA.
    storage = torch.empty(codes.numel() + 1, dtype=codes.dtype, device=device)
    shifted = storage[1:].view(codes.shape)
    shifted.copy_(codes)
    assert relative_error(ops.pq_linear(x, shifted, codebook, bias), expected) <= TOLERANCE[dtype]


@pytest.mark.parametrize("M", [1, 17])
def test_pq_linear_under_inference_mode(device, M):
    # 1024 x 512 float32 is 2 MB of W: the decode path splits it into tiles over the threads, and
    # every thread must see the caller's inference mode to write the output it made.
    codes, codebook, bias = make(1024, 512, 4, 16, 1, device=device)
    x = torch.randn(M, 512, dtype=torch.float64).float().to(device)
    expected = x.double().cpu() @ reference.pq_decode(codes.cpu(), codebook.cpu()).double().t() + bias.double().cpu()
    with torch.inference_mode():
        y = ops.pq_linear(x.clone(), codes.clone(), codebook.clone(), bias.clone())
    assert y.is_inference()
    assert relative_error(y, expected) <= TOLERANCE[torch.float32]


@pytest.mark.parametrize("shape", SHAPES, ids=[str(s) for s in SHAPES])
def test_pq_decode_matches_reference(device, shape):
    codes, codebook, _ = make(*shape, device=device)
    assert torch.equal(ops.pq_decode(codes, codebook).cpu(), reference.pq_decode(codes.cpu(), codebook.cpu()))


def test_input_gradient_without_dense_weight_matches_dense():
    from gwkcuda.ops import _grad_input_through_codes
    codes, codebook, _ = make(46, 48, 16, 300, 2, torch.float64)
    grad_y = torch.randn(3, 46, dtype=torch.float64)
    expected = grad_y @ reference.pq_decode(codes, codebook)
    assert torch.allclose(_grad_input_through_codes(grad_y, codes, codebook), expected)


@pytest.mark.parametrize("M", [1, 2, 3, 17])
def test_gradcheck(device, M):
    codes, codebook, bias = make(30, 56, 8, 5, 15, torch.float64, device)
    x = torch.randn(M, 56, dtype=torch.float64, device=device, requires_grad=True)
    codebook.requires_grad_(True)
    bias.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, c, b: ops.pq_linear(x, codes, c, b), (x, codebook, bias))
    assert torch.autograd.gradcheck(lambda c: ops.pq_decode(codes, c), (codebook,))


def test_codebook_gradient_is_the_sum_over_its_sub_vectors():
    codes, codebook, _ = make(30, 56, 8, 5, 1, torch.float64)
    codebook.requires_grad_(True)
    x = torch.randn(4, 56, dtype=torch.float64)
    ops.pq_linear(x, codes, codebook, None).sum().backward()
    dense = reference.pq_decode(codes, codebook.detach()).requires_grad_(True)
    (x @ dense.t()).sum().backward()
    expected = torch.zeros(5, 8, dtype=torch.float64).index_add_(
        0, codes.reshape(-1).long(), dense.grad.reshape(-1, 8))
    assert torch.allclose(codebook.grad[0], expected)


@pytest.mark.parametrize("M", [1, 17])
def test_opcheck(device, M):
    codes, codebook, bias = make(30, 56, 8, 5, 15, torch.float32, device)
    x = torch.randn(M, 56, device=device)
    torch.library.opcheck(torch.ops.gwkcuda.pq_linear.default, (x, codes, codebook, bias))
    torch.library.opcheck(torch.ops.gwkcuda.pq_linear.default, (x, codes, codebook, None))
    torch.library.opcheck(torch.ops.gwkcuda.pq_decode.default, (codes, codebook))


def test_torch_compile_fullgraph_pq_layer():
    layer = PQLinear.from_float(nn.Linear(64, 30), PQConfig(d=8, k=16))
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 5, 64, requires_grad=True)
    y = compiled(x)
    assert torch.allclose(y, layer(x), atol=1e-6)
    y.sum().backward()
    assert layer.codebook.grad is not None and x.grad is not None


@needs_cuda
@pytest.mark.parametrize("M", [1, 3, 17])
def test_cpu_and_cuda_agree(M):
    codes, codebook, bias = make(46, 48, 16, 300, 2)
    x = torch.randn(M, 48)
    cpu = ops.pq_linear(x, codes, codebook, bias)
    gpu = ops.pq_linear(x.cuda(), codes.cuda(), codebook.cuda(), bias.cuda())
    assert relative_error(gpu, cpu) <= 1e-5


@needs_cuda
def test_pq_layer_under_cuda_graphs():
    layer = PQLinear.from_float(nn.Linear(64, 30), PQConfig(d=8, k=16)).cuda()
    x = torch.randn(3, 64, device="cuda")
    expected = layer(x)
    compiled = torch.compile(layer, mode="reduce-overhead", fullgraph=True)
    for _ in range(3):
        got = compiled(x)
    assert torch.allclose(got, expected, atol=1e-5)


def pq_mlp(seed=0):
    """A compressed 256 -> 2048 -> 512 -> 10 MLP: at one input row the first two layers take the
    CUDA lookup tables, the last (10 rows) the warp-per-row kernel."""
    torch.manual_seed(seed)
    dense = [nn.Linear(256, 2048), nn.ReLU(), nn.Linear(2048, 512), nn.ReLU(), nn.Linear(512, 10)]
    return nn.Sequential(*[PQLinear.from_float(m, PQConfig(d=8, k=16)) if isinstance(m, nn.Linear) else m
                           for m in dense])


@needs_cuda
def test_a_whole_compressed_model_replays_as_one_cuda_graph():
    # Small layers cost less than a launch: a decoded token's whole model is one graph replay.
    cpu_model = pq_mlp()
    model = copy.deepcopy(cpu_model).cuda()
    static_x = torch.randn(1, 256, device="cuda")
    with torch.no_grad():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture stream, as torch.cuda.graph asks
            model(static_x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_y = model(static_x)
        for seed in range(3):
            x = torch.randn(1, 256, generator=torch.Generator().manual_seed(seed)).cuda()
            static_x.copy_(x)
            graph.replay()
            assert relative_error(static_y, cpu_model(x.cpu())) <= TOLERANCE[torch.float32]


# --- bad input -------------------------------------------------------------------------------------

def test_code_out_of_range_is_refused(device):
    codes, codebook, bias = make(30, 56, 8, 5, 1, device=device)
    codes[4, 2] = 7
    # Checked once where a PQ weight is built or loaded, on every device.
    with pytest.raises(ValueError, match=r"PQWeight: expected every code in \[0, 5\) .* got 7 at codes\[4, 2\]"):
        PQWeight(codes, codebook, (30, 56), PQConfig(8, 5))
    if device == "cpu":  # the CPU ops also check as they go, at no extra cost
        for M in (1, 17):
            with pytest.raises(RuntimeError, match=r"expected every code in \[0, 5\) .* got 7 at codes\[4, 2\]"):
                ops.pq_linear(torch.randn(M, 56, device=device), codes, codebook, bias)
        with pytest.raises(RuntimeError, match=r"got 7 at codes\[4, 2\]"):
            ops.pq_decode(codes, codebook)
    else:  # CUDA: no check per call (it would sync the host); the code reads codeword 0, memory-safe
        fixed = codes.clone()
        fixed[4, 2] = 0
        for M in (1, 17):
            x = torch.randn(M, 56, device=device)
            torch.testing.assert_close(ops.pq_linear(x, codes, codebook, bias), ops.pq_linear(x, fixed, codebook, bias))
        assert torch.equal(ops.pq_decode(codes, codebook), ops.pq_decode(fixed, codebook))
        # The same in the lookup tables (M = 1, 16 codes per row, 4096 rows >= 4k per group).
        codes, codebook, bias = make(4096, 128, 8, 5, 1, device=device)
        fixed = codes.clone()
        codes[4, 2], fixed[4, 2] = 7, 0
        x = torch.randn(1, 128, device=device)
        torch.testing.assert_close(ops.pq_linear(x, codes, codebook, bias), ops.pq_linear(x, fixed, codebook, bias))


def test_codes_loaded_into_a_pq_layer_are_checked():
    layer = PQLinear.from_float(nn.Linear(64, 30), PQConfig(d=8, k=5))
    state = layer.state_dict()
    state["codes"] = state["codes"].clone()
    state["codes"][3, 1] = 9
    with pytest.raises(ValueError, match=r"PQLinear.load_state_dict: expected every code in \[0, 5\) .* got 9 at codes\[3, 1\]"):
        layer.load_state_dict(state)
    parent = nn.Sequential(PQLinear.from_float(nn.Linear(64, 30), PQConfig(d=8, k=5)))
    with pytest.raises(ValueError, match="got 9 at codes"):  # through a parent's load_state_dict too
        parent.load_state_dict({"0." + n: t for n, t in state.items()})
    assert ops.check_pq_codes(torch.full((2, 3), 255, dtype=torch.uint8), 256) is None  # cannot fire: free


@needs_cuda
def test_cuda_pq_ops_never_sync_with_the_host():
    layer = PQLinear.from_float(nn.Linear(64, 30), PQConfig(d=8, k=5)).cuda()
    xs = [torch.randn(M, 64, device="cuda") for M in (1, 17)]
    codes, codebook, bias = make(4096, 2048, 8, 256, 1, device="cuda")  # M = 1: the lookup tables
    one_row = torch.randn(1, 2048, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x in xs:
            layer(x)
        ops.pq_decode(layer.codes, layer.codebook)
        ops.pq_linear(one_row, codes, codebook, bias)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_shape_dtype_and_device_mismatches_are_refused(device):
    codes, codebook, bias = make(30, 56, 8, 5, 15, device=device)
    x = torch.randn(2, 56, device=device)
    with pytest.raises(RuntimeError, match=r"expected x with K = 56 columns .* got \[2, 55\] \(K is not divisible by d\)"):
        ops.pq_linear(x[:, :55], codes, codebook, bias)
    with pytest.raises(RuntimeError, match=r"N = 30 rows of codes to split into G = 4 equal groups"):
        ops.pq_linear(x, codes, codebook[:4], bias)
    with pytest.raises(RuntimeError, match=r"expected x of the codebook's dtype Float, got Double"):
        ops.pq_linear(x.double(), codes, codebook, bias)
    with pytest.raises(RuntimeError, match=r"expected a codebook of shape \[G, k, d\], got \[15, 5\]"):
        ops.pq_linear(x, codes, codebook[:, :, 0], bias)
    with pytest.raises(RuntimeError, match=r"expected uint8 codes \(k <= 256\) or int32 codes, got Long"):
        ops.pq_linear(x, codes.long(), codebook, bias)
    with pytest.raises(RuntimeError, match=r"expected bias of shape \[30\]"):
        ops.pq_linear(x, codes, codebook, bias[:3])
    if device == "cuda":
        with pytest.raises(RuntimeError, match=r"expected x on the codebook's device"):
            ops.pq_linear(x.cpu(), codes, codebook, bias)


def test_pq_config_and_quantize_refuse_bad_values():
    with pytest.raises(ValueError, match="expected d an int >= 1"):
        PQConfig(d=0, k=4)
    with pytest.raises(ValueError, match="expected k <= 65536"):
        PQConfig(d=1, k=70000)
    with pytest.raises(ValueError, match=r"row length K = 10 .* divisible by d = 4"):
        pq_quantize(torch.randn(6, 10), PQConfig(d=4, k=2))
    with pytest.raises(ValueError, match=r"N = 6 rows to split into groups = 4"):
        pq_quantize(torch.randn(6, 8), PQConfig(d=4, k=2, groups=4))
    with pytest.raises(ValueError, match=r"k = 64 codewords but each group has only 12 sub-vectors"):
        pq_quantize(torch.randn(6, 8), PQConfig(d=4, k=64))


# --- quantisation and layers -----------------------------------------------------------------------

def test_pq_quantize_accounting_and_importance():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(64, 72, generator=gen)
    config = PQConfig(d=9, k=16)
    plain = pq_quantize(w, config)
    assert plain.codes.shape == (64, 8) and plain.codebook.shape == (1, 16, 9)
    assert plain.bits_per_weight["indices"] == pytest.approx(4 / 9)
    assert plain.bits_per_weight["with_codebooks"] == pytest.approx((64 * 8 * 4 + 16 * 9 * 32) / (64 * 72))
    importance = torch.ones_like(w)
    importance[:8] = 1000.0  # the first rows matter most
    weighted = pq_quantize(w, config, importance)
    err = lambda q, rows: ((q.decode() - w)[rows] ** 2).sum().item()
    assert err(weighted, slice(0, 8)) < err(plain, slice(0, 8))


def test_pq_weight_file_round_trip(tmp_path):
    w = torch.randn(30, 56)
    q = pq_quantize(w, PQConfig(d=8, k=300 // 2, groups=1))
    q.save(tmp_path / "w.gwk")
    back = PQWeight.load(tmp_path / "w.gwk")
    assert torch.equal(back.codes, q.codes) and torch.equal(back.codebook, q.codebook)
    assert torch.equal(back.decode(), q.decode())
    tensors, _ = load_compressed(tmp_path / "w.gwk")
    assert tensors["codes"].numel() == (30 * 7 * 8 + 7) // 8  # 8-bit indices for k = 150


@pytest.mark.parametrize("groups, cin, cout", [(1, 6, 10), (2, 6, 10), (6, 6, 6)])
def test_pq_conv2d_reproduces_conv_with_decoded_weight(device, groups, cin, cout):
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1, groups=groups).to(device)
    opt = torch.optim.SGD(conv.parameters(), lr=0.1)
    for _ in range(5):  # a few steps of training, so the filters are not just initial noise
        x = torch.randn(4, cin, 11, 11, device=device)
        loss = (conv(x) - x[:, :1, ::2, ::2]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    d = 9 if groups < cin else 3  # depthwise: 1 * 3 * 3 = 9 weights per filter, d = 3
    q = PQConv2d.from_float(conv, PQConfig(d=d, k=4))
    x = torch.randn(2, cin, 11, 11, device=device)
    expected = F.conv2d(x, q.decoded_weight(), conv.bias, 2, 1, 1, groups)
    assert torch.allclose(q(x), expected, atol=1e-6)
    assert q.decoded_weight().shape == conv.weight.shape


def test_state_dict_round_trip():
    torch.manual_seed(0)
    a = PQLinear.from_float(nn.Linear(64, 30), PQConfig(d=8, k=16))
    b = PQLinear.from_float(nn.Linear(64, 30), PQConfig(d=8, k=16))
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 64)
    assert torch.equal(a(x), b(x))


def test_pq_linear_trains_its_codebook():
    torch.manual_seed(0)
    layer = PQLinear.from_float(nn.Linear(32, 8), PQConfig(d=4, k=8))
    target = nn.Linear(32, 8)
    opt = torch.optim.Adam([layer.codebook, layer.bias], lr=1e-2)
    x = torch.randn(256, 32)
    first = None
    for _ in range(50):
        loss = (layer(x) - target(x).detach()).pow(2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    codes_before = layer.codes.clone()
    assert torch.equal(layer.codes, codes_before)

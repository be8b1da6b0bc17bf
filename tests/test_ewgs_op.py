"""ops.ewgs_quantize (the EWGS quantiser in one pass each way) against the same quantiser as torch
ops (ewgs.ewgs_quantize_reference): values, gradients, dtypes, bad input, opcheck, the layers."""
import warnings

import pytest
import torch
from torch import nn

from gwkcuda import ewgs, ops


def inputs(shape, dtype=torch.float32, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 1.5).to(dtype)
    # Ties of the rounding (x exactly between two levels of [-1, 2] at 15 steps) and the clamp's
    # edges, where the gradient rule changes.
    flat = x.view(-1)
    flat[:8] = torch.tensor([-1.0, 2.0, -1.0 + 0.1, 2.0 + 1e-3, -1.1, 0.5, -0.9, 1.9], dtype=torch.float64).to(dtype)
    lower = torch.tensor(-1.0, device=device, requires_grad=True)
    upper = torch.tensor(2.0, device=device, requires_grad=True)
    return x.to(device).requires_grad_(True), lower, upper


def both(x, lower, upper, bits, delta, grad):
    """(q, grad_x, grad_lower, grad_upper) of the fused op and of the reference."""
    out = []
    for fn in (lambda: ops.ewgs_quantize(x, lower, upper, 2 ** bits, delta),
               lambda: ewgs.ewgs_quantize_reference(x, lower, upper, bits, delta)):
        x.grad = lower.grad = upper.grad = None
        q = fn()
        q.backward(grad)
        out.append((q.detach(), x.grad, lower.grad, upper.grad))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bits", [1, 4, 8])
@pytest.mark.parametrize("delta", [0.0, 0.4])
def test_values_and_gradients_match_the_torch_ops(device, dtype, bits, delta):
    x, lower, upper = inputs((64, 8, 17, 5), dtype, device)  # 43520 elements: several CPU chunks
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=dtype).to(device)
    grad.view(-1)[2:5] = 0  # sign(0) = 0 (elements 0 and 1 sit on the clamp's edges)
    (q, gx, gl, gu), (q_ref, gx_ref, gl_ref, gu_ref) = both(x, lower, upper, bits, torch.tensor(delta, device=device), grad)
    assert q.dtype == dtype and q.shape == x.shape
    assert torch.equal(q, q_ref)
    if device == "cpu":  # the same operations in the same order: the same bits
        assert torch.equal(gx, gx_ref)
    else:  # nvcc may fuse a multiply and an add that the torch ops round twice
        torch.testing.assert_close(gx, gx_ref, rtol=1e-6, atol=1e-7)
    # The bounds' gradients are sums over every element: float64 here, float32 in the torch ops.
    torch.testing.assert_close(gl, gl_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gu, gu_ref, rtol=1e-4, atol=1e-4)
    assert gl.dtype == lower.dtype and gl.shape == ()


def test_nan_and_non_contiguous_inputs_behave_as_the_torch_ops(device):
    x, lower, upper = inputs((40, 30), device=device)
    with torch.no_grad():
        x[3, 4] = float("nan")
    xt = x.t()  # not contiguous
    delta = torch.tensor(0.2, device=device)
    q = ops.ewgs_quantize(xt, lower, upper, 16, delta)
    q_ref = ewgs.ewgs_quantize_reference(xt, lower, upper, 4, delta)
    assert torch.isnan(q[4, 3]) and torch.equal(torch.isnan(q), torch.isnan(q_ref))
    assert torch.equal(q.nan_to_num(), q_ref.nan_to_num())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_quantize_within_one_level_of_float32(device, dtype):
    # The torch ops round to the half type after every step; the op computes in float32 once.
    x, lower, upper = inputs((50, 40), device=device)
    delta = torch.tensor(0.0, device=device)
    q = ops.ewgs_quantize(x.detach().to(dtype), lower, upper, 16, delta)
    q32 = ops.ewgs_quantize(x.detach().to(dtype).float(), lower, upper, 16, delta)
    assert q.dtype == dtype
    assert torch.equal(q.float(), q32.to(dtype).float())


def test_backward_sums_do_not_depend_on_the_thread_count():
    x, lower, upper = inputs((300, 1000))  # 18 chunks of 2**14
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    delta = torch.tensor(0.3)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(torch.ops.gwkcuda.ewgs_quantize_backward(grad, x.detach(), lower.detach(), upper.detach(), 16, delta))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_quantised_layers_compute_the_same_with_the_op_and_the_torch_ops():
    torch.manual_seed(0)
    conv = ewgs.QConv2d(8, 16, 3, padding=1, bits_w=4, bits_a=4)
    x = torch.randn(4, 8, 12, 12)
    conv(x)  # initialises the bounds and the output scale (the smallest input exactly on a_lower)
    results = []
    for fused in (True, False):
        conv.zero_grad(set_to_none=True)
        conv.fused = fused
        y = conv(x)
        y.square().sum().backward()
        results.append([y.detach()] + [p.grad for p in (conv.weight, conv.w_lower, conv.w_upper, conv.a_lower,
                                                          conv.a_upper, conv.output_scale)])
    del conv.fused  # back to the class default
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_bad_input_is_refused_with_what_was_expected():
    x, lower, upper = inputs((4, 4))
    delta = torch.tensor(0.0)
    with pytest.raises(RuntimeError, match="expected levels in 2..65536, got 1"):
        ops.ewgs_quantize(x, lower, upper, 1, delta)
    with pytest.raises(RuntimeError, match=r"expected lower a 0-d floating-point tensor, got Float of shape \[1\]"):
        ops.ewgs_quantize(x, lower.detach().reshape(1), upper, 16, delta)
    with pytest.raises(RuntimeError, match="expected a floating-point x, got Int"):
        ops.ewgs_quantize(torch.zeros(3, dtype=torch.int32), lower, upper, 16, delta)
    with pytest.raises(RuntimeError, match="expected grad like x"):
        torch.ops.gwkcuda.ewgs_quantize_backward(torch.zeros(3), x.detach(), lower.detach(), upper.detach(), 16, delta)
    with pytest.raises(ValueError, match="expected levels an int of 64 bits, got 2.5"):
        ops.ewgs_quantize(x, lower, upper, 2.5, delta)


def test_opcheck(device):
    x, lower, upper = inputs((6, 7), device=device)
    torch.library.opcheck(torch.ops.gwkcuda.ewgs_quantize.default, (x, lower, upper, 16, torch.tensor(0.3, device=device)))


def test_torch_compile_fullgraph_of_a_quantised_product():
    torch.manual_seed(0)
    layer = ewgs.QLinear(16, 8, bits_w=4, bits_a=4)
    x = torch.randn(5, 16)
    layer(x)  # initialised (outside the graph: its first call reads the data)

    def product(x, w):
        return layer._op(layer.quantized_input(x), layer.quantized_weight(w))

    compiled = torch.compile(product, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x, layer.weight), product(x, layer.weight))


def test_an_empty_input_gives_empty_values_and_zero_bound_gradients(device):
    _, lower, upper = inputs((4, 4), device=device)
    x = torch.zeros(0, 5, device=device, requires_grad=True)
    q = ops.ewgs_quantize(x, lower, upper, 16, torch.tensor(0.1, device=device))
    q.sum().backward()
    assert q.shape == (0, 5) and x.grad.shape == (0, 5)
    assert lower.grad.item() == 0 and upper.grad.item() == 0


def test_a_channels_last_input_keeps_its_layout_as_the_torch_ops_do(device):
    # Image batches read from HWC data are channels-last; the next convolution picks its
    # algorithm by the layout, so the op must hand on the layout the torch ops would.
    x, lower, upper = inputs((4, 8, 6, 5), device=device)
    x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    grad.view(-1)[:8] = 0  # the clamp's edges: torch's own rule there changed (see the next test)
    grad = grad.to(device)
    (q, gx, _, _), (q_ref, gx_ref, _, _) = both(x, lower, upper, 4, torch.tensor(0.3, device=device), grad)
    assert q.stride() == q_ref.stride() == x.stride()
    assert torch.equal(q, q_ref)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-6, atol=1e-7)
    torch.library.opcheck(torch.ops.gwkcuda.ewgs_quantize.default, (x, lower, upper, 16, torch.tensor(0.3, device=device)))


def test_the_gradient_passes_at_the_clamps_edges(device):
    # One rule on every torch version: an element exactly on a bound (t = 0 or t = 1) passes its
    # gradient, as torch.clamp's backward did up to torch 2.13; torch 2.14's passes none there.
    lower = torch.tensor(-1.0, device=device, requires_grad=True)
    upper = torch.tensor(2.0, device=device, requires_grad=True)
    x = torch.tensor([-1.0, 2.0, 0.5, -1.5, 2.5], device=device, requires_grad=True)
    ops.ewgs_quantize(x, lower, upper, 16, torch.tensor(0.0, device=device)).sum().backward()
    assert x.grad.tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0, 0])
    x.grad = None
    ewgs.ewgs_quantize_reference(x, lower, upper, 4, torch.tensor(0.0, device=device)).sum().backward()
    assert x.grad.tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0, 0])  # the reference's rule too


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_double_backward_through_the_op_equals_the_torch_ops(device, dtype):
    """A Hessian-vector product through the quantiser (what ewgs.update_delta computes) gives what
    it gives through the torch ops: the backward op is differentiable, in its incoming gradient,
    in x and in the bounds."""
    x, lower, upper = inputs((6, 40), dtype, device)
    lower, upper = lower.detach().to(dtype).requires_grad_(), upper.detach().to(dtype).requires_grad_()
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(6, 40, generator=gen, dtype=dtype).to(device).requires_grad_()
    v = torch.randn(6, 40, generator=gen, dtype=dtype).to(device)
    delta = torch.tensor(0.3, device=device)
    results = []
    for quantize in (lambda: ops.ewgs_quantize(x, lower, upper, 16, delta),
                     lambda: ewgs.ewgs_quantize_reference(x, lower, upper, 4, delta)):
        loss = ((quantize() * w).sum(dim=1) ** 2).sum()  # its gradient in q depends on q and w
        gx, gl, gu = torch.autograd.grad(loss, (x, lower, upper), create_graph=True)
        results.append(torch.autograd.grad((gx * v).sum() + 0.3 * gl + 0.7 * gu, (w, x, lower, upper)))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert results[0][0].abs().sum() > 0 and results[0][1].abs().sum() > 0
    gx, = torch.autograd.grad(ops.ewgs_quantize(x, lower, upper, 16, delta).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="expected at most two derivatives"):
        torch.autograd.grad(gx.square().sum(), x, create_graph=True)


def test_the_hessian_deltas_are_the_same_with_the_op_and_the_torch_ops():
    """ewgs.update_delta differentiates the quantisers' backward (Hessian-vector products through
    the layers after each one): with the op it must estimate what the torch ops estimate, and
    autograd must not fall back to treating the backward as a constant (its warning is an error)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    ewgs.quantize_model(model, 4, 4)
    x, y = torch.randn(16, 3, 6, 6), torch.randint(0, 4, (16,))
    model(x)  # initialise the bounds
    deltas = []
    for fused in (True, False):
        for _, layer in ewgs.quantized_layers(model):
            layer.fused = fused
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            deltas.append(ewgs.update_delta(model, lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]),
                                            [(x, y)], samples=8, tol=0.0))
    for _, layer in ewgs.quantized_layers(model):
        del layer.fused  # back to the class default
    assert deltas[0].keys() == deltas[1].keys() == {"2", "4"}
    for name in deltas[1]:
        assert deltas[0][name] == pytest.approx(deltas[1][name], rel=1e-4, abs=1e-9)
    assert sum(dw + da for dw, da in deltas[1].values()) > 0  # not all clipped to 0

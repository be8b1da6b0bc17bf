"""EWGS discretizer and quantised layers."""
import pytest
import torch
from torch import nn

from gwkcuda import ewgs


def test_backward_matches_hand_computed_case():
    x = torch.tensor([0.1, 0.4, 0.9], dtype=torch.float64, requires_grad=True)
    xq = ewgs.ewgs_round(x, bits=2, delta=0.5)  # levels 0, 1/3, 2/3, 1
    torch.testing.assert_close(xq, torch.tensor([0.0, 1 / 3, 1.0], dtype=torch.float64))
    g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    xq.backward(g)
    # g * (1 + delta * sign(g) * (x - xq)), by hand:
    expected = [1.0 * (1 + 0.5 * 0.1), -2.0 * (1 - 0.5 * (0.4 - 1 / 3)), 0.5 * (1 + 0.5 * (0.9 - 1.0))]
    torch.testing.assert_close(x.grad, torch.tensor(expected, dtype=torch.float64))


def test_delta_zero_is_the_straight_through_estimator():
    x = torch.rand(1000, requires_grad=True, generator=torch.Generator().manual_seed(0))
    g = torch.randn(1000)
    ewgs.ewgs_round(x, 3, 0.0).backward(g)
    assert torch.equal(x.grad, g)


def test_high_bit_layer_reproduces_the_float_layer():
    gen = torch.Generator().manual_seed(0)
    lin = nn.Linear(64, 16)
    with torch.no_grad():
        lin.weight.uniform_(-0.1, 0.1, generator=gen)
    x = torch.rand(32, 64, generator=gen)
    x[0, 0] = 0.0  # activations after a ReLU: min 0
    q = ewgs.quantize_model(nn.Sequential(lin), bits_w=16, bits_a=16, keep_float=())[0]
    assert isinstance(q, ewgs.QLinear)
    torch.testing.assert_close(q(x), lin(x), rtol=1e-3, atol=1e-3)
    q4 = ewgs.quantize_model(nn.Sequential(lin), bits_w=2, bits_a=2, keep_float=())[0]
    assert not torch.allclose(q4(x), lin(x), atol=1e-3)  # 2 bits is visibly coarser


def test_weights_take_at_most_two_to_the_b_levels():
    conv = ewgs.QConv2d(4, 8, 3, padding=1, bits_w=3, bits_a=3)
    conv(torch.rand(2, 4, 8, 8))
    assert torch.unique(conv.quantized_weight(conv.weight)).numel() <= 8


def test_quantize_model_keeps_first_conv_and_last_linear_float():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    ewgs.quantize_model(model, 4, 4)
    assert type(model[0]) is nn.Conv2d and isinstance(model[2], ewgs.QConv2d) and type(model[4]) is nn.Linear


def test_update_delta_is_finite_and_non_negative():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    ewgs.quantize_model(model, 2, 2)
    x, y = torch.randn(64, 16), torch.randint(0, 4, (64,))
    model(x)  # initialise bounds
    deltas = ewgs.update_delta(model, lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]),
                               [(x[:32], y[:32]), (x[32:], y[32:])], samples=10)
    assert set(deltas) == {"0", "2"}  # no Conv2d: only the last Linear stays float
    dw, da = deltas["2"]
    assert dw >= 0 and da >= 0 and torch.isfinite(torch.tensor([dw, da])).all()
    assert float(model[2].delta_w) == pytest.approx(dw)


def test_bad_bits_are_refused():
    with pytest.raises(ValueError, match="expected bits_w in 1..16"):
        ewgs.QLinear(4, 4, bits_w=0)

"""Bin & Quant mechanics on hand-made tensors and a small trained model."""
import math

import pytest
import torch
from torch import nn

from gwkcuda import binquant, huffman
from gwkcuda.binquant import BinQuantConfig, bin_and_quant, load_binquant, save_binquant


def test_initial_edges_and_half_open_bins():
    v = torch.tensor([-3.0, -1.0, 0.0, 0.5, 1.0, 3.0])
    edges = binquant.initial_edges(v)
    mu, sigma = v.mean().item(), v.std().item()
    assert edges == pytest.approx([-3.0, mu - sigma, mu, mu + sigma, 3.0])
    idx = binquant.bin_index(torch.tensor([-3.0, mu - sigma, mu, 2.9, 3.0]), edges)
    assert idx.tolist() == [0, 1, 2, 3, 3]  # an edge belongs to the bin above; the max to the last


def test_midpoint_and_mean_values():
    v = torch.tensor([0.0, 0.1, 0.2, 0.9, 1.0])
    edges = [0.0, 0.5, 1.0]
    q, idx, values = binquant.quantize(v, edges, "midpoint")
    assert values.tolist() == pytest.approx([0.25, 0.75]) and q.tolist() == pytest.approx([0.25] * 3 + [0.75] * 2)
    _, _, means = binquant.quantize(v, edges, "mean")
    assert means.tolist() == pytest.approx([0.1, 0.95])


class Toy(nn.Module):
    def __init__(self, features=64, hidden=32):
        super().__init__()
        self.fc1 = nn.Linear(features, hidden)
        self.fc2 = nn.Linear(hidden, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def trained_toy(features=64, hidden=32):
    torch.manual_seed(0)
    teacher = nn.Linear(features, 4)
    x = torch.randn(2000, features)
    y = teacher(x).argmax(1)
    model = Toy(features, hidden)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, x, y


def accuracy(model, x, y):
    return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("mode", ["perturb", "gradient"])
def test_budget_is_never_exceeded_on_search_data(mode):
    model, x, y = trained_toy()
    base = accuracy(model, x, y)
    grad_fn = lambda m: nn.functional.cross_entropy(m(x[:500]), y[:500]).backward()
    config = BinQuantConfig(max_drop=1.0, max_bins=16, sensitivity=mode, min_weights=100)
    result = bin_and_quant(model, lambda m: accuracy(m, x, y), config, grad_fn=grad_fn)
    assert result.baseline_accuracy == pytest.approx(base)
    assert accuracy(model, x, y) >= base - 0.01 - 1e-9
    sizes = [dict(model.named_modules())[layer.name].weight.numel() for layer in result.layers]
    for i, layer in enumerate(result.layers):
        assert layer.accuracy >= base - 0.01 * sum(sizes[: i + 1]) / sum(sizes) - 1e-9
        if layer.edges is not None:
            distinct = torch.unique(dict(model.named_modules())[layer.name].weight).numel()
            assert distinct <= layer.bins
    if mode == "gradient":  # no evaluations per bin: 2 for layer sensitivity, 1 per binning tried
        assert result.evaluations <= 1 + sum(3 + len(l.searched_edges) - 1 for l in result.layers)


def test_split_picks_the_bin_whose_perturbation_hurts_most():
    # One layer; accuracy drops only when weights in [0.5, 1] are perturbed or coarsely binned.
    model = nn.Sequential(nn.Linear(40, 40, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.linspace(-1, 1, 1600).reshape(40, 40))
    original = model[0].weight.detach().clone()
    sensitive = original >= 0.5

    def eval_fn(m):
        err = (m[0].weight - original)[sensitive].abs().max().item()
        return 1.0 - err  # perfect only when the sensitive weights are (nearly) exact

    config = BinQuantConfig(max_drop=5.0, max_bins=8, min_weights=1)
    result = bin_and_quant(model, eval_fn, config)
    edges = result.layers[0].searched_edges
    start = binquant.initial_edges(original.reshape(-1))
    added = [e for e in edges if e not in start]
    assert len(added) == 4 and all(e > 0.5 for e in added), f"splits went elsewhere: {added}"


def test_huffman_round_trip_exact():
    gen = torch.Generator().manual_seed(0)
    for probs in ([0.7, 0.1, 0.1, 0.05, 0.05], [1.0], [0.5, 0.5], [1 / 16] * 16):
        sym = torch.multinomial(torch.tensor(probs), 5000, replacement=True, generator=gen)
        counts = torch.bincount(sym, minlength=len(probs)).tolist()
        lengths = huffman.code_lengths(counts)
        stream = huffman.encode(sym, lengths)
        assert stream.numel() == (huffman.encoded_bits(counts, lengths) + 7) // 8
        assert torch.equal(huffman.decode(stream, lengths, sym.numel()), sym)
    assert huffman.code_lengths([5, 0, 3]) == [1, 0, 1]


def test_saved_model_reloads_exactly(tmp_path):
    model, x, y = trained_toy(256, 128)
    config = BinQuantConfig(max_drop=2.0, min_weights=100)
    result = bin_and_quant(model, lambda m: accuracy(m, x, y), config)
    sizes = save_binquant(tmp_path / "m.gwk", result)
    assert sizes["file_bytes"] == (tmp_path / "m.gwk").stat().st_size
    assert sizes["ratios"]["all_inclusive"] > 4, sizes  # 32-bit weights down to at most 4-bit indices + header
    fresh = load_binquant(tmp_path / "m.gwk", Toy(256, 128))
    assert torch.equal(fresh(x), model(x))


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="sensitivity 'perturb' or 'gradient'"):
        BinQuantConfig(sensitivity="hessian")
    with pytest.raises(ValueError, match="gradient mode needs grad_fn"):
        bin_and_quant(Toy(), lambda m: 1.0, BinQuantConfig(sensitivity="gradient", min_weights=1))


@pytest.mark.slow
def test_gradient_mode_bisection_finds_fewest_bins_in_log_evaluations():
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(4000, generator=gen)
    importance = torch.rand(4000, generator=gen) ** 2  # g^2
    sequence = binquant.split_sequence(v, importance, 16)
    assert [len(e) - 1 for e in sequence] == list(range(4, 17))
    for a, b in zip(sequence, sequence[1:]):  # each step splits the bin of largest sum g^2 (w - q)^2
        mids = [(a[j] + a[j + 1]) / 2 for j in range(len(a) - 1)]
        cost = [sum(float(importance[i]) * (float(v[i]) - mids[j]) ** 2
                    for i in range(4000) if (a[j] <= v[i] < a[j + 1] or (j == len(a) - 2 and v[i] == a[-1])))
                for j in range(len(a) - 1)]
        j = max(range(len(cost)), key=lambda t: cost[t])
        assert b == a[: j + 1] + [(a[j] + a[j + 1]) / 2] + a[j + 1:]
    # The most costly bin is split, not the most populous: a heavy outlier bin goes first.
    w = torch.cat([torch.randn(1000, generator=gen) * 0.1, torch.tensor([5.0, 6.0])])
    fisher = torch.ones_like(w)
    first = binquant.split_sequence(w, fisher, 5)[1]
    assert len(first) == 6 and first[-2] > 1.0
    calls = []

    def accuracy_with(edges):  # accuracy grows with the bins; 9 bins are the fewest meeting 0.9
        calls.append(len(edges) - 1)
        return 0.5 + 0.05 * (len(edges) - 1)

    edges, acc, _ = binquant._bisect_bins(v, importance, 16, accuracy_with, floor=0.9 - 1e-9)
    assert len(edges) - 1 == 8 and acc == pytest.approx(0.9)
    assert len(set(calls)) <= 2 + 4  # the two ends, then log2(12) steps
    assert binquant._bisect_bins(v, importance, 16, lambda e: 0.0, floor=0.5)[0] is None


def test_uint8_model_compresses_in_code_space_and_reloads(tmp_path):
    model, x, y = trained_toy(256, 128)
    codes = binquant.quantize_uint8(model, min_weights=100)
    assert set(codes) == {"fc1", "fc2"} and all(c.codes.dtype == torch.uint8 for c in codes.values())
    c = codes["fc1"]
    torch.testing.assert_close(model.fc1.weight, c.dequantize().view_as(model.fc1.weight))
    config = BinQuantConfig(max_drop=2.0, min_weights=100)
    result = bin_and_quant(model, lambda m: accuracy(m, x, y), config, uint8=codes)
    for r in result.layers:
        if r.edges is None:
            continue
        assert all(float(v).is_integer() and 0 <= v <= 255 for v in r.values)  # values are uint8 codes
        w = model.get_submodule(r.name).weight.detach()
        allowed = torch.tensor([(v - codes[r.name].zero_point) * codes[r.name].scale for v in r.values])
        assert torch.isclose(w.reshape(-1, 1), allowed.reshape(1, -1), rtol=0, atol=1e-6).any(1).all()
    info = save_binquant(tmp_path / "u8.gwk", result)
    assert any("uint8 codes" in row["detail"] for row in info["layers"])
    fresh = load_binquant(tmp_path / "u8.gwk", Toy(256, 128))
    torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=1e-6)


def test_shared_bins_are_searched_and_stored_once(tmp_path):
    model, x, y = trained_toy(256, 128)
    config = BinQuantConfig(max_drop=2.0, min_weights=100, share="kind")
    result = bin_and_quant(model, lambda m: accuracy(m, x, y), config)
    assert len(result.layers) == 1 and result.layers[0].members == ["fc1", "fc2"]
    values = set(result.layers[0].values)
    for name in ("fc1", "fc2"):
        assert set(torch.unique(model.get_submodule(name).weight.detach()).tolist()) <= values
    info = save_binquant(tmp_path / "shared.gwk", result)
    rows = {r["layer"]: r for r in info["layers"]}
    assert "values of fc1" in rows["fc2"]["detail"] and rows["fc2"]["codebook_bytes"] == 0
    fresh = load_binquant(tmp_path / "shared.gwk", Toy(256, 128))
    assert torch.equal(fresh(x), model(x))
    with pytest.raises(ValueError, match="expected share 'none' or 'kind'"):
        BinQuantConfig(share="all")


def test_agreement_criterion_counts_every_changed_prediction():
    import copy

    from gwkcuda.train import search_score
    model, x, y = trained_toy()
    score = search_score(model, x, y, "agreement")
    assert score(model) == 1.0
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.fc2.weight.zero_()
        other.fc2.bias.copy_(torch.tensor([1.0, 0, 0, 0]))  # always class 0
    reference = model(x).argmax(1)
    assert score(other) == pytest.approx(float((reference == 0).float().mean()))
    with pytest.raises(ValueError, match="expected criterion"):
        search_score(model, x, y, "loss")


def test_global_allocation_meets_the_budget_in_few_evaluations():
    model, x, y = trained_toy(256, 128)
    base = accuracy(model, x, y)
    grad_fn = lambda m: nn.functional.cross_entropy(m(x[:500]), y[:500]).backward()
    config = BinQuantConfig(max_drop=1.0, max_bins=64, sensitivity="gradient", allocation="global",
                            min_weights=100, layer_sensitivity=False)
    result = bin_and_quant(model, lambda m: accuracy(m, x, y), config, grad_fn=grad_fn)
    assert all(r.edges is not None for r in result.layers)  # every layer compressed
    assert accuracy(model, x, y) >= base - 0.01 - 1e-9
    total_splits = sum(r.bins - 4 for r in result.layers)
    assert result.evaluations <= 1 + 2 + math.ceil(math.log2(2 * 60 + 1)) + 1
    for r in result.layers:
        distinct = torch.unique(model.get_submodule(r.name).weight.detach()).numel()
        assert distinct <= r.bins <= 64
    assert total_splits >= 0
    with pytest.raises(ValueError, match="allocation 'global' needs sensitivity 'gradient'"):
        BinQuantConfig(allocation="global", sensitivity="perturb")


def test_global_split_order_prefers_costly_bins_per_weight():
    unit_a = binquant._Unit([("a", nn.Linear(50, 20).weight)], {})
    unit_b = binquant._Unit([("b", nn.Linear(50, 20).weight)], {})
    fishers = [torch.ones(1000), torch.full((1000,), 100.0)]  # layer b's loss is 100x as sensitive
    order = binquant.global_split_order([unit_a, unit_b], fishers, "midpoint", 8)
    assert [u for u, _, _ in order[:4]] == [1, 1, 1, 1]  # b's bins are refined first
    assert sum(1 for u, _, _ in order if u == 0) == 4 and len(order) == 8  # then a's, up to 8 bins each

"""Recurrent layers: every LSTM/GRU matrix compressed by Bin & Quant and by GWK, the compressed
module against a float module carrying the decoded weights, save and reload, inspect's rows."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gwkcuda import cli, model_file, ops
from gwkcuda.binquant import BinQuantConfig, bin_and_quant, save_binquant
from gwkcuda.gwk import GWKConfig, gwk_compress, plan_layers
from gwkcuda.weights import compressible_weights, recurrent_weights, skipped_weights


class Tagger(nn.Module):
    """[B, T, 8] -> [B, T, 5]: a bidirectional 2-layer LSTM, a bidirectional 2-layer GRU, a Linear."""

    def __init__(self, bias=True, batch_first=True):
        super().__init__()
        self.batch_first = batch_first
        self.lstm = nn.LSTM(8, 16, num_layers=2, bidirectional=True, bias=bias, batch_first=batch_first)
        self.gru = nn.GRU(32, 12, num_layers=2, bidirectional=True, bias=bias, batch_first=batch_first)
        self.fc = nn.Linear(24, 5)

    def forward(self, x):
        h = x if self.batch_first else x.transpose(0, 1)
        h, _ = self.lstm(h)
        h, _ = self.gru(h)
        return self.fc(h if self.batch_first else h.transpose(0, 1))


MATRICES = [f"{rnn}.weight_{kind}_l{layer}{suffix}" for rnn in ("lstm", "gru") for kind in ("ih", "hh")
            for layer in (0, 1) for suffix in ("", "_reverse")]


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 7, 8, generator=g), torch.randint(0, 5, (n, 7), generator=g)


def _trained(bias=True, batch_first=True):
    torch.manual_seed(0)
    model = Tagger(bias, batch_first)
    x, y = _data()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(30):
        opt.zero_grad()
        F.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
        opt.step()
    return model.eval()


def _dense_copy(model, weights):
    """A float Tagger carrying ``weights`` (parameter name -> tensor) and model's other tensors."""
    dense = Tagger(model.lstm.bias, model.batch_first).eval()
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(("codes", "codebook"))}
    state.update(weights)
    dense.load_state_dict(state)
    return dense


def test_every_recurrent_matrix_is_a_layer_of_its_own():
    model = Tagger()
    names = [n for n, _ in recurrent_weights(model)[0]]
    assert sorted(names) == sorted(MATRICES)
    assert {n for n, _ in compressible_weights(model, 1)} == set(MATRICES) | {"fc"}


@pytest.mark.parametrize("bias, batch_first", [(True, True), (False, False)])
@pytest.mark.parametrize("mode", ["perturb", "gradient"])
def test_binquant_compresses_every_recurrent_matrix(tmp_path, bias, batch_first, mode):
    model = _trained(bias, batch_first)
    x, y = _data(seed=1)

    def score(m):
        return float((m(x).argmax(-1) == y).float().mean())

    def grad_fn(m):
        F.cross_entropy(m(x).flatten(0, 1), y.flatten()).backward()

    result = bin_and_quant(model, score, BinQuantConfig(max_drop=5.0, max_bins=16, sensitivity=mode,
                                                        min_weights=64, layer_sensitivity=False),
                           grad_fn=grad_fn)
    binned = {r.name: r for r in result.layers if r.edges is not None}
    assert set(MATRICES) <= set(binned), sorted(set(MATRICES) - set(binned))
    for name in MATRICES:  # every weight of the matrix is one of its bins' values
        w = model.get_parameter(name).detach()
        assert set(torch.unique(w).tolist()) <= set(binned[name].values)
    path = tmp_path / "tagger.gwk"
    info = save_binquant(path, result)
    reloaded = model_file.load_model(path, Tagger(bias, batch_first))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), model(x), rtol=0, atol=0)
    rows = {r["layer"]: r for r in info["layers"]}
    for name in MATRICES:
        assert rows[name]["method"] == "binquant" and rows[name]["shape"] == list(model.get_parameter(name).shape)
    assert info["ratios"]["all_inclusive"] > 4


@pytest.mark.parametrize("gate_codebooks", [False, True])
def test_gwk_product_quantises_every_recurrent_matrix(tmp_path, gate_codebooks):
    model = _trained()
    x, y = _data(seed=1)

    def run_backward(after_each):
        F.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
        after_each()

    config = GWKConfig(d=4, k=16, min_weights=64, iters=10, gate_codebooks=gate_codebooks)
    model, report = gwk_compress(model, config, run_backward=run_backward)
    assert {r["name"] for r in report["layers"]} == set(MATRICES) | {"fc"}
    for name in MATRICES:
        module, _, local = name.rpartition(".")
        rnn = model.get_submodule(module)
        assert local not in dict(rnn.named_parameters())  # replaced by codes and a codebook
        groups = getattr(rnn, local + "_codebook").shape[0]
        assert groups == ((4 if module == "lstm" else 3) if gate_codebooks else 1)
    decoded = {}
    for name in MATRICES:
        module, _, local = name.rpartition(".")
        rnn = model.get_submodule(module)
        w = ops.pq_decode(getattr(rnn, local + "_codes"), getattr(rnn, local + "_codebook").detach())
        decoded[name] = w.reshape(rnn.pq_configs[local][0])
    decoded["fc.weight"] = model.fc.decoded_weight().detach()
    dense = _dense_copy(model, decoded)
    with torch.no_grad():
        torch.testing.assert_close(model(x), dense(x), rtol=1e-5, atol=1e-6)
    path = tmp_path / "tagger-pq.gwk"
    info = model_file.save_model(path, model)
    reloaded = model_file.load_model(path, Tagger())
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), model(x), rtol=0, atol=0)
    rows = {r["layer"]: r for r in info["layers"]}
    for name in MATRICES:
        assert rows[name]["method"] == "pq" and rows[name]["detail"] == "d=4 k=16"
    # fp32 bytes count the dense matrices the codes replaced
    assert info["fp32_bytes"] == sum(p.numel() * 4 for p in Tagger().state_dict().values())


def test_inspect_lists_each_recurrent_matrix(tmp_path, capsys):
    model, _ = gwk_compress(_trained(), GWKConfig(d=4, k=16, min_weights=64, importance="uniform", iters=3))
    model_file.save_model(tmp_path / "tagger.gwk", model)
    assert cli.main(["inspect", str(tmp_path / "tagger.gwk")]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in MATRICES:
        assert sum(line.split()[:1] == [name] or f" {name} " in line for line in lines) == 1, name


def test_pq_recurrent_codebooks_train_and_survive_deepcopy():
    model = _trained()
    x, y = _data(seed=1)
    model, _ = gwk_compress(model, GWKConfig(d=4, k=8, min_weights=64, importance="uniform", iters=5))
    model.train()
    F.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
    for name in MATRICES:
        module, _, local = name.rpartition(".")
        grad = getattr(model.get_submodule(module), local + "_codebook").grad
        assert grad is not None and grad.abs().sum() > 0
    model.eval()
    twin = copy.deepcopy(model)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), model(x), rtol=0, atol=0)
        model.gru.weight_hh_l1_codebook.mul_(0)  # the copy holds its own codebooks
        assert not torch.equal(twin(x), model(x))


def test_unsupported_recurrent_modules_are_skipped_with_a_reason():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.LSTM(8, 32, proj_size=16)
            self.raw = nn.RNNBase("LSTM", 8, 32)
            self.small = nn.GRU(2, 2)
            self.fc = nn.Linear(64, 64)

    model = Odd()
    skipped = skipped_weights(model, 1024)
    assert "proj_size 16" in skipped["proj"]
    assert "RNNBase" in skipped["raw"]
    assert skipped["small.weight_ih_l0"] == "12 weights < min_weights 1024"  # [3 * 2, 2]
    assert [n for n, _ in compressible_weights(model, 1024)] == ["fc"]
    plan, gwk_skipped = plan_layers(model, GWKConfig(min_weights=1024))
    assert list(plan) == ["fc"] and "proj_size" in gwk_skipped["proj"] and "small.weight_hh_l0" in gwk_skipped


class Cells(nn.Module):
    """[B, T, 8] -> [B, 5] through an LSTMCell and a GRUCell unrolled by hand."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTMCell(8, 16)
        self.gru = nn.GRUCell(16, 12)
        self.fc = nn.Linear(12, 5)

    def forward(self, x):
        h = c = g = None
        for t in range(x.shape[1]):
            h, c = self.lstm(x[:, t], None if h is None else (h, c))
            g = self.gru(h, g)
        return self.fc(g)


def test_cells_are_compressed_by_both_methods(tmp_path):
    torch.manual_seed(0)
    x, y = _data(seed=2)
    y = y[:, 0]
    model = Cells().eval()
    names = ["lstm.weight_ih", "lstm.weight_hh", "gru.weight_ih", "gru.weight_hh"]
    assert sorted(n for n, _ in recurrent_weights(model)[0]) == sorted(names)
    binned = copy.deepcopy(model)
    result = bin_and_quant(binned, lambda m: float((m(x).argmax(-1) == y).float().mean()),
                           BinQuantConfig(max_drop=100.0, min_weights=64, layer_sensitivity=False))
    assert {r.name for r in result.layers if r.edges} >= set(names)
    save_binquant(tmp_path / "cells.gwk", result)
    with torch.no_grad():
        torch.testing.assert_close(model_file.load_model(tmp_path / "cells.gwk", Cells())(x), binned(x), rtol=0, atol=0)
    model, _ = gwk_compress(model, GWKConfig(d=4, k=8, min_weights=64, importance="uniform", iters=5,
                                             gate_codebooks=True))
    dense = Cells().eval()
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(("codes", "codebook"))}
    for name in names:
        module, _, local = name.rpartition(".")
        cell = model.get_submodule(module)
        assert getattr(cell, local + "_codebook").shape[0] == (4 if module == "lstm" else 3)
        state[name] = ops.pq_decode(getattr(cell, local + "_codes"), getattr(cell, local + "_codebook")).detach()
    dense.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(model(x), dense(x), rtol=1e-5, atol=1e-6)
    model_file.save_model(tmp_path / "cells-pq.gwk", model)
    with torch.no_grad():
        torch.testing.assert_close(model_file.load_model(tmp_path / "cells-pq.gwk", Cells())(x), model(x), rtol=0, atol=0)


def test_torchscript_models_are_reached_through_their_scripted_classes(tmp_path):
    eager = _trained()
    scripted = torch.jit.script(copy.deepcopy(eager))
    assert sorted(n for n, _ in recurrent_weights(scripted)[0]) == sorted(MATRICES)
    x, _ = _data(seed=1)
    with torch.no_grad():
        reference = scripted(x)

    def agreement(m):
        return float((m(x).argmax(-1) == reference.argmax(-1)).float().mean())

    result = bin_and_quant(scripted, agreement, BinQuantConfig(max_drop=100.0, min_weights=64, layer_sensitivity=False))
    assert {r.name for r in result.layers if r.edges} >= set(MATRICES)
    save_binquant(tmp_path / "scripted.gwk", result)
    fresh = torch.jit.script(copy.deepcopy(eager))  # the weights come from the file
    model_file.load_model(tmp_path / "scripted.gwk", fresh)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), scripted(x), rtol=0, atol=0)
        assert not torch.equal(fresh(x), reference)

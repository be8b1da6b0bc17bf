"""Per-sample Fisher importances (gwkcuda.importance) against closed forms and per-sample backward
passes, and their use end to end by GWK and Bin & Quant."""
import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gwkcuda import gwk, train
from gwkcuda.binquant import BinQuantConfig, bin_and_quant
from gwkcuda.importance import accumulate_importance, fisher_from_losses, fisher_importance, sample_rows


def softmax_regression_fisher(w, b, x, y):
    """Closed form: for logits W x + b and cross-entropy, sample i's gradient is
    (softmax_i - onehot(y_i)) x_i^T, so the Fisher sum is sum_i r_i^2 (x_i^2)^T."""
    r = torch.softmax(x @ w.T + b, dim=1) - F.one_hot(y, w.shape[0]).to(x.dtype)
    return torch.einsum("nc,nk->ck", r * r, x * x)


@pytest.mark.parametrize("method", ["vmap", "loop"])
def test_fisher_of_softmax_regression_equals_closed_form(method):
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 5))
    x, y = torch.randn(70, 12, generator=gen), torch.randint(0, 5, (70,), generator=gen)
    got = fisher_importance(model, ["0"], x, y, method=method)["0"]
    expected = softmax_regression_fisher(model[0].weight.detach(), model[0].bias.detach(), x, y)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    # Not the square of the batch gradient: that averages before squaring.
    batch_sq = accumulate_importance(model, ["0"], lambda f: F.cross_entropy(model(x), y).backward(), "square")["0"]
    assert not torch.allclose(got, batch_sq, rtol=0.1)


def test_fisher_of_a_cnn_equals_one_backward_per_sample(digits_model):
    model, x, y = digits_model
    x, y = x[:40], y[:40]
    names = ["3", "8"]
    expected = {n: torch.zeros_like(model.get_submodule(n).weight) for n in names}
    m = copy.deepcopy(model).eval()  # the Fisher sums are taken in eval mode
    for i in range(len(x)):
        m.zero_grad()
        F.cross_entropy(m(x[i:i + 1]), y[i:i + 1]).backward()
        for n in names:
            expected[n] += m.get_submodule(n).weight.grad ** 2
    for method in ("vmap", "loop"):
        got = fisher_importance(model, names, x, y, method=method)
        for n in names:
            torch.testing.assert_close(got[n], expected[n], rtol=1e-4, atol=1e-9)
    assert all(p.grad is None for p in model.parameters())  # the model is left as it was


class BagOfWords(nn.Module):
    """Variable-length token lists (text-like inputs that do not stack into one tensor): the mean
    of their embeddings, then a linear layer."""
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 6)
        self.fc = nn.Linear(6, 4)

    def forward(self, tokens):
        return self.fc(self.emb(tokens).mean(0, keepdim=True))


def test_fisher_from_losses_of_variable_length_inputs_equals_closed_form():
    gen = torch.Generator().manual_seed(2)
    model = BagOfWords().train()
    texts = [torch.randint(0, 20, (int(n),), generator=gen) for n in torch.randint(1, 9, (25,), generator=gen)]
    labels = torch.randint(0, 4, (25,), generator=gen)
    got = fisher_from_losses(model, ["fc"], (F.cross_entropy(model(t), labels[i:i + 1]) for i, t in enumerate(texts)))
    with torch.no_grad():  # the fc layer is a softmax regression on the mean embeddings
        feats = torch.stack([model.emb(t).mean(0) for t in texts])
    expected = softmax_regression_fisher(model.fc.weight.detach(), model.fc.bias.detach(), feats, labels)
    torch.testing.assert_close(got["fc"], expected, rtol=1e-5, atol=1e-7)
    assert model.training and all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="at least one per-sample loss, got none"):
        fisher_from_losses(model, ["fc"], iter(()))


class NeedsLoop(nn.Module):
    """A forward that branches on a value: vmap cannot trace it, the loop can."""
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        if float(x.sum()) > 1e9:
            return self.fc(x) * 0
        return self.fc(x)


def test_auto_falls_back_to_the_loop_with_a_warning():
    gen = torch.Generator().manual_seed(1)
    model = NeedsLoop().train()
    x, y = torch.randn(9, 6, generator=gen), torch.randint(0, 3, (9,), generator=gen)
    with pytest.warns(RuntimeWarning, match="vmap failed .* one backward per sample"):
        got = fisher_importance(model, ["fc"], x, y)["fc"]
    expected = softmax_regression_fisher(model.fc.weight.detach(), model.fc.bias.detach(), x, y)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    assert model.training  # mode restored
    with pytest.raises(Exception):
        fisher_importance(model, ["fc"], x, y, method="vmap")


def test_fisher_rejects_bad_input():
    model = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(ValueError, match="expected method one of"):
        fisher_importance(model, ["0"], torch.randn(3, 4), torch.zeros(3, dtype=torch.long), method="fast")
    with pytest.raises(ValueError, match=r"expected inputs \[S, ...\] and targets \[S, ...\] .* got \(3, 4\) and \(2,\)"):
        fisher_importance(model, ["0"], torch.randn(3, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="fisher: use fisher_importance"):
        accumulate_importance(model, ["0"], lambda f: None, "fisher")
    with pytest.raises(ValueError, match="fisher_samples an int >= 1, got 0"):
        gwk.GWKConfig(importance="fisher", fisher_samples=0)
    with pytest.raises(ValueError, match="importance 'square' or 'fisher', got 'abs'"):
        BinQuantConfig(sensitivity="gradient", importance="abs")


def test_sample_rows_are_seeded_and_distinct():
    a, b = sample_rows(100, 30, seed=3), sample_rows(100, 30, seed=3)
    assert torch.equal(a, b) and len(set(a.tolist())) == 30
    assert len(sample_rows(10, 30)) == 10


def test_gwk_with_fisher_clusters_with_the_fisher_importances(digits_model):
    model, x, y = digits_model
    m = copy.deepcopy(model)
    config = gwk.GWKConfig(d=4, k=16, importance="fisher", fisher_samples=64, iters=10)
    with pytest.raises(ValueError, match="needs samples"):
        gwk.gwk_compress(copy.deepcopy(model), config)
    _, report = gwk.gwk_compress(m, config, samples=(x, y))
    imp = fisher_importance(model, ["3", "8"], x[:64], y[:64])
    weights = {n: model.get_submodule(n).weight.detach() for n in ("3", "8")}
    plan = {n: gwk.PQConfig(4, 16) for n in weights}
    expected = gwk.gwk_quantize(weights, plan, imp, iters=10)
    for n in ("3", "8"):
        torch.testing.assert_close(m.get_submodule(n).codebook, expected[n].codebook)
        assert torch.equal(m.get_submodule(n).codes, expected[n].codes)
    assert [r["name"] for r in report["layers"]] == ["3", "8"]


def test_binquant_with_fisher_splits_by_the_fisher_importances(digits_model):
    model, x, y = digits_model
    xs, ys = x[-300:], y[-300:]
    score = train.search_score(model, xs, ys, "accuracy")
    config = BinQuantConfig(sensitivity="gradient", importance="fisher", fisher_samples=64, max_bins=8,
                            max_drop=2.0, allocation="global", layer_sensitivity=False)
    with pytest.raises(ValueError, match="needs samples"):
        bin_and_quant(copy.deepcopy(model), score, config)
    got = bin_and_quant(copy.deepcopy(model), score, config, samples=(x, y))
    # The same search fed the Fisher sums as squared gradients through grad_fn ("square" mode).
    m = copy.deepcopy(model)
    names = [r.members[0] for r in got.layers]
    fisher = fisher_importance(m, names, x[:64], y[:64])

    def grad_fn(mod):
        for n in names:
            mod.get_submodule(n).weight.grad = fisher[n].sqrt()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = bin_and_quant(m, train.search_score(m, xs, ys, "accuracy"),
                             BinQuantConfig(**{**config.__dict__, "importance": "square"}), grad_fn)
    assert [r.bins for r in got.layers] == [r.bins for r in same.layers]
    for a, b in zip(got.model.parameters(), same.model.parameters()):
        assert torch.equal(a, b)


def test_api_compress_takes_fisher_samples_from_the_calibration_batches(digits_model):
    import gwkcuda
    model, x, y = digits_model
    config = gwk.GWKConfig(d=4, k=16, importance="fisher", fisher_samples=50, iters=5)
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    gwkcuda.compress(a, config, calibration=[(x[:32], y[:32]), (x[32:64], y[32:64]), (x[64:96], y[64:96])],
                     progress=False)
    gwk.gwk_compress(b, config, samples=(x[:50], y[:50]))
    for n in ("3", "8"):
        assert torch.equal(a.get_submodule(n).codes, b.get_submodule(n).codes)
    with pytest.raises(ValueError, match="needs calibration batches .* got a callable"):
        gwkcuda.compress(copy.deepcopy(model), config, calibration=lambda m: None, progress=False)


def test_cli_refuses_abs_importance_for_binquant(tmp_path, capsys):
    from gwkcuda.cli import main
    code = main(["compress", "--method", "binquant", "--model", "digits_cnn", "--data", "digits",
                 "--importance", "abs", "--out", str(tmp_path / "m.gwk")])
    assert code == 2 and not (tmp_path / "m.gwk").exists()
    assert "--importance abs is GWK's" in capsys.readouterr().err

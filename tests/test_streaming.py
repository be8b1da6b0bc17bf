"""Streaming layer-by-layer compression: equal to clustering each layer alone, resumable after a
kill, and bounded device memory."""
import copy

import pytest
import torch
from torch import nn

from gwkcuda import model_file
from gwkcuda.gwk import accumulate_importance, gwk_quantize
from gwkcuda.nn import PQEmbedding, PQLinear
from gwkcuda.streaming import layer_plan, stream_compress

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class Block(nn.Module):
    """A transformer-style block: attention projections and an MLP, all nn.Linear."""

    def __init__(self, width=32):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(width, width) for _ in range(4))
        self.up, self.down = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)
        self.norm = nn.LayerNorm(width)

    def forward(self, x):
        q, k, v = self.q(x), self.k(x), self.v(x)
        att = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, -1)
        x = self.norm(x + self.o(att @ v))
        return x + self.down(torch.relu(self.up(x)))


def tiny_transformer():
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(50, 32), Block(), Block(), nn.Flatten(1), nn.Linear(8 * 32, 5))


def calibration(model):
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 50, (16, 8), generator=gen)
    labels = torch.randint(0, 5, (16,), generator=gen)

    def run_backward(after_each):
        for i in range(0, 16, 4):
            nn.functional.cross_entropy(model(tokens[i:i + 4]), labels[i:i + 4]).backward()
            after_each()
    return tokens, run_backward


@pytest.mark.parametrize("device", DEVICES)
def test_streaming_equals_each_layer_clustered_alone(tmp_path, device):
    model = tiny_transformer()
    tokens, run_backward = calibration(model)
    plan = layer_plan(model, d=4, k=16, min_weights=1024)
    assert len(plan) == 14 and isinstance(model[0], nn.Embedding) and "0" in plan  # 12 in the blocks, head, embedding
    importance = accumulate_importance(model, plan, run_backward)
    weights = {n: model.get_submodule(n).weight.detach().clone() for n in plan}
    report = stream_compress(model, plan, importance, tmp_path / "parts", iters=5, device=device)
    assert [r["name"] for r in report["layers"]] == list(plan) and not any(r["resumed"] for r in report["layers"])
    for name, config in plan.items():
        alone = gwk_quantize({name: weights[name]}, {name: config}, {name: importance[name]}, iters=5)[name]
        layer = model.get_submodule(name)
        assert isinstance(layer, PQEmbedding if name == "0" else PQLinear)
        assert torch.equal(layer.codes.cpu(), alone.codes)
        torch.testing.assert_close(layer.codebook.cpu(), alone.codebook)
    assert (tmp_path / "parts" / "1.q.gwk").exists()
    tokens = tokens.to(device)
    dense = copy.deepcopy(model)  # the decoded dense version gives the same outputs
    for name in plan:
        layer = model.get_submodule(name)
        ref = nn.Embedding(*layer.weight_shape) if name == "0" else nn.Linear(layer.in_features, layer.out_features)
        with torch.no_grad():
            ref.weight.copy_(layer.decoded_weight())
            if name != "0":
                ref.bias.copy_(layer.bias)
        parent, _, child = name.rpartition(".")
        setattr(dense.get_submodule(parent) if parent else dense, child, ref.to(device))
    torch.testing.assert_close(model.to(device)(tokens), dense.to(device)(tokens), rtol=1e-5, atol=1e-5)


def test_killed_run_resumes_to_the_same_file(tmp_path):
    base = tiny_transformer()
    _, run_backward = calibration(base)
    plan = layer_plan(base, d=4, k=16, min_weights=1024)
    importance = accumulate_importance(base, plan, run_backward)

    full = copy.deepcopy(base)
    stream_compress(full, plan, importance, tmp_path / "full.parts", iters=5)
    model_file.save_model(tmp_path / "full.gwk", full)

    class Killed(Exception):
        pass

    def die_after_five(row):
        if len(list((tmp_path / "resumed.parts").iterdir())) == 5:
            raise Killed

    killed = copy.deepcopy(base)
    with pytest.raises(Killed):
        stream_compress(killed, plan, importance, tmp_path / "resumed.parts", iters=5, on_layer=die_after_five)
    resumed = copy.deepcopy(base)
    report = stream_compress(resumed, plan, importance, tmp_path / "resumed.parts", iters=5)
    assert [r["resumed"] for r in report["layers"]] == [True] * 5 + [False] * (len(plan) - 5)
    model_file.save_model(tmp_path / "resumed.gwk", resumed)
    assert (tmp_path / "resumed.gwk").read_bytes() == (tmp_path / "full.gwk").read_bytes()
    tokens = torch.randint(0, 50, (3, 8))
    assert torch.equal(model_file.load_model(tmp_path / "resumed.gwk", tiny_transformer())(tokens),
                       resumed.eval()(tokens))


def test_a_part_of_another_setting_is_recomputed(tmp_path):
    model = tiny_transformer()
    plan16 = layer_plan(model, d=4, k=16, min_weights=1024)
    stream_compress(copy.deepcopy(model), plan16, None, tmp_path / "parts", iters=2)
    plan8 = {n: type(c)(c.d, 8) for n, c in plan16.items()}
    report = stream_compress(model, plan8, None, tmp_path / "parts", iters=2)
    assert not any(r["resumed"] for r in report["layers"])
    assert all(model.get_submodule(n).codebook.shape[-2] == 8 for n in plan8)


def test_plan_skips_small_and_indivisible_layers():
    model = nn.Sequential(nn.Linear(30, 64), nn.Linear(64, 64), nn.Linear(64, 2), nn.Linear(64, 128),
                          nn.Embedding(10, 64), nn.Embedding(100, 64))
    assert list(layer_plan(model, d=4, k=16, min_weights=1024)) == ["1", "3", "5"]  # 30 % 4, 128 and 640 weights
    assert list(layer_plan(model, d=4, k=16, min_weights=1024, skip=("3", "5"))) == ["1"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="device memory is measured on CUDA")
def test_device_memory_stays_near_one_layer(tmp_path):
    model = nn.Sequential(*(nn.Linear(1024, 1024) for _ in range(6)))
    plan = layer_plan(model, d=8, k=256)
    report = stream_compress(model, plan, None, tmp_path / "parts", iters=3, device="cuda")
    # One layer (4 MiB), its importances or none, and the k-means work arrays.
    assert report["peak_bytes"] < 3 * report["largest_layer_bytes"], report["peak_bytes"]


def test_per_row_scalar_clustering_is_as_good_as_sklearn_per_row(tmp_path):
    """SqueezeLLM-style: one 4-entry codebook per row (d = 1, groups = rows); a layer's squared
    error, summed over its rows, is within 5% of scikit-learn's k-means (k-means++, one run) on each
    row alone, and the compressed model (PQLinear, and PQEmbedding with per-row codebooks) equals
    its decoded dense copy."""
    KMeans = pytest.importorskip("sklearn.cluster").KMeans
    model = tiny_transformer()
    tokens, _ = calibration(model)
    plan = layer_plan(model, d=1, k=4, min_weights=1024, per_row=True)
    assert plan["0"].groups == 50 and plan["1.up"].groups == 128 and plan["1.up"].d == 1
    weights = {n: model.get_submodule(n).weight.detach().clone() for n in plan}
    stream_compress(model, plan, None, tmp_path / "parts", iters=50)
    dense = copy.deepcopy(model)
    for name in plan:
        decoded = model.get_submodule(name).pq_weight().decode()
        assert all(len(row.unique()) <= 4 for row in decoded)
        if name in ("0", "1.up", "2.down"):
            ours = float(((weights[name].double() - decoded.double()) ** 2).sum())
            theirs = sum(KMeans(4, n_init=1, random_state=r).fit(row.reshape(-1, 1)).inertia_
                         for r, row in enumerate(weights[name].double().numpy()))
            assert ours <= 1.05 * theirs, (name, ours, theirs)
        parent, _, child = name.rpartition(".")
        old = weights[name]
        layer = (nn.Embedding(*old.shape) if name == "0" else nn.Linear(old.shape[1], old.shape[0]))
        layer.weight.data = decoded
        if name != "0":
            layer.bias.data = model.get_submodule(name).bias.detach()
        setattr(dense.get_submodule(parent) if parent else dense, child, layer)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), dense(tokens), rtol=1e-5, atol=1e-5)


def test_per_row_rows_without_importance_give_one_warning_per_layer():
    """Embedding rows of tokens the calibration never saw have zero importance: one warning for the
    layer, naming how many rows, and those rows are clustered with weight 1 per point."""
    torch.manual_seed(0)
    weight = torch.randn(300, 64)
    importance = torch.rand(300, 64)
    importance[100:250] = 0
    plan = {"emb": layer_plan(nn.Sequential(nn.Embedding(300, 64)), d=1, k=4, per_row=True)["0"]}
    with pytest.warns(RuntimeWarning, match="emb: 150 of 300 groups have zero importance") as caught:
        pq = gwk_quantize({"emb": weight}, plan, {"emb": importance}, iters=5)["emb"]
    assert len([w for w in caught if "zero" in str(w.message)]) == 1
    uniform = importance.clone()
    uniform[100:250] = 1  # what those rows are given: weight 1 per point
    same = gwk_quantize({"emb": weight}, plan, {"emb": uniform}, iters=5)["emb"]
    assert torch.equal(pq.codebook, same.codebook) and torch.equal(pq.codes, same.codes)

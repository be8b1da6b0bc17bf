"""GWK pipeline mechanics and the whole-model file, on a small trained CNN (scikit-learn digits)."""
import copy

import pytest
import torch

from gwkcuda import gwk, model_file, train
from gwkcuda.kmeans import weighted_kmeans
from gwkcuda.models import build_model
from gwkcuda.nn import PQConv2d, PQLinear

ARCH = {"name": "digits_cnn", "num_classes": 10, "in_channels": 1}


def backward_on(model, x, y, batches=4):
    return lambda after_each: train.backward_batches(model, x, y, batches=batches, after_each=after_each)


def test_plan_keeps_small_and_indivisible_layers_in_float(digits_model):
    model, _, _ = digits_model
    plan, skipped = gwk.plan_layers(model, gwk.GWKConfig(d=4, k=16))
    assert sorted(plan) == ["3", "8"]  # conv 16->32 and linear 512->64
    assert "144 weights < min_weights 1024" in skipped["0"] and "640 weights" in skipped["10"]
    plan, skipped = gwk.plan_layers(model, gwk.GWKConfig(d=5, k=16))
    assert "row length 512 not divisible by d = 5" in skipped["8"]


def test_uniform_importance_equals_plain_kmeans(digits_model):
    model, _, _ = digits_model
    w = model[8].weight.detach()
    plan = {"8": gwk.PQConfig(4, 16)}
    pq = gwk.gwk_quantize({"8": w}, plan, {"8": torch.ones_like(w)}, iters=10)["8"]
    plain = weighted_kmeans(w.reshape(-1, 4), None, k=16, iters=10)
    torch.testing.assert_close(pq.codebook[0], plain.centroids)
    assert torch.equal(pq.codes.long().reshape(-1), plain.labels)


def test_batched_layers_equal_separate_calls_for_the_layer_alone(digits_model):
    model, _, _ = digits_model
    w = model[8].weight.detach()
    alone = gwk.gwk_quantize({"8": w}, {"8": gwk.PQConfig(4, 16)}, None, iters=10)["8"]
    direct = weighted_kmeans(w.reshape(1, -1, 4), None, k=16, iters=10,
                             lengths=torch.tensor([w.numel() // 4]))
    torch.testing.assert_close(alone.codebook, direct.centroids)


def test_importance_pulls_centroids_toward_important_weights():
    # One cluster (k = 1): the centroid is the importance-weighted mean, so weighting the second
    # half of the sub-vectors 100x moves it toward their mean.
    gen = torch.Generator().manual_seed(0)
    w = torch.cat([torch.randn(8, 8, generator=gen) - 2, torch.randn(8, 8, generator=gen) + 2])
    imp = torch.ones_like(w)
    imp[8:] = 100
    plan = {"l": gwk.PQConfig(8, 1)}
    plain = gwk.gwk_quantize({"l": w}, plan, None)["l"].codebook[0, 0]
    weighted = gwk.gwk_quantize({"l": w}, plan, {"l": imp})["l"].codebook[0, 0]
    expected = (w * imp).sum(0) / imp.sum(0)
    torch.testing.assert_close(weighted, expected)
    assert (weighted - w[8:].mean(0)).norm() < (plain - w[8:].mean(0)).norm() / 10


def test_importance_is_sum_of_abs_or_squared_gradients(digits_model):
    model, x, y = digits_model
    m = copy.deepcopy(model)
    imp_abs = gwk.accumulate_importance(m, ["8"], backward_on(m, x, y, 2), "abs")["8"]
    imp_sq = gwk.accumulate_importance(m, ["8"], backward_on(m, x, y, 2), "square")["8"]
    grads = []
    train.backward_batches(m, x, y, batches=2, after_each=lambda: grads.append(m[8].weight.grad.clone())
                           or setattr(m[8].weight, "grad", None))
    torch.testing.assert_close(imp_abs, grads[0].abs() + grads[1].abs())
    torch.testing.assert_close(imp_sq, grads[0] ** 2 + grads[1] ** 2)
    assert m[8].weight.grad is None


def test_compress_save_reload_gives_identical_outputs(digits_model, tmp_path):
    model, x, y = digits_model
    m = copy.deepcopy(model)
    gwk.gwk_compress(m, gwk.GWKConfig(d=4, k=16, iters=5), backward_on(m, x, y))
    assert isinstance(m[3], PQConv2d) and isinstance(m[8], PQLinear)
    train.train(m, x[:256], y[:256], epochs=1)  # codebooks move; codes stay
    info = model_file.save_model(tmp_path / "m.gwk", m, arch=ARCH, meta={"method": "gwk"})
    fresh = model_file.load_model(tmp_path / "m.gwk")
    m.eval()
    assert torch.equal(fresh(x[:64]), m(x[:64]))
    assert sum(r["bytes"] for r in info["layers"]) + info["header_bytes"] == (tmp_path / "m.gwk").stat().st_size
    rows = {r["layer"]: r for r in info["layers"]}
    assert rows["8"]["index_bytes"] == 64 * 128 * 4 // 8 and rows["8"]["codebook_bytes"] == 16 * 4 * 4
    assert info["ratios"]["indices_only"] == pytest.approx(32 / (4 / 4))  # log2(16) bits per 4 weights
    n_float = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers()
                                                                if b.is_floating_point())
    assert info["fp32_bytes"] == 4 * n_float


def test_float16_storage_halves_the_float_tensors_and_stays_close(digits_model, tmp_path):
    model, x, y = digits_model
    m = copy.deepcopy(model)
    gwk.gwk_compress(m, gwk.GWKConfig(d=4, k=16, iters=5), backward_on(m, x, y))
    full = model_file.save_model(tmp_path / "32.gwk", m, arch=ARCH)
    half = model_file.save_model(tmp_path / "16.gwk", m, arch=ARCH, float_dtype="float16")
    rows32 = {r["layer"]: r for r in full["layers"]}
    rows16 = {r["layer"]: r for r in half["layers"]}
    assert rows32["0"]["method"] == "float32" and rows16["0"]["method"] == "float16"
    assert rows16["0"]["bytes"] * 2 == rows32["0"]["bytes"]  # a float layer: weight and bias
    assert rows16["8"]["index_bytes"] == rows32["8"]["index_bytes"]
    assert rows16["8"]["codebook_bytes"] * 2 == rows32["8"]["codebook_bytes"]
    m.eval()
    # Every stored float is the fp32 value rounded to float16, so the outputs move by ~1e-3 relative.
    reference = copy.deepcopy(m)
    with torch.no_grad():
        for t in list(reference.parameters()) + list(reference.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())
    torch.testing.assert_close(model_file.load_model(tmp_path / "16.gwk")(x[:64]), reference(x[:64]))
    with pytest.raises(ValueError, match="float_dtype one of"):
        model_file.save_model(tmp_path / "8.gwk", m, float_dtype="float8")


def test_folded_batchnorm_keeps_two_numbers_per_channel_and_the_outputs(tmp_path):
    from gwkcuda.models import build_model

    model = build_model("resnet20", 10, 3)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # batch norms with non-trivial statistics and affine parameters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                for t in (m.weight, m.bias, m.running_mean):
                    t.copy_(torch.randn(t.shape, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    model.eval()
    arch = {"name": "resnet20", "num_classes": 10, "in_channels": 3}
    plain = model_file.save_model(tmp_path / "plain.gwk", model, arch=arch)
    folded = model_file.save_model(tmp_path / "folded.gwk", model, arch=arch, fold_batchnorm=True)
    bn_bytes = lambda info: sum(r["bytes"] for r in info["layers"] if ".bn" in r["layer"] or r["layer"] == "bn1")
    channels = sum(m.num_features for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn_bytes(folded) == channels * 2 * 4
    assert bn_bytes(plain) == channels * 4 * 4 + 19 * 8  # + the int64 batch counters
    x = torch.randn(4, 3, 32, 32, generator=gen)
    torch.testing.assert_close(model_file.load_model(tmp_path / "folded.gwk")(x), model(x), rtol=1e-4, atol=1e-5)
    assert torch.equal(model_file.load_model(tmp_path / "plain.gwk")(x), model(x))


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="importance one of"):
        gwk.GWKConfig(importance="hessian")
    with pytest.raises(ValueError, match="expected k"):
        gwk.GWKConfig(k=0)
    with pytest.raises(ValueError, match="needs run_backward"):
        gwk.gwk_compress(build_model("digits_cnn"), gwk.GWKConfig())


def test_ewgs_model_takes_pq_weights_and_reloads_identically(digits_model, tmp_path):
    from gwkcuda import ewgs

    model, x, y = digits_model
    m = ewgs.quantize_model(copy.deepcopy(model), bits_w=4, bits_a=4)
    assert isinstance(m[3], ewgs.QConv2d) and type(m[0]) is torch.nn.Conv2d  # first conv float
    train.train(m, x[:256], y[:256], epochs=1)  # initialises the quantisers, moves the weights
    gwk.gwk_compress(m, gwk.GWKConfig(d=4, k=16, iters=5), backward_on(m, x, y))
    assert isinstance(m[3], ewgs.QConv2d) and m[3].codebook is not None and not hasattr(m[3], "weight")
    train.train(m, x[:256], y[:256], epochs=1)
    info = model_file.save_model(tmp_path / "q.gwk", m, arch=ARCH, meta={"method": "gwk"})
    fresh = model_file.load_model(tmp_path / "q.gwk")
    m.eval()
    assert isinstance(fresh[3], ewgs.QConv2d) and torch.equal(fresh(x[:64]), m(x[:64]))
    rows = {r["layer"]: r for r in info["layers"]}
    assert rows["3"]["method"] == "pq"
    assert rows["3"]["codebook_bytes"] == 16 * 4 * 4 // 8  # k * d levels at the 4 weight bits
    assert torch.equal(fresh[3].codebook_levels(), m[3].codebook_levels())


def test_resumed_training_equals_uninterrupted(digits_model, tmp_path):
    model, x, y = digits_model
    full = copy.deepcopy(model)
    train.train(full, x[:256], y[:256], epochs=3, seed=5)
    part = copy.deepcopy(model)
    ckpt = tmp_path / "phase.pt"

    class Killed(Exception):
        pass

    def kill_after_second(epoch, loss):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train.train(part, x[:256], y[:256], epochs=3, seed=5, checkpoint=ckpt, on_epoch=kill_after_second)
    assert train._load_checkpoint(ckpt, "cpu")["epoch"] == 0  # epoch 1 died before its checkpoint
    resumed = copy.deepcopy(model)
    train.train(resumed, x[:256], y[:256], epochs=3, seed=5, checkpoint=ckpt)
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_install_pq_refuses_layers_that_cannot_hold_one(digits_model):
    from gwkcuda.nn import install_pq

    model, _, _ = digits_model
    m = copy.deepcopy(model)
    pq = gwk.gwk_quantize({"8": m[8].weight}, {"8": gwk.PQConfig(4, 16)}, None, iters=2)["8"]
    with pytest.raises(TypeError, match="a PQ weight for 1, a BatchNorm2d"):
        install_pq(m, "1", pq)
    install_pq(m, "8", pq)
    assert isinstance(m[8], PQLinear) and torch.equal(m[8].bias, model[8].bias)

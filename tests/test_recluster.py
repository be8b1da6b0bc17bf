"""Clustering inside retraining: EWGS layers that keep their float weight behind the codebook
(straight-through), warm-started re-clustering, and the GWK chain's re-clustering rounds."""
import copy
import dataclasses

import pytest
import torch

from gwkcuda import cli, model_file, pipelines, reference, train
from gwkcuda.ewgs import QConv2d
from gwkcuda.gwk import GWKConfig
from gwkcuda.pq import PQConfig, gwk_quantize, pq_quantize


def quantized_conv(seed=0):
    torch.manual_seed(seed)
    conv = QConv2d(4, 6, 3, padding=1, bits_w=4, bits_a=None)
    with torch.no_grad():
        conv.weight.copy_(torch.randn_like(conv.weight) * 0.3)
    return conv


def test_the_latent_weight_gets_the_decoded_weights_gradient():
    conv = quantized_conv()
    pq = pq_quantize(conv.weight.detach(), PQConfig(4, 8), iters=5)
    latent, fixed = copy.deepcopy(conv), copy.deepcopy(conv)
    latent.use_pq(pq, keep_latent=True)
    fixed.use_pq(pq)
    assert latent.keeps_latent and not fixed.keeps_latent and not hasattr(fixed, "weight")
    x = torch.randn(2, 4, 5, 5)
    y_latent, y_fixed = latent(x), fixed(x)
    assert torch.equal(y_latent, y_fixed)  # straight-through changes no forward value
    y_latent.square().sum().backward()
    y_fixed.square().sum().backward()
    assert torch.equal(latent.codebook.grad, fixed.codebook.grad)
    # The reference: the same forward with the decoded weight as a leaf tensor.
    leaf = reference.pq_decode(pq.codes, pq.codebook).reshape(pq.shape).clone().requires_grad_(True)
    probe = copy.deepcopy(fixed)
    probe.latent_weight = lambda: leaf
    probe(x).square().sum().backward()
    torch.testing.assert_close(latent.weight.grad, leaf.grad, rtol=1e-6, atol=1e-7)


def test_the_codes_follow_the_latent_weight():
    conv = quantized_conv()
    pq = pq_quantize(conv.weight.detach(), PQConfig(4, 8), iters=5)
    conv.use_pq(pq, keep_latent=True)
    conv(torch.randn(1, 4, 5, 5))
    assert torch.equal(conv.codes, pq.codes)  # k-means' own labels are the nearest codewords
    target = torch.tensor([3, 5, 7]).repeat(18)  # 6 rows x 9 sub-vectors of 4
    with torch.no_grad():  # every sub-vector moved next to codeword 3, 5 or 7 in turn
        conv.weight.copy_((pq.codebook[0, target] + 1e-3).reshape(conv.weight.shape))
    x = torch.randn(2, 4, 5, 5)
    y = conv(x)
    assert torch.equal(conv.codes.flatten().long(), target)
    fixed = copy.deepcopy(conv)  # the same codes and codebook, without the float weight
    del fixed.weight
    assert not fixed.keeps_latent
    assert torch.equal(fixed(x), y)


def test_freezing_the_codes_keeps_what_the_layer_computes():
    conv = quantized_conv()
    pq = pq_quantize(conv.weight.detach(), PQConfig(4, 8), iters=5)
    with pytest.raises(ValueError, match="freeze_codes: expected a layer that keeps its latent weight"):
        copy.deepcopy(conv).freeze_codes()  # no codebook yet
    conv.use_pq(pq, keep_latent=True)
    with torch.no_grad():  # the latent weight moved on since the codes were last assigned
        conv.weight.add_(0.2 * torch.randn_like(conv.weight))
        conv.codebook.add_(0.05)
    x = torch.randn(2, 4, 5, 5)
    y = conv(x)
    codes, codebook = conv.codes.clone(), conv.codebook.detach().clone()
    # The reference: each sub-vector's nearest codeword by brute force.
    points = conv.weight.detach().reshape(-1, 1, 4)
    nearest = (points - codebook[0][None]).square().sum(-1).argmin(1)
    conv.freeze_codes()
    assert not conv.keeps_latent and not hasattr(conv, "weight")
    assert torch.equal(conv.codes, codes) and torch.equal(conv.codes.flatten().long(), nearest)
    assert torch.equal(conv.codebook.detach(), codebook)
    assert torch.equal(conv(x), y)
    with pytest.raises(ValueError, match="freeze_codes: expected a layer that keeps its latent weight"):
        conv.freeze_codes()


def test_use_pq_refuses_a_weight_of_another_shape():
    conv = quantized_conv()
    other = pq_quantize(torch.randn(6, 8, 3, 3), PQConfig(4, 8), iters=2)
    with pytest.raises(ValueError, match=r"expected a PQ weight of shape \[6, 4, 3, 3\], got \[6, 8, 3, 3\]"):
        conv.use_pq(other)


@pytest.mark.parametrize("groups", [1, 3])
def test_gwk_quantize_starts_from_the_given_codebooks(groups):
    gen = torch.Generator().manual_seed(0)
    weights = {"a": torch.randn(6, 16, generator=gen), "b": torch.randn(9, 8, generator=gen)}
    plan = {"a": PQConfig(4, 5, groups), "b": PQConfig(4, 5, groups)}
    init = {n: torch.randn(groups, 5, 4, generator=gen) for n in weights}
    # No iteration: the codebooks are the starting ones, the codes their nearest codewords.
    pq = gwk_quantize(weights, plan, iters=0, init=init)
    for n, w in weights.items():
        assert torch.equal(pq[n].codebook, init[n])
        points = w.reshape(groups, -1, 4)
        nearest = torch.cdist(points.double(), init[n].double()).argmin(-1)
        assert torch.equal(pq[n].codes.long().reshape(groups, -1), nearest)
    with pytest.raises(ValueError, match=r"expected init\['a'\] a codebook of shape \[1, 5, 4\], got \[5, 4\]"):
        gwk_quantize(weights, {n: PQConfig(4, 5) for n in weights}, iters=0, init={"a": init["a"][0]})


def test_recluster_settings_are_checked():
    for bad, field in (({"rounds": 0}, "rounds"), ({"epochs": 1.5}, "epochs"), ({"rounds": True}, "rounds")):
        with pytest.raises(ValueError, match=f"Recluster: expected {field} an int >= 1, got"):
            pipelines.Recluster(**bad)
    assert cli.RECLUSTER_FINALS == pipelines.Recluster.FINALS  # the CLI's choices are the chain's
    with pytest.raises(ValueError, match=r"Recluster: expected final one of \('cluster', 'freeze'\), got 'keep'"):
        pipelines.Recluster(final="keep")
    with pytest.raises(ValueError, match="Recluster: expected stages an int >= 1, got 0"):
        pipelines.Recluster(stages=0)
    with pytest.raises(ValueError, match=r"Recluster: expected stages <= rounds .*, got stages=3, rounds=2"):
        pipelines.Recluster(rounds=2, stages=3)


def test_progressive_rounds_add_the_layers_in_model_order():
    names = [f"conv{i}" for i in range(7)]
    rounds = [pipelines.Recluster(rounds=4, stages=3).layers_of_round(names, r) for r in range(4)]
    assert rounds == [names[:2], names[:4], names, names]  # groups of 2, 2 and 3 layers, then all again
    assert all(pipelines.Recluster(rounds=2).layers_of_round(names, r) == names for r in range(2))


def test_only_the_named_layers_are_clustered(digits_model):
    from gwkcuda import ewgs
    from gwkcuda.gwk import gwk_compress, latent_layers

    model = copy.deepcopy(digits_model[0])
    ewgs.quantize_model(model, 4, 4)
    config = GWKConfig(d=4, k=16, importance="uniform", iters=5)
    first, second = latent_layers(model, config)
    with pytest.raises(ValueError, match="only .* goes with keep_latent"):
        gwk_compress(copy.deepcopy(model), config, only=[first])
    with pytest.raises(ValueError, match=r"expected only to name EWGS layers to quantise .*, got \['fc'\]"):
        gwk_compress(copy.deepcopy(model), config, keep_latent=True, only=["fc"])
    x = digits_model[1][:8]
    before = model.get_submodule(second)
    weight = before.weight.detach().clone()
    _, report = gwk_compress(model, config, keep_latent=True, only=[first])
    assert [layer["name"] for layer in report["layers"]] == [first]
    assert model.get_submodule(first).keeps_latent
    assert model.get_submodule(second).codebook is None  # still an EWGS layer with its float weight
    assert torch.equal(model.get_submodule(second).weight, weight)
    model(x)  # half clustered, half not: the model still runs


@pytest.fixture(scope="module")
def small_task():
    task = pipelines.load_task("digits_cnn", "digits")
    return dataclasses.replace(task, x_train=task.x_train[:256], y_train=task.y_train[:256])


@pytest.mark.slow
def test_the_chain_reclusters_inside_retraining(digits_model, small_task, tmp_path):
    model = digits_model[0]
    config = GWKConfig(d=4, k=16, calib_batches=2, iters=5)
    qat = pipelines.QATConfig(bits=4, epochs=1, delta=0.0)
    with pytest.raises(ValueError, match="recluster .* needs qat"):
        pipelines.run_gwk(model, small_task, tmp_path / "x.gwk", config, epochs=1,
                          recluster=pipelines.Recluster(1, 1))
    after_qat = pipelines.run_qat(model, small_task, qat)
    plain = pipelines.run_gwk(model, small_task, tmp_path / "plain.gwk", config, epochs=1, qat=qat,
                              after_qat=after_qat)
    report = pipelines.run_gwk(model, small_task, tmp_path / "rc.gwk", config, epochs=1, qat=qat,
                               after_qat=after_qat, recluster=pipelines.Recluster(rounds=2, epochs=1))
    assert "recluster_rounds" not in plain["details"]
    rounds = report["details"]["recluster_rounds"]
    assert len(rounds) == 2 and all(len(r["losses"]) == 1 for r in rounds)
    assert report["settings"]["recluster"] == {"rounds": 2, "epochs": 1, "final": "cluster", "stages": 1}
    # The file holds codes and codebooks only: no latent weight left behind.
    loaded = model_file.load_model(tmp_path / "rc.gwk")
    convs = [m for m in loaded.modules() if isinstance(m, QConv2d) and m.codebook is not None]
    assert convs and not any(m.keeps_latent for m in convs)
    assert report["details"]["finetune_losses"] != plain["details"]["finetune_losses"]


qat_config = pipelines.QATConfig(bits=4, epochs=1, delta=0.0)


def frozen_chain(digits_model, small_task, out, budget_bits=None, **recluster):
    """The GWK chain on the digits CNN with 2 re-clustering rounds of 1 epoch, codes frozen after."""
    config = GWKConfig(d=4, k=16, calib_batches=2, iters=5)
    after_qat = pipelines.run_qat(digits_model[0], small_task, qat_config)
    return pipelines.run_gwk(digits_model[0], small_task, out, config, epochs=1, qat=qat_config, after_qat=after_qat,
                             recluster=pipelines.Recluster(2, 1, final="freeze", **recluster),
                             budget_bits=budget_bits)


@pytest.mark.slow
def test_frozen_codes_end_the_rounds_where_the_last_one_left_the_model(digits_model, small_task, tmp_path):
    report = frozen_chain(digits_model, small_task, tmp_path / "f.gwk")
    details = report["details"]
    # No clustering after the last round: the model starts its fine-tuning as that round left it.
    assert details["accuracy_before_finetune"] == details["recluster_rounds"][-1]["accuracy_after_training"]
    assert len(details["finetune_accuracies"]) == 1 and 0 <= details["finetune_accuracies"][0] <= 1
    assert report["settings"]["recluster"]["final"] == "freeze"
    loaded = model_file.load_model(tmp_path / "f.gwk")
    convs = [m for m in loaded.modules() if isinstance(m, QConv2d) and m.codebook is not None]
    assert convs and not any(m.keeps_latent for m in convs)


@pytest.mark.slow
def test_the_chain_keeps_the_per_layer_codebook_sizes_it_allocated(digits_model, small_task, tmp_path):
    report = frozen_chain(digits_model, small_task, tmp_path / "b.gwk", budget_bits=1.2)
    allocation = report["details"]["allocation"]
    chosen = {r["name"]: (r["k"], r["bytes"]) for r in allocation["layers"]}
    assert allocation["bytes"] <= allocation["budget_bytes"] and report["settings"]["budget_bits"] == 1.2
    assert len({k for k, _ in chosen.values()}) > 1  # the budget lies between two uniform choices
    # The file holds each layer at its allocated k, in the bytes the allocation counted.
    stored = {r["layer"]: r for r in model_file.describe(tmp_path / "b.gwk")["layers"] if r["method"] == "pq"}
    assert set(stored) == set(chosen)
    for name, (k, size) in chosen.items():
        assert stored[name]["detail"] == f"d=4 k={k}"
        assert stored[name]["index_bytes"] + stored[name]["codebook_bytes"] == size


@pytest.mark.slow
def test_progressive_rounds_cluster_every_layer_by_the_last(digits_model, small_task, tmp_path):
    with pytest.raises(ValueError, match="expected recluster.stages at most the 2 EWGS layers to cluster .*, got 3"):
        pipelines.run_gwk(digits_model[0], small_task, tmp_path / "x.gwk", GWKConfig(d=4, k=16), qat=qat_config,
                          after_qat=pipelines.run_qat(digits_model[0], small_task, qat_config),
                          recluster=pipelines.Recluster(3, 1, stages=3))
    report = frozen_chain(digits_model, small_task, tmp_path / "p.gwk", stages=2)
    assert [r["layers"] for r in report["details"]["recluster_rounds"]] == [1, 2]
    assert report["settings"]["recluster"]["stages"] == 2
    loaded = model_file.load_model(tmp_path / "p.gwk")
    layers = [loaded.get_submodule(n) for n in ("3", "8")]  # the QConv2d and the QLinear
    assert all(m.codebook is not None and not m.keeps_latent for m in layers)


@pytest.mark.slow
def test_a_killed_reclustering_run_resumes_to_the_same_file(tmp_path, monkeypatch):
    argv = ["compress", "--method", "gwk", "--model", "digits_cnn", "--data", "digits", "--device", "cpu",
            "--float-epochs", "1", "--bits", "4", "--qat-epochs", "1", "--delta", "0", "--epochs", "1",
            "--calib-batches", "2", "--iters", "5", "--recluster-rounds", "2", "--recluster-epochs", "2"]
    assert cli.main(argv + ["--out", str(tmp_path / "full.gwk")]) == 0
    original, saved = train._save_atomic, {"n": 0}

    class Killed(BaseException):
        pass

    def save_then_die(obj, path):
        original(obj, path)
        saved["n"] += 1
        if saved["n"] == 3:  # float, QAT, then round 1's 1st epoch of 2: killed inside round 1
            raise Killed

    monkeypatch.setattr(train, "_save_atomic", save_then_die)
    with pytest.raises(Killed):
        cli.main(argv + ["--out", str(tmp_path / "resumed.gwk")])
    assert (tmp_path / "resumed.gwk.work" / "recluster0.pt").exists()
    monkeypatch.setattr(train, "_save_atomic", original)
    assert cli.main(argv + ["--out", str(tmp_path / "resumed.gwk"), "--resume"]) == 0
    assert (tmp_path / "resumed.gwk").read_bytes() == (tmp_path / "full.gwk").read_bytes()
    assert not (tmp_path / "resumed.gwk.work").exists()


def test_the_cli_refuses_reclustering_without_qat(tmp_path, capsys):
    code = cli.main(["compress", "--method", "gwk", "--model", "digits_cnn", "--data", "digits",
                     "--recluster-rounds", "2", "--out", str(tmp_path / "x.gwk")])
    assert code == 2
    assert "--recluster-rounds 2 trains the latent weights through the codebooks of EWGS layers: it needs " \
           "--bits" in capsys.readouterr().err
    base = ["compress", "--method", "gwk", "--model", "digits_cnn", "--data", "digits", "--bits", "4",
            "--out", str(tmp_path / "x.gwk")]
    assert cli.main(base + ["--recluster-rounds", "2", "--recluster-stages", "3"]) == 2
    assert "--recluster-stages: expected at most --recluster-rounds (2: the last round clusters every layer), " \
           "got 3" in capsys.readouterr().err
    assert cli.main(base + ["--recluster-stages", "2"]) == 2
    assert "--recluster-stages 2 splits the re-clustering rounds into stages: it needs --recluster-rounds >= 1, " \
           "got 0" in capsys.readouterr().err
    assert not (tmp_path / "x.gwk").exists()


def test_the_retraining_curve_follows_the_rounds():
    from gwkcuda.plots import retraining_curve
    report = {"settings": {"epochs": 2, "recluster": {"rounds": 2, "epochs": 3}}, "accuracy": 0.8,
              "details": {"accuracy_before_finetune": 0.5, "recluster_rounds": [
                  {"accuracy_after_clustering": 0.2, "accuracy_after_training": 0.7},
                  {"accuracy_after_clustering": 0.4, "accuracy_after_training": 0.75}]}}
    xs, ys = retraining_curve(report)
    assert xs == [0, 3, 3, 6, 6, 8]
    assert ys == pytest.approx([20, 70, 40, 75, 50, 80])
    one_shot = {"settings": {"epochs": 3, "recluster": None}, "accuracy": 0.7,
                "details": {"accuracy_before_finetune": 0.25}}
    assert retraining_curve(one_shot) == ([0, 3], [25.0, 70.0])
    one_shot["details"]["finetune_accuracies"] = [0.5, None, 0.69]  # epoch 2 not measured (a resumed run)
    assert retraining_curve(one_shot) == ([0, 1, 3], [25.0, 50.0, 70.0])

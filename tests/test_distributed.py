"""Two processes on gloo (loopback, file rendezvous): streaming compression with the layers and
the calibration batches split across ranks equals the single-process result."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gwkcuda import model_file
from gwkcuda.distributed import all_reduce_importance, my_share, stream_compress_distributed
from gwkcuda.gwk import accumulate_importance
from gwkcuda.streaming import layer_plan, stream_compress

from .test_streaming import tiny_transformer

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def calibration_batches():
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 50, (32, 8), generator=gen)
    labels = torch.randint(0, 5, (32,), generator=gen)
    return [(tokens[i:i + 4], labels[i:i + 4]) for i in range(0, 32, 4)]


def importance_of(model, plan, batches):
    def run_backward(after_each):
        for x, y in batches:
            torch.nn.functional.cross_entropy(model(x), y).backward()
            after_each()
    return accumulate_importance(model, plan, run_backward)


def single_process(folder):
    model = tiny_transformer()
    plan = layer_plan(model, d=4, k=16, min_weights=1024)
    importance = importance_of(model, plan, calibration_batches())
    stream_compress(model, plan, importance, folder / "single.parts", iters=5)
    model_file.save_model(folder / "single.gwk", model)
    return importance


def worker(rank, world, folder):
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        model = tiny_transformer()
        plan = layer_plan(model, d=4, k=16, min_weights=1024)
        importance = all_reduce_importance(importance_of(model, plan, my_share(calibration_batches(), rank, world)))
        torch.save(importance, folder / f"importance{rank}.pt")
        # The clustering input: the single-process importances, so that the check below compares
        # the layer split alone (the all-reduced sums differ from them by float rounding only).
        exact = torch.load(folder / "single_importance.pt")
        report = stream_compress_distributed(model, plan, exact, folder / "multi.parts", iters=5)
        assert len(report["layers"]) == len(my_share(plan, rank, world))
        if rank == 0:
            model_file.save_model(folder / "multi.gwk", model)
        model_file.save_model(folder / f"rank{rank}.gwk", model)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_equal_one(tmp_path):
    importance = single_process(tmp_path)
    torch.save(importance, tmp_path / "single_importance.pt")
    mp.spawn(worker, args=(2, tmp_path), nprocs=2, join=True)
    single = (tmp_path / "single.gwk").read_bytes()
    assert (tmp_path / "multi.gwk").read_bytes() == single
    assert (tmp_path / "rank1.gwk").read_bytes() == single  # every rank holds the whole model
    for rank in range(2):
        reduced = torch.load(tmp_path / f"importance{rank}.pt")
        assert set(reduced) == set(importance)
        for name in importance:
            torch.testing.assert_close(reduced[name], importance[name], rtol=1e-5, atol=1e-7)


def test_my_share_is_round_robin():
    assert my_share(list("abcde"), 0, 2) == ["a", "c", "e"] and my_share(list("abcde"), 1, 2) == ["b", "d"]
    assert my_share({"x": 1, "y": 2, "z": 3}, 1, 2) == {"y": 2}


def digits_mlp(folder):
    """A small MLP trained on scikit-learn's digits (saved, so that every process starts from the
    same weights whatever its thread count)."""
    from gwkcuda import data, train
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    x, y = data.digits("train")
    train.train(model, x, y, epochs=3, lr=3e-3)
    torch.save(model.state_dict(), folder / "mlp.pt")


def load_mlp(folder):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    model.load_state_dict(torch.load(folder / "mlp.pt"))
    return model.eval()


def bin_and_quant_file(folder, out):
    """Bin & Quant (perturbation mode: one evaluation per candidate bin) of the MLP, scored by
    agreement on the digits test images with shared_score; writes ``out``."""
    from gwkcuda import data
    from gwkcuda.binquant import BinQuantConfig, bin_and_quant, save_binquant
    from gwkcuda.distributed import shared_score
    model = load_mlp(folder)
    x, _ = data.digits("test")
    score = shared_score(lambda m, xs: m(xs).argmax(1), x, reference=model)
    config = BinQuantConfig(max_drop=2.0, max_bins=8, sensitivity="perturb", min_weights=1000)
    result = bin_and_quant(model, score, config)
    save_binquant(folder / out, result)
    return result.evaluations


def gwk_ddp_worker(rank, world, folder):
    from gwkcuda import data
    from gwkcuda.distributed import all_reduce_importance, train_ddp
    from gwkcuda.gwk import gwk_quantize, replace_with_pq
    from gwkcuda.pq import PQConfig
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous-ddp", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        evaluations = bin_and_quant_file(folder, f"bq_rank{rank}.gwk")
        torch.save(evaluations, folder / f"bq_evaluations{rank}.pt")
        model = load_mlp(folder)
        x, y = data.digits("train")
        x, y = x[:1280], y[:1280]
        plan = {"1": PQConfig(4, 16), "3": PQConfig(4, 8)}
        batches = my_share([(x[i:i + 64], y[i:i + 64]) for i in range(0, 512, 64)], rank, world)

        def run_backward(after_each):
            for xb, yb in batches:
                torch.nn.functional.cross_entropy(model(xb), yb).backward()
                after_each()
        importance = all_reduce_importance(accumulate_importance(model, plan, run_backward))
        weights = {n: model.get_submodule(n).weight for n in plan}
        replace_with_pq(model, gwk_quantize(weights, plan, importance, beta=1.0, iters=10))
        if rank == 0:
            torch.save(model.state_dict(), folder / "pq_start.pt")
        train_ddp(model, x, y, epochs=2, batch=64, lr=1e-3)
        torch.save(model.state_dict(), folder / f"pq_trained{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_bin_and_quant_and_ddp_finetuning_on_two_gloo_processes(tmp_path):
    """(1) Bin & Quant with every candidate evaluation split across 2 ranks writes the same file as
    one process, after the same number of evaluations. (2) GWK under DistributedDataParallel: the
    all-reduced importances give both ranks the same codebooks, fine-tuning keeps them bit-identical,
    and they match one process training on whole batches (to float rounding)."""
    from gwkcuda import data, train
    digits_mlp(tmp_path)
    single_evaluations = bin_and_quant_file(tmp_path, "bq_single.gwk")
    mp.spawn(gwk_ddp_worker, args=(2, tmp_path), nprocs=2, join=True)
    single = (tmp_path / "bq_single.gwk").read_bytes()
    for rank in range(2):
        assert (tmp_path / f"bq_rank{rank}.gwk").read_bytes() == single
        assert torch.load(tmp_path / f"bq_evaluations{rank}.pt") == single_evaluations > 4

    trained = [torch.load(tmp_path / f"pq_trained{rank}.pt") for rank in range(2)]
    start = torch.load(tmp_path / "pq_start.pt")
    assert any("codebook" in k for k in trained[0])
    for k in trained[0]:
        assert torch.equal(trained[0][k], trained[1][k]), k  # bit-identical on both ranks
    from gwkcuda.gwk import gwk_quantize, replace_with_pq  # one process from the same PQ model
    from gwkcuda.pq import PQConfig
    model = load_mlp(tmp_path)
    plan = {"1": PQConfig(4, 16), "3": PQConfig(4, 8)}
    replace_with_pq(model, gwk_quantize({n: model.get_submodule(n).weight for n in plan}, plan, None, iters=1))
    model.load_state_dict(start)
    x, y = data.digits("train")
    train.train(model, x[:1280], y[:1280], epochs=2, batch=64, lr=1e-3)
    changed = 0
    for k, v in model.state_dict().items():
        torch.testing.assert_close(trained[0][k], v, rtol=1e-4, atol=1e-5)
        changed += not torch.equal(start[k], v)
    assert changed >= 4  # codebooks and biases moved

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

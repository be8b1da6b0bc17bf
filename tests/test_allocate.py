"""Per-layer (d, k) from sensitivity within a size budget: the exact knapsack against brute force,
the byte count against a written file, and the allocation's use of the sensitivities."""
import itertools
import random

import pytest
import torch
from torch import nn

from gwkcuda import allocate, model_file
from gwkcuda.gwk import GWKConfig, allocate_layers, gwk_compress


def random_options(rng, layers=4, per_layer=4):
    return {f"l{i}": [(rng.randrange(0, 60), rng.uniform(0, 10)) for _ in range(per_layer)] for i in range(layers)}


def brute_force(options, budget):
    """The least summed distortion over every combination within the budget (inf if none fits)."""
    best = float("inf")
    for combo in itertools.product(*options.values()):
        if sum(b for b, _ in combo) <= budget:
            best = min(best, sum(d for _, d in combo))
    return best


def total(options, pick):
    return (sum(options[n][j][0] for n, j in pick.items()), sum(options[n][j][1] for n, j in pick.items()))


@pytest.mark.parametrize("seed", range(6))
def test_the_choice_is_the_least_distortion_within_the_budget(seed):
    rng = random.Random(seed)
    options = random_options(rng)
    smallest = sum(min(b for b, _ in o) for o in options.values())
    for budget in (smallest, smallest + 7, smallest + 40, 400):
        pick = allocate.min_distortion(options, budget)
        used, dist = total(options, pick)
        assert used <= budget
        assert dist == pytest.approx(brute_force(options, budget), rel=1e-12, abs=1e-12)


def test_coarse_byte_units_keep_the_budget(monkeypatch):
    rng = random.Random(7)
    options = {n: [(b * 97, d) for b, d in o] for n, o in random_options(rng, layers=5).items()}
    budget = 9000
    monkeypatch.setattr(allocate, "MAX_CELLS", 5 * 300)  # units of ceil(5 * 9001 / 1500) = 31 bytes
    unit = -(-5 * (budget + 1) // allocate.MAX_CELLS)
    pick = allocate.min_distortion(options, budget)
    used, dist = total(options, pick)
    assert unit == 31 and used <= budget
    # Every combination that fits with each option rounded up to whole units is considered.
    assert dist <= brute_force(options, unit * (budget // unit) - 5 * (unit - 1)) + 1e-12


def test_bad_budgets_and_options_are_refused():
    options = {"a": [(10, 1.0), (20, 0.5)], "b": [(5, 2.0)]}
    with pytest.raises(ValueError, match="the budget of 14 bytes is below the smallest choice, 15 bytes"):
        allocate.min_distortion(options, 14)
    with pytest.raises(ValueError, match="expected budget an int >= 0 .*, got -1"):
        allocate.min_distortion(options, -1)
    with pytest.raises(ValueError, match="expected at least one option for layer 'b', got none"):
        allocate.min_distortion({"a": [(1, 0.0)], "b": []}, 10)
    with pytest.raises(ValueError, match=r"for layer 'a', got \(3, nan\)"):
        allocate.min_distortion({"a": [(3, float("nan"))]}, 10)
    assert allocate.min_distortion(options, 15) == {"a": 0, "b": 0}
    assert allocate.min_distortion(options, 25) == {"a": 1, "b": 0}


class TwoBranches(nn.Module):
    """Two equal linear layers; the first's output is scaled by 10, so its g^2 is 100x the other's."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.loud, self.quiet = nn.Linear(64, 64, bias=False), nn.Linear(64, 64, bias=False)
        with torch.no_grad():
            self.quiet.weight.copy_(self.loud.weight)

    def forward(self, x):
        return 10 * self.loud(x) + self.quiet(x)


def backward_on(model):
    x = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))

    def run_backward(after_each):
        for chunk in x.split(16):
            model(chunk).square().mean().backward()
            after_each()
    return run_backward


def test_the_more_sensitive_layer_gets_the_larger_codebook():
    model = TwoBranches()
    config = GWKConfig(d=4, k=8, iters=10)
    small = allocate.pq_layer_bytes(64, 64, 4, 8, 32)
    step = allocate.pq_layer_bytes(64, 64, 4, 16, 32) - small
    weights = 2 * 64 * 64
    # Room for one layer at k = 16: it goes to the loud one.
    layers, report = allocate_layers(model, config, 8 * (2 * small + step) / weights, backward_on(model),
                                     k_choices=(8, 16))
    assert layers == {"loud": (4, 16), "quiet": (4, 8)}
    assert report["bytes"] == 2 * small + step <= report["budget_bytes"]
    by_name = {r["name"]: r for r in report["layers"]}
    # Same weights (each clustered from its own k-means++ draw): the distortions differ by about
    # the gradient scale, 100x.
    for (k1, b1, e1), (k2, b2, e2) in zip(by_name["loud"]["options"], by_name["quiet"]["options"]):
        assert (k1, b1) == (k2, b2) and e1 == pytest.approx(100 * e2, rel=0.25)
    # Room for both: both at k = 16; less than the smallest choice: refused.
    layers, _ = allocate_layers(model, config, 8 * (2 * small + 2 * step) / weights, backward_on(model),
                                k_choices=(8, 16))
    assert layers == {"loud": (4, 16), "quiet": (4, 16)}
    with pytest.raises(ValueError, match=r"expected budget_bits at least 1\.0000 \(every layer at its smallest "
                                         r"k of \[8, 16\]\), got 0\.999"):
        allocate_layers(model, config, 8 * (2 * small - 1) / weights, backward_on(model), k_choices=(8, 16))


def test_bad_allocation_settings_are_refused():
    model = TwoBranches()
    with pytest.raises(ValueError, match="expected budget_bits a finite number > 0 .*, got 0"):
        allocate_layers(model, GWKConfig(d=4, k=8), 0, backward_on(model))
    with pytest.raises(ValueError, match=r"expected k_choices ints in 2..65536, got \(1, 8\)"):
        allocate_layers(model, GWKConfig(d=4, k=8), 1.0, backward_on(model), k_choices=(1, 8))


@pytest.mark.parametrize("k", [8, 16, 32])
def test_the_byte_count_is_what_the_file_stores(tmp_path, k):
    model = TwoBranches()
    config = GWKConfig(d=4, k=k, iters=3, importance="uniform")
    gwk_compress(model, config)
    info = model_file.save_model(tmp_path / "m.gwk", model)
    rows = [r for r in info["layers"] if r["method"] == "pq"]
    assert len(rows) == 2
    for r in rows:
        assert r["index_bytes"] + r["codebook_bytes"] == allocate.pq_layer_bytes(64, 64, 4, k, 32)


def test_the_cli_checks_the_budget_before_training(tmp_path, capsys):
    from gwkcuda import cli
    base = ["compress", "--model", "digits_cnn", "--data", "digits", "--d", "4", "--k", "16", "--bits", "4",
            "--out", str(tmp_path / "x.gwk")]
    assert cli.main(base + ["--method", "gwk", "--budget-bits", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "--budget-bits: expected budget_bits at least " in err and "got 0.01" in err
    assert cli.main(base + ["--method", "binquant", "--budget-bits", "1"]) == 2
    assert "--budget-bits chooses each layer's k for GWK / k-means" in capsys.readouterr().err
    assert cli.main(base + ["--method", "gwk", "--budget-bits", "0"]) == 2
    assert "--budget-bits" in capsys.readouterr().err
    assert not (tmp_path / "x.gwk").exists() and not (tmp_path / "x.gwk.work").exists()

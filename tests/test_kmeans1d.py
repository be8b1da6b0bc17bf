"""Exact weighted 1-D k-means (kmeans.optimal_kmeans_1d): the brute-force optimum on small inputs,
never worse than Lloyd from k-means++, and the seed spread it removes."""
import itertools

import numpy as np
import pytest
import torch

from gwkcuda import kmeans, ops


def _brute_force(x, w, k):
    """Least weighted SSE over every split of the sorted points into k contiguous runs."""
    order = sorted(range(len(x)), key=lambda i: x[i])
    xs, ws = [x[i] for i in order], [w[i] for i in order]
    best = float("inf")
    for cuts in itertools.combinations(range(1, len(x)), k - 1):
        bounds, cost = (0,) + cuts + (len(x),), 0.0
        for a, b in zip(bounds, bounds[1:]):
            total = sum(ws[a:b])
            if total > 0:
                mean = sum(wi * xi for wi, xi in zip(ws[a:b], xs[a:b])) / total
                cost += sum(wi * (xi - mean) ** 2 for wi, xi in zip(ws[a:b], xs[a:b]))
        best = min(best, cost)
    return best


def test_equals_the_brute_force_optimum():
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        n = int(torch.randint(1, 11, (1,), generator=gen))
        k = int(torch.randint(1, n + 1, (1,), generator=gen))
        x = torch.randn(n, generator=gen, dtype=torch.float64).round(decimals=1)  # ties included
        w = torch.rand(n, generator=gen, dtype=torch.float64) * (torch.rand(n, generator=gen) > 0.2)  # zeros too
        w[0] += 0.5  # (a problem of zero weight everywhere is clustered with uniform weights instead)
        r = kmeans.optimal_kmeans_1d(x[:, None], w, k=k)
        best = _brute_force(x.tolist(), w.tolist(), k)
        assert float(r.inertia) == pytest.approx(best, abs=1e-9)
        assigned = float((w * (x - r.centroids[r.labels, 0]) ** 2).sum())  # labels and centroids agree
        assert assigned == pytest.approx(best, abs=1e-9)
        assert torch.all(r.centroids[1:] >= r.centroids[:-1] - 1e-12)  # ascending (equal runs: to rounding)


def _full_programme(x, w, k):
    """The O(k n^2) dynamic programme with every split tried (numpy, float64): the reference for
    inputs too large for brute force."""
    order = np.argsort(x, kind="stable")
    xs, ws = x[order], w[order]
    W, S, Q = (np.concatenate([[0.0], np.cumsum(v)]) for v in (ws, ws * xs, ws * xs * xs))
    n = len(x)
    i = np.arange(n + 1)

    def cost(j):  # cost of runs [i, j) for every i < j
        wt, st = W[j] - W[:j], S[j] - S[:j]
        with np.errstate(divide="ignore", invalid="ignore"):
            c = (Q[j] - Q[:j]) - np.where(wt > 0, st * st / wt, 0.0)
        return np.maximum(c, 0.0)

    D = np.array([cost(j)[0] if j else 0.0 for j in i])
    for m in range(1, k):
        D = np.array([np.min(D[:j][m:] + cost(j)[m:]) if j > m else np.inf for j in i])
    return D[n]


def test_equals_the_full_programme_on_larger_inputs():
    rng = np.random.default_rng(3)
    for n, k in ((300, 2), (300, 7), (257, 16), (120, 40)):
        x = np.round(rng.standard_normal(n) * rng.uniform(0.1, 3), 2)  # many ties
        w = rng.random(n) ** 4 * (rng.random(n) > 0.3)  # skewed, zeros too
        w[0] += 0.5
        r = kmeans.optimal_kmeans_1d(torch.from_numpy(x), torch.from_numpy(w), k=k)
        assert float(r.inertia) == pytest.approx(_full_programme(x, w, k), rel=1e-9, abs=1e-12)


def test_padded_problems_in_one_call_equal_each_alone():
    gen = torch.Generator().manual_seed(4)
    x, w = torch.randn(3, 400, generator=gen), torch.rand(3, 400, generator=gen)
    lengths = torch.tensor([400, 123, 9])
    c, labels, inertia = ops.kmeans1d_optimal(x, w, 5, lengths)
    for b, n in enumerate(lengths.tolist()):
        alone = ops.kmeans1d_optimal(x[b:b + 1, :n], w[b:b + 1, :n], 5)
        assert torch.equal(labels[b, :n], alone[1][0]) and bool((labels[b, n:] == -1).all())
        assert torch.equal(c[b], alone[0][0]) and torch.equal(inertia[b], alone[2][0])
    with pytest.raises(RuntimeError, match="expected every length in k..N = 5..400, got 4 for problem 1"):
        ops.kmeans1d_optimal(x, w, 5, torch.tensor([400, 4, 9]))


def test_never_worse_than_lloyd_and_seed_free():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(64, 500, 1, generator=gen) * torch.rand(64, 1, 1, generator=gen)
    w = torch.rand(64, 500, generator=gen) ** 4  # skewed, as g^2 importances are
    exact = kmeans.optimal_kmeans_1d(x, w, k=8)
    for seed in range(3):
        lloyd = kmeans.weighted_kmeans(x, w, k=8, iters=50, seed=seed)
        assert torch.all(exact.inertia <= lloyd.inertia * (1 + 1e-6) + 1e-9)
    assert exact.labels.shape == (64, 500) and exact.centroids.shape == (64, 8, 1)
    assert torch.equal(exact.labels, kmeans.optimal_kmeans_1d(x, w, k=8).labels)  # deterministic


def test_the_pipelines_cluster_scalar_codebooks_exactly():
    """kmeans.cluster (what gwk_quantize calls) is exact for d = 1, padded problems included, and
    Lloyd's for vectors."""
    gen = torch.Generator().manual_seed(2)
    xs = [torch.randn(n, 1, generator=gen) for n in (300, 200)]
    ws = [torch.rand(n, generator=gen) for n in (300, 200)]
    x, w, lengths = kmeans.stack_problems(xs, ws)
    r = kmeans.cluster(x, w, k=6, lengths=lengths, labels_dtype=torch.int32)
    assert r.n_iter == 0 and r.labels.dtype == torch.int32 and bool((r.labels[1, 200:] == -1).all())
    for b in range(2):
        alone = kmeans.optimal_kmeans_1d(xs[b], ws[b], k=6)
        assert torch.allclose(r.centroids[b], alone.centroids) and torch.equal(r.labels[b, :len(xs[b])].long(), alone.labels)
    assert kmeans.cluster(torch.randn(1, 300, 2, generator=gen), None, k=4, iters=5).n_iter >= 1


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="expected k an int in 1..N = 1..3"):
        kmeans.optimal_kmeans_1d(torch.randn(3, 1), k=4)
    with pytest.raises(RuntimeError, match="expected finite points"):
        ops.kmeans1d_optimal(torch.tensor([[1.0, float("nan")]]), None, 1)
    with pytest.raises(RuntimeError, match="expected every weight finite and >= 0"):
        ops.kmeans1d_optimal(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, -1.0]]), 1)
    with pytest.raises(ValueError, match="expected weight of shape"):
        kmeans.optimal_kmeans_1d(torch.randn(5, 1), torch.ones(4), k=2)

"""pytest-benchmark: gwkcuda's weighted k-means against faiss and scikit-learn (and, for d = 1,
flash1dkmeans and gwkcuda's exact 1-D programme), same data, in one run (the k-means rows of the
design targets).

    pip install -e ".[peers]"   # faiss-cpu, flash1dkmeans (a peer that is missing is skipped)
    python -m pytest bench/bench_kmeans.py --benchmark-json=kmeans.json
    python bench/report.py kmeans.json

Each group holds every implementation on one shape. For d = 1 the gwkcuda row is the sorted Lloyd
(points sorted once, O(k log N) per iteration; weighted_kmeans' default there), beside gwkcuda's
general Lloyd (a pass over the points per iteration). gwkcuda, faiss and scikit-learn run Lloyd from
the same initial centroids for the same iteration count (tol = 0), faiss with the point weights and
without subsampling; flash1dkmeans seeds itself (k-means++; it takes no initial centroids); the
exact programme has neither seed nor iterations. The peers are called as their users call them:
once per problem (SqueezeLLM calls scikit-learn once per weight row). Every row reports the
weighted inertia of the centroids it returned, computed the same way for all (a faster but worse
clustering is not a win).
"""
import numpy as np
import pytest
import torch

from gwkcuda import ops
from gwkcuda.kmeans import optimal_kmeans_1d, weighted_kmeans
from gwkcuda.microbench import gwkcuda_kmeans as run_gwkcuda
from gwkcuda.microbench import kmeans_problem as make_problem
from gwkcuda.microbench import machine
from gwkcuda.microbench import sklearn_kmeans as run_sklearn

pytest.importorskip("sklearn.cluster")

ITERS = 10  # as gwkcuda.microbench.KMEANS_ITERS

# (group, B problems, N points each, d, k)
SHAPES = [
    ("many small: 256 x 4096 pts, d=4, k=16", 256, 4096, 4, 16),
    ("per-row scalar: 4096 rows x 4096, d=1, k=16", 4096, 4096, 1, 16),
    ("one large: 1M pts, d=8, k=256", 1, 1 << 20, 8, 256),
    # all-MiniLM-L6-v2's feed-forward layers (1536 x 384): per-row scalar clustering at 3 bits,
    # and the layer's 2-long sub-vectors clustered together (GWK-PQ d = 2, k = 128)
    ("MiniLM FFN layer per row: 1536 rows x 384, d=1, k=8", 1536, 384, 1, 8),
    ("MiniLM FFN layer as one problem: 294,912 pts, d=2, k=128", 1, 294912, 2, 128),
]


def run_faiss(x, w, init, iters=ITERS):
    """faiss.Kmeans with point weights and the given initial centroids, once per problem, every
    point used (max_points_per_centroid = N: no subsampling)."""
    import faiss

    xn, wn, cn = (np.ascontiguousarray(t.numpy(), dtype=np.float32) for t in (x, w, init))
    out = []
    for b in range(xn.shape[0]):
        km = faiss.Kmeans(xn.shape[2], cn.shape[1], niter=iters, max_points_per_centroid=xn.shape[1],
                          min_points_per_centroid=1, verbose=False)
        km.train(xn[b], weights=wn[b], init_centroids=cn[b])
        out.append(km.centroids)
    return np.stack(out)


def run_flash1dkmeans(x, w, init, iters=ITERS):
    """flash1dkmeans.kmeans_1d (d = 1), once per problem: its own k-means++ seeding, then Lloyd."""
    import flash1dkmeans

    xn, wn, k = x[..., 0].double().numpy(), w.double().numpy(), init.shape[1]
    return np.stack([flash1dkmeans.kmeans_1d(xn[b], k, max_iter=iters, sample_weights=wn[b], random_state=0)[0]
                     for b in range(xn.shape[0])])[..., None]


def run_general(x, w, init, iters=ITERS):
    """gwkcuda's general Lloyd (a pass over the points per iteration) where the default for d = 1
    is the sorted one."""
    return weighted_kmeans(x, w, k=init.shape[1], iters=iters, tol=0.0, init=init, algorithm="lloyd")


def run_exact(x, w, init):
    """gwkcuda's exact weighted 1-D k-means (d = 1): all problems in one call."""
    return optimal_kmeans_1d(x, w, k=init.shape[1]).centroids


RUNNERS = {"gwkcuda": run_gwkcuda, "gwkcuda general Lloyd": run_general, "gwkcuda exact 1-D": run_exact, "faiss": run_faiss,
           "flash1dkmeans": run_flash1dkmeans, "scikit-learn": run_sklearn}
PEER_MODULE = {"faiss": "faiss", "flash1dkmeans": "flash1dkmeans"}
ONLY_1D = ("gwkcuda exact 1-D", "gwkcuda general Lloyd", "flash1dkmeans")


def centroids_of(result):
    if hasattr(result, "centroids"):
        result = result.centroids
    return torch.as_tensor(np.asarray(result), dtype=torch.float32)


def weighted_inertia(x, w, centroids):
    """sum over all problems of w * squared distance to the nearest returned centroid (float64)."""
    _, sqdist = ops.kmeans_assign(x, centroids.reshape(x.shape[0], -1, x.shape[2]).contiguous())
    return float((w.double() * sqdist.double()).sum())


_cache = {}


def problem_for(shape):
    if shape not in _cache:
        _cache.clear()
        _cache[shape] = make_problem(*shape[1:])
    return _cache[shape]


@pytest.mark.parametrize("shape", SHAPES, ids=[s[0] for s in SHAPES])
@pytest.mark.parametrize("impl", list(RUNNERS))
def test_kmeans(benchmark, shape, impl):
    if impl in PEER_MODULE:
        pytest.importorskip(PEER_MODULE[impl])
    if impl in ONLY_1D and shape[3] != 1:
        pytest.skip(f"{impl} clusters scalars only" if impl != "gwkcuda general Lloyd" else "the gwkcuda row for d > 1")
    x, w, init = problem_for(shape)
    fn = RUNNERS[impl]
    benchmark.group = shape[0]
    what = "exact" if impl == "gwkcuda exact 1-D" else f"{ITERS} Lloyd iterations"
    benchmark.extra_info.update(op=f"{impl}, {what}", bytes_moved=0, baseline=impl == "scikit-learn",
                                machine=machine())
    result = benchmark.pedantic(fn, args=(x, w, init), rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info["weighted_inertia"] = weighted_inertia(x, w, centroids_of(result))
    if impl == "gwkcuda":
        reference = run_sklearn(x[:8], w[:8], init[:8])  # agreement on a sample of problems
        got = result.centroids[:8].numpy()
        benchmark.extra_info["max_rel_diff_vs_sklearn"] = float(
            np.abs(got - reference).max() / np.abs(reference).max())

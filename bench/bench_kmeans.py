"""pytest-benchmark: gwkcuda's weighted k-means against scikit-learn, same data, same initial
centroids, same iteration count (tol = 0), in one run (the k-means rows of the design targets).

    python -m pytest bench/bench_kmeans.py --benchmark-json=kmeans.json
    python bench/report.py kmeans.json

Each group holds gwkcuda and scikit-learn on one shape; scikit-learn is called as its users call
it: once per problem (SqueezeLLM calls it once per weight row).
"""
import numpy as np
import pytest

from gwkcuda.microbench import gwkcuda_kmeans as run_gwkcuda
from gwkcuda.microbench import kmeans_problem as make_problem
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


_cache = {}


def problem_for(shape):
    if shape not in _cache:
        _cache.clear()
        _cache[shape] = make_problem(*shape[1:])
    return _cache[shape]


@pytest.mark.parametrize("shape", SHAPES, ids=[s[0] for s in SHAPES])
@pytest.mark.parametrize("impl", ["gwkcuda", "scikit-learn"])
def test_kmeans(benchmark, shape, impl):
    x, w, init = problem_for(shape)
    fn = run_gwkcuda if impl == "gwkcuda" else run_sklearn
    benchmark.group = shape[0]
    benchmark.extra_info.update(op=f"{impl}, {ITERS} Lloyd iterations", bytes_moved=0,
                                baseline=impl == "scikit-learn")
    result = benchmark.pedantic(fn, args=(x, w, init), rounds=3, iterations=1, warmup_rounds=1)
    if impl == "gwkcuda":
        reference = run_sklearn(x[:8], w[:8], init[:8])  # agreement on a sample of problems
        got = result.centroids[:8].numpy()
        benchmark.extra_info["max_rel_diff_vs_sklearn"] = float(
            np.abs(got - reference).max() / np.abs(reference).max())

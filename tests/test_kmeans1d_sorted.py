"""Lloyd's k-means of scalar points over sorted points (ops.kmeans1d_sort, gwk_lloyd_step_sorted,
kmeans1d_sorted_assign, and weighted_kmeans' "sorted" algorithm): the same iterations as the
general kernel (gwk_lloyd_step at d = 1) and as scikit-learn, on inputs made to break it."""
import pytest
import torch

from gwkcuda import kmeans, ops
from gwkcuda.reference import gwk_lloyd_step as reference_step

from .conftest import DEVICES


def _problems(kind, dtype=torch.float32, B=6, N=700, k=9, seed=0):
    """(x [B, N, 1], w [B, N], centroids [B, k, 1]) of one adversarial kind."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, 1, generator=gen, dtype=torch.float64)
    w = torch.rand(B, N, generator=gen, dtype=torch.float64)
    if kind == "ties":  # few distinct values: equal points, points exactly between two centroids
        x = (x * 2).round() / 2
    elif kind == "offset":  # far from zero: the prefix sums must not lose the spread to the offset
        x = 1000 + 1e-3 * x
    elif kind == "zero weights":  # whole stretches weightless: clusters of zero weight keep their centroid
        w = w * (x[..., 0] > 0.3)
    elif kind == "tiny weights":  # weights 40 decades apart: light runs summed point by point
        w = torch.where(x[..., 0] < -0.5, w * 1e-40, w)
    elif kind == "subnormal":
        w = w * 1e-42
        dtype = torch.float32
    c = x[:, torch.randperm(N, generator=gen)[:k]].clone()
    if kind == "duplicate centroids":  # equal centroids: the lowest index takes the points
        c[:, 1] = c[:, 0]
        c[:, 5] = c[:, 0]
    if kind == "ties":  # centroids on the grid: every other point is an exact tie
        c = torch.arange(k, dtype=torch.float64).reshape(1, k, 1).expand(B, k, 1).clone() - k // 2
        c = c[:, torch.randperm(k, generator=gen)]  # tie-break by index, not by value order
    return x.to(dtype), w.to(dtype), c.to(dtype)


KINDS = ["random", "ties", "offset", "zero weights", "tiny weights", "subnormal", "duplicate centroids"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sorted_steps_equal_the_general_kernel(kind, dtype):
    x, w, c = _problems(kind, dtype)
    state = ops.kmeans1d_sort(x, w)
    general = sorted_ = c
    for _ in range(8):  # each from the same centroids, so a difference cannot hide in later steps
        new, labels, weight_sums, _ = ops.gwk_lloyd_step(x, w, general)
        got, got_weights = ops.gwk_lloyd_step_sorted(state, w, general)
        # float32: the float64 sums round to the same float (or the next); float64: to rounding
        torch.testing.assert_close(got, new, rtol=1e-12 if dtype == torch.float64 else 4 * torch.finfo(dtype).eps,
                                   atol=1e-12)
        torch.testing.assert_close(got_weights, weight_sums, rtol=1e-12 if dtype == torch.float64 else 1e-6,
                                   atol=0)
        # the reference (torch ops): the same labels, so the same clusters
        _, ref_labels, _, _ = reference_step(x, w, general)
        assert torch.equal(ref_labels, labels)
        sorted_, _ = ops.gwk_lloyd_step_sorted(state, w, sorted_)
        general = new
    torch.testing.assert_close(sorted_, general, rtol=1e-5, atol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_sorted_assignment_equals_kmeans_assign(kind):
    x, w, c = _problems(kind)
    state = ops.kmeans1d_sort(x, w)
    for dtype in (torch.int64, torch.int32):
        labels = torch.full(x.shape[:2], -7, dtype=dtype)
        inertia = ops.kmeans1d_sorted_assign(state, w, c, labels)
        want, sqdist = ops.kmeans_assign(x, c)
        assert torch.equal(labels.long(), want)
        torch.testing.assert_close(inertia, (w.double() * sqdist.double()).sum(1).float(), rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_sorted_state(dtype):
    x, w, _ = _problems("ties", dtype, N=1000)
    xs, order, heads, prefix, shift = ops.kmeans1d_sort(x, w)
    assert order.dtype == torch.int32 and prefix.dtype == torch.float64
    assert torch.equal(xs, x[..., 0].gather(1, order.long()))
    assert bool((xs[:, 1:] >= xs[:, :-1]).all())
    assert torch.equal(torch.sort(order.long(), 1).values, torch.arange(1000).expand(6, 1000))  # a permutation
    assert torch.equal(heads, xs[:, ::16])
    ws = w.double().gather(1, order.long())
    totals = prefix[:, -1]
    torch.testing.assert_close(totals[:, 0] + totals[:, 1], ws.sum(1), rtol=1e-14, atol=0)
    y = xs.double() - shift[:, None]
    torch.testing.assert_close(totals[:, 2] + totals[:, 3], (ws * y).sum(1), rtol=1e-12, atol=1e-12)
    assert torch.equal(totals[:, 4], (ws > 0).sum(1).double())
    # equal points keep their index order (a stable sort)
    same = xs[:, 1:] == xs[:, :-1]
    assert bool((order[:, 1:] > order[:, :-1])[same].all())


@pytest.mark.parametrize("kind", ["random", "offset", "zero weights"])  # (exact ties: scikit-learn has its own rule)
def test_sorted_steps_equal_scikit_learn(kind):
    sklearn = pytest.importorskip("sklearn.cluster")
    x, w, c = _problems(kind, torch.float64, B=3)
    w = w + 1e-3  # scikit-learn drops zero-weight clusters' points differently: keep every weight positive
    got = kmeans.weighted_kmeans(x, w, k=c.shape[1], iters=10, tol=0.0, init=c, algorithm="sorted")
    for b in range(3):
        km = sklearn.KMeans(n_clusters=c.shape[1], init=c[b].numpy(), n_init=1, max_iter=10, tol=0.0,
                            algorithm="lloyd").fit(x[b].numpy(), sample_weight=w[b].numpy())
        torch.testing.assert_close(got.centroids[b], torch.from_numpy(km.cluster_centers_), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("lengths", [None, [700, 350, 9, 699, 500, 12]])
@pytest.mark.parametrize("labels_dtype", [torch.int64, torch.int32])
def test_weighted_kmeans_sorted_equals_lloyd(lengths, labels_dtype):
    x, w, _ = _problems("random")
    if lengths is not None:
        for b, n in enumerate(lengths):
            x[b, n:] = float("nan")  # padding may hold anything
    args = dict(k=9, iters=30, seed=3, lengths=lengths, labels_dtype=labels_dtype)
    lloyd = kmeans.weighted_kmeans(x, w, algorithm="lloyd", **args)
    fast = kmeans.weighted_kmeans(x, w, **args)  # "auto": sorted for scalar points
    torch.testing.assert_close(fast.centroids, lloyd.centroids, rtol=1e-5, atol=0)
    assert torch.equal(fast.labels, lloyd.labels) and fast.labels.dtype == labels_dtype
    torch.testing.assert_close(fast.inertia, lloyd.inertia, rtol=1e-5, atol=0)
    assert fast.n_iter == lloyd.n_iter
    one = kmeans.weighted_kmeans(x[0, :, :], w[0], k=4, iters=20, algorithm="sorted")  # unbatched
    assert one.centroids.shape == (4, 1) and one.labels.shape == (700,)
    torch.testing.assert_close(one.centroids, kmeans.weighted_kmeans(x[0], w[0], k=4, iters=20,
                                                                      algorithm="lloyd").centroids, rtol=1e-5, atol=0)


def test_empty_clusters_are_split_as_by_lloyd():
    x = torch.cat([torch.zeros(50), torch.ones(50)]).reshape(1, 100, 1)  # two values, four clusters
    init = torch.tensor([[[0.0], [0.0], [1.0], [5.0]]])
    for algorithm in ("lloyd", "sorted"):
        r = kmeans.weighted_kmeans(x, k=4, iters=5, init=init, algorithm=algorithm)
        if algorithm == "lloyd":
            want = r
    torch.testing.assert_close(r.centroids, want.centroids, rtol=0, atol=0)
    assert torch.equal(r.labels, want.labels)


def test_bad_input_is_refused_with_its_place():
    x, w, c = _problems("random", B=2, N=40)
    bad = x.clone()
    bad[1, 7, 0] = float("nan")
    with pytest.raises(RuntimeError, match=r"kmeans1d_sort: expected finite points, got nan at \[1, 7\]"):
        ops.kmeans1d_sort(bad, w)
    wb = w.clone()
    wb[0, 3] = -1
    with pytest.raises(RuntimeError, match=r"kmeans1d_sort: expected every weight finite and >= 0, got -1 at \[0, 3\]"):
        ops.kmeans1d_sort(x, wb)
    with pytest.raises(RuntimeError, match=r"expected scalar points x of shape \[B, N\] or \[B, N, 1\], got \[2, 40, 2\]"):
        ops.kmeans1d_sort(torch.randn(2, 40, 2), None)
    state = ops.kmeans1d_sort(x, w)
    with pytest.raises(RuntimeError, match=r"expected weight as given to kmeans1d_sort"):
        ops.gwk_lloyd_step_sorted(state, w.double(), c)
    with pytest.raises(RuntimeError, match=r"expected centroids of shape \[B, k, 1\] = \[2, k, 1\]"):
        ops.gwk_lloyd_step_sorted(state, w, c[:1])
    with pytest.raises(RuntimeError, match=r"expected order as kmeans1d_sort returns it"):
        ops.gwk_lloyd_step_sorted(state._replace(order=state.order.long()), w, c)
    with pytest.raises(RuntimeError, match=r"expected a labels buffer of its own"):
        ops.kmeans1d_sorted_assign(state, w, c, state.order)
    with pytest.raises(ValueError, match=r"algorithm 'sorted' clusters scalar points \(d = 1\), got d = 2"):
        kmeans.weighted_kmeans(torch.randn(30, 2), k=3, algorithm="sorted")
    with pytest.raises(ValueError, match=r"expected algorithm 'auto', 'lloyd' or 'sorted', got 'fast'"):
        kmeans.weighted_kmeans(torch.randn(30, 1), k=3, algorithm="fast")


@pytest.mark.parametrize("device", DEVICES)
def test_devices_agree(device):
    x, w, c = _problems("ties", B=5, N=3000, k=16)
    cpu = kmeans.weighted_kmeans(x, w, k=16, iters=10, init=c)
    got = kmeans.weighted_kmeans(x.to(device), w.to(device), k=16, iters=10, init=c.to(device))
    torch.testing.assert_close(got.centroids.cpu(), cpu.centroids, rtol=1e-6, atol=0)
    assert torch.equal(got.labels.cpu(), cpu.labels)
    torch.testing.assert_close(got.inertia.cpu(), cpu.inertia, rtol=1e-6, atol=0)
    if device != "cpu":  # a tensor on another device: our message
        with pytest.raises(RuntimeError, match="expected weight as given to kmeans1d_sort"):
            ops.gwk_lloyd_step_sorted(ops.kmeans1d_sort(x.to(device), w.to(device)), w, c.to(device))


@pytest.mark.parametrize("algorithm", ["lloyd", "sorted"])
def test_nan_padding_never_moves_a_centroid(algorithm):
    x, w, c = _problems("random", B=2, N=300, k=4)
    padded = x.clone()
    padded[1, 120:] = float("nan")
    got = kmeans.weighted_kmeans(padded, w, k=4, iters=10, init=c, lengths=[300, 120], algorithm=algorithm)
    alone = kmeans.weighted_kmeans(x[1, :120], w[1, :120], k=4, iters=10, init=c[1], algorithm=algorithm)
    torch.testing.assert_close(got.centroids[1], alone.centroids, rtol=1e-6, atol=0)
    assert torch.equal(got.labels[1, :120], alone.labels) and bool((got.labels[1, 120:] == -1).all())

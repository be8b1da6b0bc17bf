"""The k-means ops against the pure-PyTorch reference, weighted_kmeans against scikit-learn."""
import numpy as np
import pytest
import torch

from gwkcuda import ops, reference
from gwkcuda.kmeans import kmeanspp_init, stack_problems, weighted_kmeans

from .conftest import DEVICES, needs_cuda


N_ODD = 1009  # a prime: not a multiple of any tile, vector width or chunk


def problem(B, N, d, k, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, d, generator=gen, dtype=torch.float64)
    w = torch.rand(B, N, generator=gen, dtype=torch.float64)
    c = torch.stack([x[b, torch.randperm(N, generator=gen)[:k]] for b in range(B)])
    return x.to(dtype), w.to(dtype if dtype in (torch.float32, torch.float64) else torch.float32), c


def assert_close(actual, expected, rtol):
    actual, expected = actual.double().cpu(), expected.double().cpu()
    scale = expected.abs().max().clamp_min(1e-30)
    assert (actual - expected).abs().max() <= rtol * scale, (actual - expected).abs().max()


# --- the ops against the reference -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("B, d, k", [(1, 1, 2), (5, 2, 3), (7, 3, 5), (4, 4, 16), (1, 8, 256), (7, 1, 256), (2, 9, 7), (3, 16, 4)])
def test_ops_match_reference(device, dtype, B, d, k):
    x, w, c = problem(B, N_ODD, d, k, dtype)
    x, w, c = x.to(device), w.to(device), c.float().to(device)
    labels, sqdist = ops.kmeans_assign(x, c)
    ref_labels, ref_sqdist = reference.kmeans_assign(x.cpu(), c.cpu())
    assert labels.dtype == torch.int64 and torch.equal(labels.cpu(), ref_labels)
    assert_close(sqdist, ref_sqdist, 1e-5)

    sums, wsums = ops.cluster_reduce(x, w, labels, k)
    ref_sums, ref_wsums = reference.cluster_reduce(x.cpu(), w.cpu(), ref_labels, k)
    assert_close(sums, ref_sums, 1e-5)
    assert_close(wsums, ref_wsums, 1e-5)

    new, step_labels, cw, inertia = ops.gwk_lloyd_step(x, w, c)
    ref = reference.gwk_lloyd_step(x.cpu(), w.cpu(), c.cpu())
    assert torch.equal(step_labels.cpu(), ref[1])
    for got, want in [(new, ref[0]), (cw, ref[2]), (inertia, ref[3])]:
        assert_close(got, want, 1e-5)


def test_unweighted_reduce_counts_points(device):
    x, _, c = problem(2, N_ODD, 3, 5)
    labels, _ = ops.kmeans_assign(x.to(device), c.to(device))
    sums, counts = ops.cluster_reduce(x.to(device), None, labels, 5)
    assert torch.equal(counts.cpu(), torch.stack([torch.bincount(l, minlength=5) for l in labels.cpu()]).float())
    new, _, _, _ = ops.gwk_lloyd_step(x.to(device), None, c.to(device))
    assert_close(new, sums / counts[..., None], 1e-6)


def test_ties_go_to_the_lowest_index(device):
    x = torch.tensor([[[0.0], [1.0], [0.5]]], device=device)
    c = torch.tensor([[[1.0], [0.0], [0.0], [1.0]]], device=device)  # duplicates, and 0.5 equidistant
    labels, _ = ops.kmeans_assign(x, c)
    assert labels.tolist() == [[1, 0, 0]]


def test_zero_weight_cluster_keeps_its_centroid(device):
    x = torch.tensor([[[0.0], [0.1], [5.0]]], device=device)
    w = torch.tensor([[1.0, 1.0, 0.0]], device=device)
    c = torch.tensor([[[0.0], [5.0], [100.0]]], device=device)  # cluster 1: zero weight; 2: empty
    new, labels, cw, inertia = ops.gwk_lloyd_step(x, w, c)
    assert new[0, :, 0].tolist() == pytest.approx([0.05, 5.0, 100.0])
    assert cw.tolist() == [[2.0, 0.0, 0.0]]
    assert inertia.item() == pytest.approx(0.01)


@pytest.mark.parametrize("op", ["kmeans_assign", "cluster_reduce", "gwk_lloyd_step"])
def test_opcheck(device, op):
    x, w, c = problem(3, 101, 3, 5)
    x, w, c = x.to(device), w.to(device), c.to(device)
    labels, _ = ops.kmeans_assign(x, c)
    args = {"kmeans_assign": (x, c), "cluster_reduce": (x, w, labels, 5),
            "gwk_lloyd_step": (x, w, c)}[op]
    torch.library.opcheck(getattr(torch.ops.gwkcuda, op).default, args)


@needs_cuda
@pytest.mark.parametrize("B, d, k", [(1, 1, 2), (7, 3, 5), (1, 8, 256), (7, 1, 256)])
def test_cpu_and_cuda_agree(B, d, k):
    x, w, c = problem(B, 20_011, d, k)
    cpu = ops.gwk_lloyd_step(x, w, c)
    gpu = ops.gwk_lloyd_step(x.cuda(), w.cuda(), c.cuda())
    assert torch.equal(cpu[1], gpu[1].cpu())
    for a, b in zip((cpu[0], cpu[2], cpu[3]), (gpu[0], gpu[2], gpu[3])):
        assert_close(b, a, 1e-5)
    r_cpu = weighted_kmeans(x, w, k=k, iters=5, tol=0.0, init=c)
    r_gpu = weighted_kmeans(x.cuda(), w.cuda(), k=k, iters=5, tol=0.0, init=c.cuda())
    assert_close(r_gpu.centroids, r_cpu.centroids, 1e-5)


def test_sorted_cluster_sums_equal_the_cpu_kernels():
    """The CUDA ops' deterministic reduction (float64, sorted by label, segmented sums), run on the
    CPU against the CPU kernels' float64 accumulation, subnormal float32 weights included."""
    from gwkcuda import _C

    for dtype in (torch.float32, torch.float64):
        x, w, c = problem(5, 3001, 3, 17)
        x, w, c = x.to(dtype), w.to(dtype), c.to(dtype)
        w[2] *= 1e-40 if dtype == torch.float32 else 1e-300  # subnormal: kept, never flushed
        labels, _ = ops.kmeans_assign(x, c)
        sums, wsums = _C.cluster_sums_sorted(x, w, labels.to(torch.int32), 17)
        assert sums.dtype == wsums.dtype == torch.float64
        expected_sums, expected_wsums = ops.cluster_reduce(x, w, labels, 17)
        torch.testing.assert_close(sums.to(dtype), expected_sums, rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=0)
        torch.testing.assert_close(wsums.to(dtype), expected_wsums, rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=0)
        assert bool((wsums[2] > 0).all())  # the subnormal problem's clusters keep their weight
        unweighted = _C.cluster_sums_sorted(x, None, labels, 17)[1]
        assert torch.equal(unweighted, torch.stack([torch.bincount(l, minlength=17) for l in labels]).double())

    # Empty clusters anywhere (first, middle, last of a problem, and a whole problem's last ones):
    # their runs are empty and their sums zero.
    x, w, _ = problem(3, 40, 2, 6)
    labels = torch.tensor([2, 3, 5]).repeat(3, 14)[:, :40].contiguous()
    labels[1] = 1
    sums, wsums = _C.cluster_sums_sorted(x, w, labels, 6)
    expected_sums, expected_wsums = ops.cluster_reduce(x, w, labels, 6)
    torch.testing.assert_close(sums.float(), expected_sums, rtol=1e-6, atol=0)
    torch.testing.assert_close(wsums.float(), expected_wsums, rtol=1e-6, atol=0)
    assert torch.equal(wsums[0] > 0, torch.tensor([False, False, True, True, False, True]))
    assert torch.equal(wsums[1] > 0, torch.tensor([False, True, False, False, False, False]))


@needs_cuda
@pytest.mark.parametrize("dtype, d", [(torch.float32, 8), (torch.float32, 4), (torch.float64, 2)])
def test_cuda_assignment_reads_unaligned_rows_too(dtype, d):
    """Rows of 16 bytes are read 16 bytes per load only where the tensors are 16-byte aligned: the
    same points and centroids one element into a buffer (4 or 8 bytes off) give the same labels."""
    x, _, c = problem(3, N_ODD, d, 16, dtype)
    shifted_x = torch.empty(x.numel() + 1, dtype=dtype, device="cuda")[1:].view_as(x)
    shifted_c = torch.empty(c.numel() + 1, dtype=dtype, device="cuda")[1:].view_as(c)
    shifted_x.copy_(x)
    shifted_c.copy_(c)
    aligned = ops.kmeans_assign(x.cuda(), c.cuda())
    unaligned = ops.kmeans_assign(shifted_x, shifted_c)
    assert torch.equal(aligned[0], unaligned[0]) and torch.equal(aligned[1], unaligned[1])
    assert torch.equal(aligned[0].cpu(), ops.kmeans_assign(x, c)[0])


@needs_cuda
def test_cuda_kmeans_sums_are_deterministic_and_keep_subnormal_weights():
    x, w, c = problem(3, 50_000, 2, 64)
    w[1] *= 1e-40
    runs = [ops.gwk_lloyd_step(x.cuda(), w.cuda(), c.cuda()) for _ in range(2)]
    for a, b in zip(*runs):
        assert torch.equal(a, b)  # bit for bit, run to run
    cpu = ops.gwk_lloyd_step(x, w, c)
    assert torch.equal(runs[0][1].cpu(), cpu[1])
    for a, b in zip((runs[0][0], runs[0][2], runs[0][3]), (cpu[0], cpu[2], cpu[3])):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-6, atol=0)  # float64 sums on both: float rounding
    assert bool((runs[0][2][1] > 0).all())


# --- the CUDA one-block-per-problem step, its phases run on the CPU -------------------------------

BLOCK_SHAPES = [  # B, N, d, k, threads
    (3, N_ODD, 4, 16, 256),  # d at compile time; 16 runs of 64 points per cluster
    (2, N_ODD, 1, 256, 256),  # one run per cluster
    (2, 777, 9, 32, 256),  # d read at run time (the ResNet kernels' 3 x 3 sub-vectors)
    (2, 300, 2, 300, 64),  # more clusters than threads: each thread takes several
    (1, 5, 8, 2, 256),  # fewer points than runs: most runs empty
    (4, N_ODD, 3, 7, 33),  # an odd block: uneven runs, a partial last one
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B, N, d, k, threads", BLOCK_SHAPES)
def test_block_per_problem_step_equals_the_cpu_step(dtype, B, N, d, k, threads):
    """The phases the CUDA kernel runs for small problems (csrc/core/kmeans_block.h), each run for
    every thread index in turn, against the CPU op: the same labels, and centroids, cluster weights
    and inertia within float rounding (both sum in float64, in other orders)."""
    from gwkcuda import _C

    x, w, c = problem(B, N, d, k, dtype, seed=B + d)
    w[0, : N // 3] = 0  # weightless points count for nothing
    rtol = 1e-6 if dtype == torch.float32 else 1e-12
    for weight, int32_labels in ((w, True), (None, False)):
        expected = ops.gwk_lloyd_step(x, weight, c)
        new, labels, cluster_weight, inertia, _ = _C.lloyd_block_emulated(x, weight, c, threads, int32_labels)
        assert labels.dtype == (torch.int32 if int32_labels else torch.int64)
        assert torch.equal(labels.long(), expected[1])
        for got, want in zip((new, cluster_weight, inertia), (expected[0], expected[2], expected[3])):
            assert got.dtype == dtype
            torch.testing.assert_close(got, want, rtol=rtol, atol=0)


def test_block_per_problem_step_keeps_empty_clusters_and_follows_the_nan_rule():
    from gwkcuda import _C

    x, w, c = problem(2, 200, 3, 5)
    c[0, 1] = 1e6  # no point near: cluster 1 of problem 0 stays empty and keeps its centroid
    x[1, 7] = float("nan")  # every distance NaN: label 0, distance +inf (kmeans.h's rule)
    new, labels, cluster_weight, inertia, _ = _C.lloyd_block_emulated(x, w, c, 64, False)
    expected = ops.gwk_lloyd_step(x, w, c)
    assert torch.equal(labels, expected[1]) and labels[1, 7] == 0
    assert torch.equal(new[0, 1], c[0, 1]) and cluster_weight[0, 1] == 0
    assert torch.isinf(inertia[1]) and torch.isinf(expected[3][1])
    torch.testing.assert_close(new[0], expected[0][0], rtol=1e-6, atol=0)
    torch.testing.assert_close(inertia[0], expected[3][0], rtol=1e-6, atol=0)


@pytest.mark.parametrize("N, d, k, acc_bytes, threads", [(4096, 9, 32, 4, 256), (4096, 4, 16, 4, 256),
                                                        (1000, 8, 300, 8, 256), (5, 1, 2, 8, 256), (7, 3, 5, 4, 33)])
def test_block_shared_memory_is_as_counted(N, d, k, acc_bytes, threads):
    """The bytes a block asks for: runs x k x (d + 1) float64 partial sums, a float64 per thread,
    the centroids in the accumulation dtype, an int32 label per point (each rounded up to 16, so
    that the centroids can be read 16 bytes at a time). The
    largest ResNet-20 layer's problem (4096 sub-vectors of 9, k = 32) fits the 48 KiB default."""
    from gwkcuda import _C

    dtype = torch.float32 if acc_bytes == 4 else torch.float64
    x, _, c = problem(1, N, d, k, dtype)
    runs = max(1, threads // k)
    up16 = lambda n: (n + 15) // 16 * 16  # noqa: E731
    counted = up16(runs * k * (d + 1) * 8) + up16(threads * 8) + up16(k * d * acc_bytes) + up16(4 * N)
    assert _C.lloyd_block_emulated(x, None, c, threads, False)[4] == counted
    if (N, d, k) == (4096, 9, 32):
        assert counted == 40_064 <= 48 * 1024


@needs_cuda
@pytest.mark.parametrize("B, N, d, k, threads", [s for s in BLOCK_SHAPES if s[4] == 256])
def test_cuda_block_per_problem_step_equals_its_cpu_emulation(B, N, d, k, threads):
    """Where a GPU is: the kernel and its phases run on the CPU give the same labels, and results
    within float rounding (the GPU may fuse a multiply and an add); run to run, bit for bit."""
    from gwkcuda import _C

    x, w, c = problem(B, N, d, k)
    runs = [ops.gwk_lloyd_step(x.cuda(), w.cuda(), c.cuda()) for _ in range(2)]
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    new, labels, cluster_weight, inertia, _ = _C.lloyd_block_emulated(x, w, c, threads, False)
    assert torch.equal(runs[0][1].cpu(), labels)
    for got, want in zip((runs[0][0], runs[0][2], runs[0][3]), (new, cluster_weight, inertia)):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-5, atol=0)


# --- weighted_kmeans against scikit-learn ----------------------------------------------------------

@pytest.mark.parametrize("B", [1, 7])
@pytest.mark.parametrize("k", [2, 5, 256])
@pytest.mark.parametrize("d", [1, 3, 8])
def test_matches_sklearn(device, d, k, B):
    sklearn_cluster = pytest.importorskip("sklearn.cluster")  # the oracle only: the other tests run without it
    # Enough points per cluster that none empties: scikit-learn moves an empty cluster to a far
    # point, gwkcuda splits the heaviest one (both documented), so the runs agree only without.
    # float64: scikit-learn's distances (|x|^2 - 2 x.c + |c|^2) round differently from the direct
    # (x - c)^2 used here; in float32 a point within rounding of a cluster boundary can go either
    # way, which is a difference of arithmetic, not of algorithm.
    n = N_ODD if k < 256 else 20_011
    x, w, c = problem(B, n, d, k, dtype=torch.float64, seed=d * 1000 + k + B)
    result = weighted_kmeans(x.to(device), w.to(device), k=k, iters=10, tol=0.0, init=c.to(device))
    assert result.centroids.shape == (B, k, d) and result.labels.shape == (B, n)
    for b in range(B):
        km = sklearn_cluster.KMeans(n_clusters=k, init=c[b].numpy(), n_init=1, max_iter=10,
                                    algorithm="lloyd", tol=0.0)
        km.fit(x[b].numpy(), sample_weight=w[b].numpy())
        assert_close(result.centroids[b], torch.from_numpy(km.cluster_centers_), 1e-5)
        assert np.array_equal(result.labels[b].cpu().numpy(), km.labels_)
        assert result.inertia[b].item() == pytest.approx(km.inertia_, rel=1e-5)


def test_single_problem_shapes_and_sklearn_tolerance():
    sklearn_cluster = pytest.importorskip("sklearn.cluster")
    x, w, c = problem(1, N_ODD, 3, 5)
    result = weighted_kmeans(x[0], w[0], k=5, iters=300, tol=1e-4, init=c[0])
    km = sklearn_cluster.KMeans(n_clusters=5, init=c[0].numpy(), n_init=1, max_iter=300,
                                algorithm="lloyd", tol=1e-4).fit(x[0].numpy(), sample_weight=w[0].numpy())
    assert result.centroids.shape == (5, 3) and result.labels.shape == (N_ODD,)
    assert result.inertia.dim() == 0
    assert_close(result.centroids, torch.from_numpy(km.cluster_centers_), 1e-4)


def test_weights_pull_centroids():
    # Two points in one cluster: the centroid sits at their weighted mean.
    x = torch.tensor([[0.0], [1.0]])
    result = weighted_kmeans(x, torch.tensor([3.0, 1.0]), k=1, iters=5)
    assert result.centroids.item() == pytest.approx(0.25)


def test_kmeanspp_is_seeded_and_skips_zero_weights():
    x, w, _ = problem(3, 500, 2, 4)
    w[:, ::2] = 0
    a = kmeanspp_init(x, w, 16, seed=3)
    b = kmeanspp_init(x, w, 16, seed=3)
    assert torch.equal(a, b)
    for bb in range(3):
        chosen = (x[bb][None] == a[bb][:, None]).all(-1).nonzero()[:, 1]
        assert (chosen % 2 == 1).all()


def test_padded_problems_match_separate_runs():
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(n, 3, generator=gen) for n in (50, 173, 98)]
    ws = [torch.rand(n, generator=gen) for n in (50, 173, 98)]
    x, w, lengths = stack_problems(xs, ws)
    init = torch.stack([t[:4] for t in xs])
    batched = weighted_kmeans(x, w, k=4, iters=8, tol=0.0, init=init, lengths=lengths)
    for b, (xb, wb) in enumerate(zip(xs, ws)):
        alone = weighted_kmeans(xb, wb, k=4, iters=8, tol=0.0, init=init[b])
        assert_close(batched.centroids[b], alone.centroids, 1e-6)
        assert torch.equal(batched.labels[b, : len(xb)], alone.labels)
        assert (batched.labels[b, len(xb):] == -1).all()
        assert batched.inertia[b].item() == pytest.approx(alone.inertia.item(), rel=1e-6)


def test_empty_cluster_is_reseeded_by_splitting_deterministically():
    x = torch.cat([torch.zeros(10, 2), torch.ones(30, 2) + 0.01 * torch.randn(30, 2, generator=torch.Generator().manual_seed(1))])
    init = torch.tensor([[0.0, 0.0], [1.0, 1.0], [50.0, 50.0]])  # the third starts empty
    a = weighted_kmeans(x, k=3, iters=20, init=init, seed=5)
    b = weighted_kmeans(x, k=3, iters=20, init=init, seed=5)
    assert torch.equal(a.centroids, b.centroids)
    assert (a.centroids[:, 0] < 2).all(), "the empty cluster was not moved into the data"
    assert torch.bincount(a.labels, minlength=3).min() > 0


def test_all_zero_weights_fall_back_to_uniform():
    x, _, c = problem(2, 200, 2, 3)
    w = torch.rand(2, 200)
    w[1] = 0
    with pytest.warns(RuntimeWarning, match=r"every weight is zero in 1 problem\(s\) \[1\]"):
        result = weighted_kmeans(x, w, k=3, iters=5, tol=0.0, init=c)
    uniform = weighted_kmeans(x[1], None, k=3, iters=5, tol=0.0, init=c[1])
    assert_close(result.centroids[1], uniform.centroids, 1e-6)


# --- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [-0.5, float("nan"), float("inf")])
def test_bad_weight_is_refused(device, value):
    x, w, c = problem(2, 50, 2, 3)
    w[1, 17] = value
    x, w, c = x.to(device), w.to(device), c.to(device)
    with pytest.raises(ValueError, match=r"expected every weight finite and >= 0, got .* at weight\[1, 17\]"):
        weighted_kmeans(x, w, k=3)
    with pytest.raises(RuntimeError, match=r"expected every weight finite and >= 0, got .* at \[1, 17\]"):
        ops.gwk_lloyd_step(x, w, c)
    labels, _ = ops.kmeans_assign(x, c)
    with pytest.raises(RuntimeError, match=r"expected every weight finite and >= 0"):
        ops.cluster_reduce(x, w, labels, 3)


def test_a_step_told_its_weights_were_checked_skips_the_check_and_computes_the_same(device):
    x, w, c = (t.to(device) for t in problem(2, 300, 3, 5))
    checked = ops.gwk_lloyd_step(x, w, c)
    unchecked = ops.gwk_lloyd_step(x, w, c, check_weights=False)
    labels = torch.empty(2, 300, dtype=torch.int32, device=device)
    into = ops.gwk_lloyd_step(x, w, c, labels_out=labels, check_weights=False)
    for a, b, e in zip(checked, unchecked, into):
        assert torch.equal(a, b) and torch.equal(a, e.to(a.dtype))
    w[1, 17] = -0.5
    ops.gwk_lloyd_step(x, w, c, check_weights=False)  # the caller vouched: no error
    with pytest.raises(RuntimeError, match=r"expected every weight finite and >= 0"):
        ops.gwk_lloyd_step(x, w, c, labels_out=labels)


@needs_cuda
def test_cuda_lloyd_iterations_never_sync_with_the_host():
    """A Lloyd step that skips the weight check, as weighted_kmeans calls it, reads nothing back
    (the sorted cluster sums included), so it may run inside a CUDA graph."""
    x, w, c = (t.cuda() for t in problem(3, 5000, 4, 16))
    labels = torch.empty(3, 5000, dtype=torch.int32, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            c = ops.gwk_lloyd_step(x, w, c, labels_out=labels, check_weights=False)[0]
        ops.kmeans_assign(x, c)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_points_are_refused(value):
    x, w, _ = problem(1, 50, 2, 3)
    x[0, 7, 1] = value
    with pytest.raises(ValueError, match=r"expected finite points, got .* at x\[7, 1\]"):
        weighted_kmeans(x[0], w[0], k=3)


@pytest.mark.parametrize("k", [0, -1, 51, 2.5])
def test_bad_k_is_refused(k):
    x, _, _ = problem(1, 50, 2, 3)
    with pytest.raises(ValueError, match=r"expected k an int in 1..N = 1..50"):
        weighted_kmeans(x[0], k=k)


def test_shape_mismatches_are_refused(device):
    x, w, c = problem(2, 50, 3, 4)
    x, w, c = x.to(device), w.to(device), c.to(device)
    with pytest.raises(ValueError, match=r"expected weight of shape \[2, 50\]"):
        weighted_kmeans(x, w[:, :49], k=4)
    with pytest.raises(ValueError, match=r"expected init centroids of shape \[2, 4, 3\]"):
        weighted_kmeans(x, w, k=4, init=c[:, :, :2])
    with pytest.raises(ValueError, match=r"expected x of shape"):
        weighted_kmeans(x[0, 0], k=1)
    with pytest.raises(RuntimeError, match=r"expected centroids \[B, k, d\] to match x"):
        ops.kmeans_assign(x, c[:, :, :2])
    with pytest.raises(RuntimeError, match=r"expected weight of shape \[B, N\] = \[2, 50\]"):
        ops.gwk_lloyd_step(x, w[:1], c)
    with pytest.raises(RuntimeError, match=r"expected labels of shape \[B, N\] = \[2, 50\]"):
        ops.cluster_reduce(x, w, torch.zeros(2, 49, dtype=torch.int64, device=device), 4)
    with pytest.raises(RuntimeError, match=r"expected x of shape \[B, N, d\]"):
        ops.kmeans_assign(x[0], c[0])
    with pytest.raises(RuntimeError, match=r"expected at least one centroid"):
        ops.kmeans_assign(x, c[:, :0])


@pytest.mark.parametrize("bad", [-1, 4, 100])
def test_labels_out_of_range_are_refused(device, bad):
    x, w, _ = problem(2, 50, 3, 4)
    labels = torch.zeros(2, 50, dtype=torch.int64)
    labels[1, 9] = bad
    with pytest.raises(RuntimeError, match=rf"expected every label in \[0, 4\), got {bad} at \[1, 9\]"):
        ops.cluster_reduce(x.to(device), w.to(device), labels.to(device), 4)


def test_integer_points_are_refused():
    with pytest.raises(TypeError, match="expected floating-point x"):
        weighted_kmeans(torch.ones(5, 2, dtype=torch.int64), k=2)
    with pytest.raises(RuntimeError, match="expected x of a floating-point dtype"):
        ops.kmeans_assign(torch.ones(1, 5, 2, dtype=torch.int64), torch.ones(1, 2, 2))


@pytest.mark.parametrize("m", [1, 5])
@pytest.mark.parametrize("with_nearest", [False, True])
def test_sampling_across_slices_follows_the_probabilities(monkeypatch, with_nearest, m):
    """k-means++ draws in two stages (slice, then point); with slices of 8 points over 37 points
    the empirical frequencies match p = weight * nearest, and zero-probability points never come.
    With m draws per row (a batch of centroids, stratified), each point comes m * p / sum(p)
    times per row on average."""
    from gwkcuda import kmeans
    monkeypatch.setattr(kmeans, "_CHUNK", 8)
    gen = torch.Generator().manual_seed(0)
    p = torch.rand(37, generator=gen, dtype=torch.float64)
    p[[0, 7, 8, 20, 36]] = 0
    rows = 40000  # one draw per row, all rows alike
    weight = p.expand(rows, -1).contiguous()
    nearest = None
    if with_nearest:
        nearest = torch.rand(37, generator=gen, dtype=torch.float64) + 0.5
        p = p * nearest
        nearest = nearest.expand(rows, -1).contiguous()
    idx = kmeans._sample(weight, nearest, torch.Generator().manual_seed(1), m)
    assert idx.shape == (rows, m)
    freq = torch.bincount(idx.reshape(-1), minlength=37).double() / rows
    assert freq[p == 0].sum() == 0
    expected = m * p / p.sum()
    assert torch.allclose(freq, expected, atol=4 * (expected * (1 - expected / m) / rows).sqrt().max())


def test_sampling_falls_back_to_weight_when_every_distance_is_zero():
    from gwkcuda import kmeans
    weight = torch.tensor([[0.0, 1.0, 0.0, 0.0]]).expand(50, -1).contiguous()
    idx = kmeans._sample(weight, torch.zeros_like(weight), torch.Generator().manual_seed(0), 3)
    assert idx.shape == (50, 3) and (idx == 1).all()


@pytest.mark.parametrize("device", DEVICES)
def test_int32_labels_buffer_gives_the_same_clustering(device):
    """gwk_lloyd_step writes into an int32 buffer as into an int64 one, and weighted_kmeans with
    labels_dtype=torch.int32 (what streaming uses: half the memory) gives the same result."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 700, 3, generator=gen).to(device)
    w = torch.rand(2, 700, generator=gen).to(device)
    c = x[:, :9].clone()
    l64 = torch.empty(2, 700, dtype=torch.int64, device=device)
    l32 = torch.empty(2, 700, dtype=torch.int32, device=device)
    a = ops.gwk_lloyd_step(x, w, c, labels_out=l64)
    b = ops.gwk_lloyd_step(x, w, c, labels_out=l32)
    assert torch.equal(l64, l32.long()) and torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
    r64 = weighted_kmeans(x, w, k=9, iters=8, lengths=[700, 650])
    r32 = weighted_kmeans(x, w, k=9, iters=8, lengths=[700, 650], labels_dtype=torch.int32)
    assert r32.labels.dtype == torch.int32 and torch.equal(r64.labels, r32.labels.long())
    assert torch.equal(r64.centroids, r32.centroids)
    with pytest.raises(RuntimeError, match="int64 or int32 labels buffer"):
        ops.gwk_lloyd_step(x, w, c, labels_out=torch.empty(2, 700, dtype=torch.int16, device=device))


@pytest.mark.parametrize("device", DEVICES)
def test_labels_buffer_sharing_memory_with_an_input_is_refused(device):
    """gwk_lloyd_step_into would write the labels over the points (or weights, or centroids)."""
    x = torch.randn(1, 8, 2, dtype=torch.float64, device=device)
    w = torch.rand(1, 8, dtype=torch.float64, device=device)
    c = x[:, :3].clone()
    for name, buffer in (("x", x.view(torch.int64)[..., 0]), ("weight", w.view(torch.int64))):
        if not buffer.is_contiguous():
            buffer = x.view(torch.int64).reshape(1, 16)[:, :8]
        before = x.clone(), w.clone()
        with pytest.raises(RuntimeError, match=f"shares memory with {name}"):
            ops.gwk_lloyd_step(x, w, c, labels_out=buffer)
        assert torch.equal(x, before[0]) and torch.equal(w, before[1])
    big = torch.zeros(1, 64, dtype=torch.int64, device=device)
    with pytest.raises(RuntimeError, match="shares memory with centroids"):
        ops.gwk_lloyd_step(x, w, big.view(torch.float64)[:, :6].reshape(1, 3, 2), labels_out=big[:, :8])

// Every op schema of the gwkcuda library, and the Python module that loads it.
// Backends (csrc/cpu, csrc/cuda) only add TORCH_LIBRARY_IMPL blocks; fake (meta) kernels and
// autograd formulas are registered from Python (gwkcuda/ops.py).
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/extension.h>
#include <torch/version.h>

#include <string>

#include "cluster_sums.h"
#include "kmeans_block_emulation.h"
#include "cpu/cpu_level.h"
#include "generated/build_config.h"

TORCH_LIBRARY(gwkcuda, m) {
  // Packs integer codes in [0, 2**nbits) (any shape, read flat) into an LSB-first uint8 bit stream
  // of ceil(numel*nbits/8) bytes; nbits in 1..16. Layout: csrc/core/bitpack.h.
  m.def("pack_bits(Tensor codes, int nbits) -> Tensor");
  // The inverse of pack_bits: the first `numel` codes of a packed stream, as int32 [numel].
  m.def("unpack_bits(Tensor packed, int nbits, int numel) -> Tensor");

  // k-means family; shapes: B independent problems, N points each, d-long points, k clusters.
  // float32/float64 x and centroids; float16/bfloat16 x accumulated in float32. Math: core/kmeans.h.
  //
  // Nearest centroid of every point: labels int64 [B, N] (ties to the lowest index) and the
  // squared distance to it, [B, N].
  m.def("kmeans_assign(Tensor x, Tensor centroids) -> (Tensor labels, Tensor sqdist)");
  // Weighted segment sum: sums[b, j] = sum of weight * x over the points labelled j, and
  // weight_sums[b, j] = sum of their weights (weight None: 1 each). The centroid update, plain
  // k-means and the codebook gradient of pq_linear all reduce through this one op.
  m.def("cluster_reduce(Tensor x, Tensor? weight, Tensor labels, int k) -> (Tensor sums, Tensor weight_sums)");
  // One fused gradient-weighted Lloyd iteration in one pass over x: assignment to `centroids`,
  // then the weighted mean of each cluster; a cluster with zero total weight keeps its centroid.
  // labels and inertia (sum of weight * squared distance, [B]) refer to the input centroids.
  // check_weights=False skips the weight check, for a caller that checked them once already: on
  // CUDA the check reads a flag back, one host sync per step (weighted_kmeans checks up front).
  m.def("gwk_lloyd_step(Tensor x, Tensor? weight, Tensor centroids, bool check_weights=True) -> (Tensor new_centroids, Tensor labels, Tensor cluster_weight, Tensor inertia)");
  // gwk_lloyd_step writing the labels into a caller's int64 [B, N] buffer: iterating with one
  // buffer avoids allocating (and page-faulting) B * N * 8 fresh bytes every iteration, which
  // costs as much as the arithmetic for scalar clustering (bench/bench_kmeans.py).
  m.def("gwk_lloyd_step_into(Tensor x, Tensor? weight, Tensor centroids, Tensor(a!) labels, bool check_weights=True) -> (Tensor new_centroids, Tensor cluster_weight, Tensor inertia)");

  // Product-quantised weights (layout in core/pq.h): W [N, K] as codes [N, K/d] (uint8 when
  // k <= 256, else int32) into codebook [G, k, d], the N rows in G equal groups.
  //
  // y [M, N] = x [M, K] @ W^T + bias, without materialising W for small M. x, codebook and bias
  // share one dtype (float32, float64, float16, bfloat16; accumulated in float32 or float64).
  m.def("pq_linear(Tensor x, Tensor codes, Tensor codebook, Tensor? bias) -> Tensor");
  // The dense W [N, K] (for convolutions, export and references), in the codebook's dtype.
  m.def("pq_decode(Tensor codes, Tensor codebook) -> Tensor");

  // Exact weighted 1-D k-means of B problems (x [B, N], weight [B, N] or None, k clusters):
  // the clustering of least weighted squared error, by dynamic programming over the sorted points
  // (math: core/kmeans1d.h) -> (centroids [B, k] ascending, labels int64 [B, N], inertia [B]).
  // lengths int64 [B] (optional): problem b is its first lengths[b] points, labels -1 after.
  // CPU only.
  m.def("kmeans1d_optimal(Tensor x, Tensor? weight, int k, Tensor? lengths=None) -> (Tensor centroids, "
        "Tensor labels, Tensor inertia)");

  // Lloyd's k-means of scalar points over points sorted once (math: core/kmeans1d_sorted.h): the
  // same iteration as gwk_lloyd_step at d = 1, in O(k log N) per problem after the sort.
  // kmeans1d_sort: x [B, N] (or [B, N, 1]) finite, weight [B, N] finite and >= 0, or None -> the
  // sorted state: xs [B, N] ascending, order int32 [B, N] (xs[b, t] = x[b, order[b, t]]), heads
  // [B, ceil(N / 16)] (xs[:, ::16]), prefix float64 [B, ceil(N / 16) + 1, 5] (block prefix sums),
  // shift float64 [B].
  m.def("kmeans1d_sort(Tensor x, Tensor? weight) -> (Tensor xs, Tensor order, Tensor heads, Tensor prefix, Tensor shift)");
  // One iteration from centroids [B, k, 1] (weight: the one given to kmeans1d_sort, in xs' dtype):
  // (new_centroids [B, k, 1], cluster_weight [B, k]), as gwk_lloyd_step gives them (the same
  // assignment rule; a cluster of zero weight keeps its centroid).
  m.def("gwk_lloyd_step_sorted(Tensor xs, Tensor order, Tensor heads, Tensor? weight, Tensor prefix, Tensor shift, "
        "Tensor centroids) -> (Tensor new_centroids, Tensor cluster_weight)");
  // The nearest of centroids [B, k, 1] for every point, written into labels (int64 or int32 [B, N],
  // by original point index); returns the inertia [B] (sum of weight * squared distance).
  m.def("kmeans1d_sorted_assign(Tensor xs, Tensor order, Tensor heads, Tensor? weight, Tensor centroids, "
        "Tensor(a!) labels) -> Tensor");

  // EWGS quantisation (gwkcuda/ewgs.py; math: core/ewgs.h) in one pass: q = round(clamp((x - lower)
  // / (upper - lower), 0, 1) * (levels - 1)) / (levels - 1), x's shape and dtype; lower, upper and
  // delta 0-d tensors, read on x's device (delta only by the backward).
  m.def("ewgs_quantize(Tensor x, Tensor lower, Tensor upper, int levels, Tensor delta) -> Tensor");
  // Its backward given grad = dL/dq: EWGS scaling by delta, then through the clamp and the bounds
  // -> (grad_x like x, grad_lower, grad_upper 0-d in the bounds' dtypes; sums in float64).
  m.def("ewgs_quantize_backward(Tensor grad, Tensor x, Tensor lower, Tensor upper, int levels, Tensor delta) "
        "-> (Tensor grad_x, Tensor grad_lower, Tensor grad_upper)");

  // Bin & Quant indices stored as canonical Huffman code words (gwkcuda/huffman.py): the first
  // `numel` symbols of `stream` (uint8) under the code given by its lengths per symbol (int64
  // [bins], 0 for unused symbols; a prefix code, lengths <= 48), as int32 [numel]. CPU only.
  m.def("huffman_decode(Tensor stream, Tensor code_lengths, int numel) -> Tensor");
}

// The k-means ops have no derivative (labels are discrete; a Lloyd step's centroids are not a
// gradient target): a backward through them raises "the derivative for 'gwkcuda::...' is not
// implemented" instead of finishing with the inputs' gradients silently left None. The fallback
// also covers gwk_lloyd_step_into, whose labels argument is written in place.
TORCH_LIBRARY_IMPL(gwkcuda, Autograd, m) {
  for (const char* op :
       {"kmeans_assign", "cluster_reduce", "gwk_lloyd_step", "gwk_lloyd_step_into", "kmeans1d_optimal",
        "kmeans1d_sort", "gwk_lloyd_step_sorted", "kmeans1d_sorted_assign"})
    m.impl(op, torch::autograd::autogradNotImplementedFallback());
}

namespace {
pybind11::dict build_info() {
  pybind11::dict info;
  info["torch_version"] = std::to_string(TORCH_VERSION_MAJOR) + "." +
                          std::to_string(TORCH_VERSION_MINOR) + "." +
                          std::to_string(TORCH_VERSION_PATCH);
#ifdef GWK_WITH_CUDA
  info["cuda_compiled"] = true;
#else
  info["cuda_compiled"] = false;
#endif
  info["cuda_archs"] = std::string(GWK_CUDA_ARCHS);
  return info;
}
}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "gwkcuda kernels; the ops live under torch.ops.gwkcuda";
  m.def("cluster_sums_sorted",
        [](const at::Tensor& x, const std::optional<at::Tensor>& weight, const at::Tensor& labels, int64_t k) {
          return gwk::cluster_sums_sorted(x, weight.value_or(at::Tensor()), labels, k);
        },
        "The CUDA k-means ops' deterministic float64 cluster sums (any device; for tests): "
        "(x [B, N, d], weight [B, N] or None, labels [B, N], k) -> (sums [B, k, d], weight sums [B, k]).",
        pybind11::arg("x"), pybind11::arg("weight"), pybind11::arg("labels"), pybind11::arg("k"));
  m.def("lloyd_block_emulated", &gwk::lloyd_block_emulated,
        "The CUDA one-block-per-problem Lloyd step (csrc/core/kmeans_block.h) run on the CPU, phase by "
        "phase, for tests: (x [B, N, d], weight [B, N] or None, centroids [B, k, d], threads, int32_labels) "
        "-> (new_centroids, labels, cluster_weight, inertia, shared-memory bytes per block).",
        pybind11::arg("x"), pybind11::arg("weight"), pybind11::arg("centroids"), pybind11::arg("threads") = 256,
        pybind11::arg("int32_labels") = false);
  m.def("cpu_level", [] { return std::string(gwk::cpu::level_name(gwk::cpu::level())); },
        "The x86-64 feature level the CPU loops run at: x86-64-v4, x86-64-v3 or baseline (the highest "
        "the CPU supports, capped by GWKCUDA_CPU_LEVEL).");
  m.def("build_info", &build_info,
        "Build facts: torch_version (built against), cuda_compiled (bool), cuda_archs (str).");
}

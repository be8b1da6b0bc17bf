// CUDA implementation of kmeans_assign, cluster_reduce and gwk_lloyd_step: one thread per point
// (grid-stride over all B * N points) for the assignment, the math of csrc/core/kmeans.h; the
// cluster sums in float64 and in one fixed order (csrc/cluster_sums.h: sorted by label, then a
// segmented sum), so results are deterministic, keep subnormal weights, and match the CPU's
// float64 accumulation to rounding; then one thread per centroid for the update, from the float64
// sums. cluster_reduce validates its labels and weights up front (one host sync each);
// gwk_lloyd_step validates its weights unless told they were checked (check_weights=False), and is
// then free of host syncs (its labels are its own). The caller's current stream throughout.
//
// Only ATen/c10 headers here, never torch/extension.h: it doubles the compile time of a .cu file.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <type_traits>

#include "../cluster_sums.h"
#include "../core/kmeans.h"
#include "../kmeans_checks.h"

namespace gwk {
namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t items) {
  const int64_t wanted = (items + kThreads - 1) / kThreads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(wanted, 65535 * 8)));
}

#define GWK_FOR_EACH_POINT(idx, total)                                                   \
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < (total); \
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x)

// label_t: int64_t, or int32_t for gwk_lloyd_step's half-size labels buffer. D > 0 is d at
// compile time: the point is read once into registers and the distance loop unrolls (D = 0: d
// read at run time, the point read through the cache). Every thread of a warp reads the same
// centroid at the same time, so the centroid loads are broadcasts.
template <typename acc_t, typename label_t, int D>
__global__ void assign_kernel(const acc_t* __restrict__ x, const acc_t* __restrict__ centroids,
                              int64_t N, int64_t total, int d_runtime, int64_t k,
                              label_t* __restrict__ labels, acc_t* __restrict__ sqdist) {
  GWK_FOR_EACH_POINT(p, total) {
    const int64_t b = p / N;
    acc_t best;
    int64_t label;
    if constexpr (D > 0) {
      acc_t point[D];
#pragma unroll
      for (int i = 0; i < D; ++i) point[i] = x[p * D + i];
      label = kmeans::nearest_centroid<acc_t>(point, centroids + b * k * D, k, D, &best);
    } else {
      label = kmeans::nearest_centroid<acc_t>(x + p * d_runtime, centroids + b * k * d_runtime, k,
                                              d_runtime, &best);
    }
    labels[p] = static_cast<label_t>(label);
    sqdist[p] = best;
  }
}

// Launches assign_kernel with d at compile time for the common point lengths.
template <typename acc_t, typename label_t>
void launch_assign(const acc_t* x, const acc_t* centroids, int64_t N, int64_t total, int d, int64_t k,
                   label_t* labels, acc_t* sqdist, cudaStream_t stream) {
  const auto launch = [&](auto d_constant) {
    assign_kernel<acc_t, label_t, decltype(d_constant)::value><<<blocks_for(total), kThreads, 0, stream>>>(
        x, centroids, N, total, d, k, labels, sqdist);
  };
  switch (d) {
    case 1: return launch(std::integral_constant<int, 1>());
    case 2: return launch(std::integral_constant<int, 2>());
    case 4: return launch(std::integral_constant<int, 4>());
    case 8: return launch(std::integral_constant<int, 8>());
    default: return launch(std::integral_constant<int, 0>());
  }
}

template <typename acc_t>
__global__ void update_kernel(const double* __restrict__ sums, const double* __restrict__ wsums,
                              const acc_t* __restrict__ old_centroids, int64_t total, int d,
                              acc_t* __restrict__ new_centroids) {
  GWK_FOR_EACH_POINT(bj, total) {
    kmeans::update_centroid(sums + bj * d, wsums[bj], old_centroids + bj * d, d,
                            new_centroids + bj * d);
  }
}

std::tuple<at::Tensor, at::Tensor> kmeans_assign_cuda(const at::Tensor& x_in, const at::Tensor& c_in) {
  const auto in = prepare_inputs("kmeans_assign", x_in, std::nullopt, &c_in, nullptr, 0);
  const c10::cuda::CUDAGuard guard(in.x.device());  // after the checks: a CPU input gets our message
  auto labels = at::empty({in.B, in.N}, in.x.options().dtype(at::kLong));
  auto sqdist = at::empty({in.B, in.N}, in.x.options());
  const int64_t total = in.B * in.N;
  if (total == 0) return {labels, sqdist};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(in.acc, "kmeans_assign_cuda", [&] {
    launch_assign<scalar_t, int64_t>(in.x.const_data_ptr<scalar_t>(), in.centroids.const_data_ptr<scalar_t>(),
                                     in.N, total, static_cast<int>(in.d), in.k,
                                     labels.mutable_data_ptr<int64_t>(), sqdist.mutable_data_ptr<scalar_t>(), stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {labels, sqdist};
}

std::tuple<at::Tensor, at::Tensor> cluster_reduce_cuda(const at::Tensor& x_in,
                                                       const std::optional<at::Tensor>& weight,
                                                       const at::Tensor& labels_in, int64_t k) {
  const auto in = prepare_inputs("cluster_reduce", x_in, weight, nullptr, &labels_in, k);
  const c10::cuda::CUDAGuard guard(in.x.device());  // after the checks: a CPU input gets our message
  check_label_values("cluster_reduce", in.labels, in.k);  // each check syncs once
  check_weight_values("cluster_reduce", in.weight);
  const auto totals = cluster_sums_sorted(in.x, in.weight, in.labels, in.k);
  return {std::get<0>(totals).to(in.acc), std::get<1>(totals).to(in.acc)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gwk_lloyd_step_into_cuda(
    const at::Tensor& x_in, const std::optional<at::Tensor>& weight, const at::Tensor& c_in,
    at::Tensor& labels, bool check_weights) {
  const auto in = prepare_inputs("gwk_lloyd_step", x_in, weight, &c_in, nullptr, 0);
  check_labels_out("gwk_lloyd_step", in, labels);
  const c10::cuda::CUDAGuard guard(in.x.device());  // after the checks: a CPU input gets our message
  if (check_weights) check_weight_values("gwk_lloyd_step", in.weight);  // the step's only host sync
  auto new_centroids = at::empty_like(in.centroids);
  const int64_t total = in.B * in.N;
  if (total == 0) {  // no points: every cluster keeps its centroid
    new_centroids.copy_(in.centroids);
    return {new_centroids, at::zeros({in.B, in.k}, in.x.options()), at::zeros({in.B}, in.x.options())};
  }
  auto sqdist = at::empty({in.B, in.N}, in.x.options());
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(in.acc, "gwk_lloyd_assign_cuda", [&] {
    const auto launch = [&](auto* lab) {
      launch_assign(in.x.const_data_ptr<scalar_t>(), in.centroids.const_data_ptr<scalar_t>(), in.N, total,
                    static_cast<int>(in.d), in.k, lab, sqdist.mutable_data_ptr<scalar_t>(), stream);
    };
    if (labels.scalar_type() == at::kInt) {
      launch(labels.mutable_data_ptr<int32_t>());
    } else {
      launch(labels.mutable_data_ptr<int64_t>());
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  const auto totals = cluster_sums_sorted(in.x, in.weight, labels, in.k);
  const at::Tensor& sums = std::get<0>(totals);
  const at::Tensor& wsums = std::get<1>(totals);
  const auto w = in.weight.defined() ? in.weight.to(at::kDouble)
                                     : at::ones({in.B, in.N}, sqdist.options().dtype(at::kDouble));
  const auto inertia = w.mul(sqdist.to(at::kDouble)).sum(1);
  const int64_t clusters = in.B * in.k;
  AT_DISPATCH_FLOATING_TYPES(in.acc, "gwk_lloyd_update_cuda", [&] {
    update_kernel<scalar_t><<<blocks_for(clusters), kThreads, 0, stream>>>(
        sums.const_data_ptr<double>(), wsums.const_data_ptr<double>(),
        in.centroids.const_data_ptr<scalar_t>(), clusters, static_cast<int>(in.d),
        new_centroids.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {new_centroids, wsums.to(in.acc), inertia.to(in.acc)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> gwk_lloyd_step_cuda(
    const at::Tensor& x, const std::optional<at::Tensor>& weight, const at::Tensor& centroids,
    bool check_weights) {
  auto labels = at::empty({x.size(0), x.dim() == 3 ? x.size(1) : 0}, x.options().dtype(at::kLong));
  auto [new_centroids, cluster_weight, inertia] =
      gwk_lloyd_step_into_cuda(x, weight, centroids, labels, check_weights);
  return {new_centroids, labels, cluster_weight, inertia};
}

}  // namespace

TORCH_LIBRARY_IMPL(gwkcuda, CUDA, m) {
  m.impl("kmeans_assign", &kmeans_assign_cuda);
  m.impl("cluster_reduce", &cluster_reduce_cuda);
  m.impl("gwk_lloyd_step", &gwk_lloyd_step_cuda);
  m.impl("gwk_lloyd_step_into", &gwk_lloyd_step_into_cuda);
}

}  // namespace gwk

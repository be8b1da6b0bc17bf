// CUDA implementation of the sorted scalar k-means ops, on the math of csrc/core/kmeans1d_sorted.h
// shared with the CPU: the points and the centroids are sorted by ATen's stable segmented sort
// (the order the CPU's stable sorts give), the block sums are one thread per block of 16 points
// and their prefix one thread per problem; a Lloyd step is one thread per problem (its k searches
// and k run sums, O(k log N)); the final assignment one thread per problem for the runs, then
// one per point. Deterministic: no atomics, fixed summation orders. The caller's current stream.
//
// Only ATen/c10 headers here, never torch/extension.h: it doubles the compile time of a .cu file.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/all.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/sort.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <type_traits>

#include "../core/kmeans1d_sorted.h"
#include "../kmeans_checks.h"
#include "../sorted1d.h"

namespace gwk {
namespace {

constexpr int kThreads = 128;

int grid_for(int64_t items) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((items + kThreads - 1) / kThreads, 65535 * 8)));
}

#define GWK_FOR_EACH(idx, total)                                                                  \
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < (total); \
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x)

template <typename acc_t>
__global__ void block_sums_kernel(const acc_t* __restrict__ xs, const acc_t* __restrict__ w,
                                  const int32_t* __restrict__ order, const double* __restrict__ shift, int64_t N,
                                  int64_t blocks, int64_t total, double* __restrict__ sums) {
  GWK_FOR_EACH(i, total) {
    const int64_t b = i / blocks;
    sorted1d::block_sums(xs + b * N, w != nullptr ? w + b * N : nullptr, order + b * N, N, shift[b], i % blocks,
                         sums + i * 3);
  }
}

__global__ void scan_kernel(const double* __restrict__ sums, int64_t B, int64_t blocks, double* __restrict__ prefix) {
  GWK_FOR_EACH(b, B) sorted1d::scan_blocks(sums + b * blocks * 3, blocks, prefix + b * (blocks + 1) * sorted1d::kFields);
}

template <typename acc_t>
__global__ void step_kernel(const acc_t* __restrict__ xs, const acc_t* __restrict__ w,
                            const int32_t* __restrict__ order, const acc_t* __restrict__ heads,
                            const double* __restrict__ prefix, const double* __restrict__ shift,
                            const acc_t* __restrict__ cs, const int64_t* __restrict__ ci,
                            const acc_t* __restrict__ old_c, int64_t B, int64_t N, int64_t k, int64_t* __restrict__ start,
                            acc_t* __restrict__ new_c, acc_t* __restrict__ cluster_weight) {
  const int64_t blocks = sorted1d::num_blocks(N);
  GWK_FOR_EACH(b, B) {
    sorted1d::lloyd_step(xs + b * N, w != nullptr ? w + b * N : nullptr, order + b * N, heads + b * blocks,
                         prefix + b * (blocks + 1) * sorted1d::kFields, N, shift[b], cs + b * k, ci + b * k, k,
                         old_c + b * k, start + b * (k + 1), new_c + b * k, cluster_weight + b * k);
  }
}

template <typename acc_t>
__global__ void runs_kernel(const acc_t* __restrict__ xs, const acc_t* __restrict__ heads, const acc_t* __restrict__ cs,
                            const int64_t* __restrict__ ci, int64_t B, int64_t N, int64_t k, int64_t* __restrict__ start) {
  const int64_t blocks = sorted1d::num_blocks(N);
  GWK_FOR_EACH(b, B) sorted1d::cluster_runs(xs + b * N, heads + b * blocks, N, cs + b * k, ci + b * k, k, start + b * (k + 1));
}

template <typename acc_t, typename label_t>
__global__ void label_kernel(const acc_t* __restrict__ xs, const acc_t* __restrict__ w,
                             const int32_t* __restrict__ order, const acc_t* __restrict__ cs,
                             const int64_t* __restrict__ ci, const int64_t* __restrict__ start, int64_t N, int64_t k,
                             int64_t total, label_t* __restrict__ labels, double* __restrict__ cost) {
  GWK_FOR_EACH(i, total) {
    const int64_t b = i / N, t = i % N;
    const int64_t* s = start + b * (k + 1);
    int64_t lo = 0, count = k;  // the last run p with s[p] <= t: the non-empty run holding t
    while (count > 0) {
      const int64_t half = count / 2;
      const bool after = s[lo + half + 1] <= t;
      lo = after ? lo + half + 1 : lo;
      count = after ? count - half - 1 : half;
    }
    const acc_t* c = cs + b * k;
    labels[b * N + order[i]] = static_cast<label_t>(ci[b * k + lo]);
    cost[i] = static_cast<double>(sorted1d::weight_of(w != nullptr ? w + b * N : nullptr, order + b * N, t)) *
              static_cast<double>(kmeans::add_squared_difference(acc_t(0), xs[i], c[lo]));
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> kmeans1d_sort_cuda(
    const at::Tensor& x_in, const std::optional<at::Tensor>& weight) {
  SortInputs in = prepare_sort(x_in, weight);
  const c10::cuda::CUDAGuard guard(in.x.device());  // after the checks: a CPU input gets our message
  if (!at::isfinite(in.x).all().item<bool>()) fail_bad_point(in.x);  // one host sync each, once per clustering
  check_weight_values("kmeans1d_sort", in.weight);
  auto [values, index] = at::sort(in.x, /*stable=*/true, /*dim=*/1, /*descending=*/false);
  in.xs.copy_(values);
  in.order.copy_(index);
  in.heads.copy_(in.xs.slice(1, 0, in.N, sorted1d::kBlock));
  in.shift.copy_(in.xs.select(1, in.N / 2));  // a value amid the data: no digits lost to an offset
  auto sums = at::empty({in.B, in.blocks, 3}, in.prefix.options());
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "kmeans1d_sort_cuda", [&] {
    const int64_t total = in.B * in.blocks;
    block_sums_kernel<scalar_t><<<grid_for(total), kThreads, 0, stream>>>(
        in.xs.const_data_ptr<scalar_t>(), in.weight.defined() ? in.weight.const_data_ptr<scalar_t>() : nullptr,
        in.order.const_data_ptr<int32_t>(), in.shift.const_data_ptr<double>(), in.N, in.blocks, total,
        sums.mutable_data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  scan_kernel<<<grid_for(in.B), kThreads, 0, stream>>>(sums.const_data_ptr<double>(), in.B, in.blocks,
                                                       in.prefix.mutable_data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {in.xs, in.order, in.heads, in.prefix, in.shift};
}

// Centroids [B, k] in ascending order, equal values by index (a stable sort, as on the CPU).
std::tuple<at::Tensor, at::Tensor> sorted_centroids(const at::Tensor& c) {
  auto [cs, ci] = at::sort(c, /*stable=*/true, /*dim=*/1, /*descending=*/false);
  return {cs.contiguous(), ci.contiguous()};
}

std::tuple<at::Tensor, at::Tensor> gwk_lloyd_step_sorted_cuda(const at::Tensor& xs, const at::Tensor& order,
                                                               const at::Tensor& heads,
                                                               const std::optional<at::Tensor>& weight,
                                                               const at::Tensor& prefix, const at::Tensor& shift,
                                                               const at::Tensor& centroids_in) {
  const at::Tensor c =
      check_sorted_state("gwk_lloyd_step_sorted", xs, order, heads, weight, &prefix, &shift, centroids_in);
  const c10::cuda::CUDAGuard guard(xs.device());
  const int64_t B = xs.size(0), N = xs.size(1), k = c.size(1);
  auto [cs, ci] = sorted_centroids(c);
  auto start = at::empty({B, k + 1}, ci.options());
  auto new_c = at::empty({B, k, 1}, c.options());
  auto cluster_weight = at::empty({B, k}, c.options());
  AT_DISPATCH_FLOATING_TYPES(xs.scalar_type(), "gwk_lloyd_step_sorted_cuda", [&] {
    step_kernel<scalar_t><<<grid_for(B), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        xs.const_data_ptr<scalar_t>(), weight.has_value() ? weight->const_data_ptr<scalar_t>() : nullptr,
        order.const_data_ptr<int32_t>(), heads.const_data_ptr<scalar_t>(), prefix.const_data_ptr<double>(),
        shift.const_data_ptr<double>(), cs.const_data_ptr<scalar_t>(), ci.const_data_ptr<int64_t>(),
        c.const_data_ptr<scalar_t>(), B, N, k, start.mutable_data_ptr<int64_t>(), new_c.mutable_data_ptr<scalar_t>(),
        cluster_weight.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {new_c, cluster_weight};
}

at::Tensor kmeans1d_sorted_assign_cuda(const at::Tensor& xs, const at::Tensor& order, const at::Tensor& heads,
                                       const std::optional<at::Tensor>& weight, const at::Tensor& centroids_in,
                                       at::Tensor& labels) {
  const at::Tensor c =
      check_sorted_state("kmeans1d_sorted_assign", xs, order, heads, weight, nullptr, nullptr, centroids_in);
  check_sorted_labels(xs, order, labels);
  const c10::cuda::CUDAGuard guard(xs.device());
  const int64_t B = xs.size(0), N = xs.size(1), k = c.size(1);
  auto [cs, ci] = sorted_centroids(c);
  auto start = at::empty({B, k + 1}, ci.options());
  auto cost = at::empty({B, N}, xs.options().dtype(at::kDouble));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(xs.scalar_type(), "kmeans1d_sorted_assign_cuda", [&] {
    runs_kernel<scalar_t><<<grid_for(B), kThreads, 0, stream>>>(
        xs.const_data_ptr<scalar_t>(), heads.const_data_ptr<scalar_t>(), cs.const_data_ptr<scalar_t>(),
        ci.const_data_ptr<int64_t>(), B, N, k, start.mutable_data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const auto launch = [&](auto* lab) {
      using label_t = std::remove_pointer_t<decltype(lab)>;
      label_kernel<scalar_t, label_t><<<grid_for(B * N), kThreads, 0, stream>>>(
          xs.const_data_ptr<scalar_t>(), weight.has_value() ? weight->const_data_ptr<scalar_t>() : nullptr,
          order.const_data_ptr<int32_t>(), cs.const_data_ptr<scalar_t>(), ci.const_data_ptr<int64_t>(),
          start.const_data_ptr<int64_t>(), N, k, B * N, lab, cost.mutable_data_ptr<double>());
    };
    with_label_pointer(labels, launch);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return cost.sum(1).to(xs.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(gwkcuda, CUDA, m) {
  m.impl("kmeans1d_sort", &kmeans1d_sort_cuda);
  m.impl("gwk_lloyd_step_sorted", &gwk_lloyd_step_sorted_cuda);
  m.impl("kmeans1d_sorted_assign", &kmeans1d_sorted_assign_cuda);
}

}  // namespace gwk

// CUDA implementation of kmeans_assign, cluster_reduce and gwk_lloyd_step, on the math of
// csrc/core/kmeans.h. Every cluster sum is in float64 and in one fixed order, so results are
// deterministic, keep subnormal weights, and match the CPU's float64 accumulation to rounding.
// - A Lloyd step of problems that fit a block's shared memory: one block per problem, the phases
//   of csrc/core/kmeans_block.h (assign, sum by runs of points, add the runs in order, update).
// - Otherwise, and for cluster_reduce: one thread per point (grid-stride over all B * N points)
//   for the assignment; the sums sorted by label, then a segmented sum (csrc/cluster_sums.h); then
//   one thread per centroid for the update.
// cluster_reduce validates its labels and weights up front (one host sync each); gwk_lloyd_step
// validates its weights unless told they were checked (check_weights=False), and is then free of
// host syncs (its labels are its own). The caller's current stream throughout.
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
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>

#include "../cluster_sums.h"
#include "../core/kmeans.h"
#include "../core/kmeans_block.h"
#include "../kmeans_checks.h"
#include "multiprocessors.h"

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

// Whether a kernel may read points and centroids of D coordinates as 16-byte vectors: the rows
// are a multiple of 16 bytes and the tensors start 16-byte aligned (checked at launch). A
// centroid then takes D / 4 (float) or D / 2 (double) loads instead of D: the loads, one per
// coordinate against two arithmetic instructions, otherwise bound the distance loop.
template <typename acc_t, int D>
constexpr bool rows_of_16_bytes = D > 0 && (D * sizeof(acc_t)) % 16 == 0;

inline bool aligned_16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// row[0:D] = src[0:D], 16 bytes per load (src 16-byte aligned; through the read-only cache when
// READ_ONLY, for global memory that the kernel does not write).
template <typename acc_t, int D, bool READ_ONLY>
__device__ __forceinline__ void load_row_16(const acc_t* src, acc_t* row) {
  using vec_t = std::conditional_t<std::is_same_v<acc_t, double>, double2, float4>;
  constexpr int per_vec = 16 / sizeof(acc_t);
  const vec_t* v = reinterpret_cast<const vec_t*>(src);
#pragma unroll
  for (int q = 0; q < D / per_vec; ++q) {
    vec_t value;
    if constexpr (READ_ONLY) {
      value = __ldg(v + q);
    } else {
      value = v[q];
    }
    memcpy(row + q * per_vec, &value, sizeof(vec_t));
  }
}

// The nearest of centroids [k, D] to point[D] by kmeans::scan_nearest, each centroid loaded 16
// bytes at a time (when VEC; else coordinate by coordinate, as kmeans::nearest_centroid).
template <typename acc_t, int D, bool VEC, bool READ_ONLY>
__device__ __forceinline__ int64_t nearest_of_row(const acc_t* point, const acc_t* centroids, int64_t k,
                                                  acc_t* best) {
  if constexpr (VEC) {
    return kmeans::scan_nearest<acc_t>(
        k,
        [&](int64_t j) {
          acc_t c[D];
          load_row_16<acc_t, D, READ_ONLY>(centroids + j * D, c);
          return kmeans::squared_distance<acc_t>(point, c, D);
        },
        best);
  } else {
    return kmeans::nearest_centroid<acc_t>(point, centroids, k, D, best);
  }
}

// nearest_of_row as the functor the block kernel's assign phase takes (centroids in shared memory).
template <typename acc_t, int D>
struct NearestByRows {
  __device__ __forceinline__ int64_t operator()(const acc_t* point, const acc_t* centroids, int64_t k,
                                                acc_t* best) const {
    return nearest_of_row<acc_t, D, rows_of_16_bytes<acc_t, D>, false>(point, centroids, k, best);
  }
};

// label_t: int64_t, or int32_t for gwk_lloyd_step's half-size labels buffer. D > 0 is d at
// compile time: the point is read once into registers and the distance loop unrolls (D = 0: d
// read at run time, the point read through the cache). Every thread of a warp reads the same
// centroid at the same time, so the centroid loads are broadcasts. VEC: rows_of_16_bytes, and
// both tensors 16-byte aligned.
template <typename acc_t, typename label_t, int D, bool VEC>
__global__ void assign_kernel(const acc_t* __restrict__ x, const acc_t* __restrict__ centroids,
                              int64_t N, int64_t total, int d_runtime, int64_t k,
                              label_t* __restrict__ labels, acc_t* __restrict__ sqdist) {
  GWK_FOR_EACH_POINT(p, total) {
    const int64_t b = p / N;
    acc_t best;
    int64_t label;
    if constexpr (D > 0) {
      acc_t point[D];
      if constexpr (VEC) {
        load_row_16<acc_t, D, true>(x + p * D, point);
      } else {
#pragma unroll
        for (int i = 0; i < D; ++i) point[i] = x[p * D + i];
      }
      label = nearest_of_row<acc_t, D, VEC, true>(point, centroids + b * k * D, k, &best);
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
  kmeans::with_point_length(d, [&](auto d_constant) {
    constexpr int D = decltype(d_constant)::value;
    const auto launch = [&](auto vec) {
      assign_kernel<acc_t, label_t, D, decltype(vec)::value><<<blocks_for(total), kThreads, 0, stream>>>(
          x, centroids, N, total, d, k, labels, sqdist);
    };
    if constexpr (rows_of_16_bytes<acc_t, D>) {
      if (aligned_16(x) && aligned_16(centroids)) return launch(std::true_type());
    }
    launch(std::false_type());
  });
}

// One Lloyd step of problem blockIdx.x by the block, every sum in shared memory: the phases of
// csrc/core/kmeans_block.h with a barrier between each two.
template <typename acc_t, typename label_t, int D>
__global__ void lloyd_block_kernel(const acc_t* __restrict__ x, const acc_t* __restrict__ weight,
                                   const acc_t* __restrict__ centroids, const kmeans::block::Layout L,
                                   label_t* __restrict__ labels, acc_t* __restrict__ new_centroids,
                                   acc_t* __restrict__ cluster_weight, acc_t* __restrict__ inertia) {
  extern __shared__ __align__(16) double shared[];  // every offset of the layout is 16-byte aligned
  namespace block = kmeans::block;
  const auto p = block::problem(L, blockIdx.x, shared, x, weight, centroids, labels, new_centroids,
                                cluster_weight, inertia);
#pragma unroll
  for (int phase = 0; phase < block::kPhases; ++phase) {
    if (phase > 0) __syncthreads();
    block::run_phase<acc_t, label_t, D>(phase, threadIdx.x, L, p, NearestByRows<acc_t, D>());
  }
}

constexpr int kBlockThreads = 256;
constexpr size_t kBlockSharedBytes = 48 * 1024;  // the default cap of dynamic shared memory

// One block per problem serves a step when the problem fits the block's shared memory (N up to
// about 10,000 points) and either the problems are enough to fill the device or each is small: at
// most 2^22 distance terms is about 30 us on one SM, about what the sort path's dozen launches
// cost (counted, not measured). Otherwise the sort path spreads the points over every SM.
bool block_per_problem_serves(const kmeans::block::Layout& L, int64_t B) {
  return L.bytes <= kBlockSharedBytes &&
         (B >= multiprocessor_count() || L.N * L.k * L.d <= (int64_t(1) << 22));
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
  auto stream = c10::cuda::getCurrentCUDAStream();
  const auto L = kmeans::block::layout(in.N, static_cast<int>(in.d), in.k, kBlockThreads,
                                       at::elementSize(in.acc));
  if (block_per_problem_serves(L, in.B)) {
    auto cluster_weight = at::empty({in.B, in.k}, in.x.options());
    auto inertia = at::empty({in.B}, in.x.options());
    AT_DISPATCH_FLOATING_TYPES(in.acc, "gwk_lloyd_block_cuda", [&] {
      const scalar_t* w = in.weight.defined() ? in.weight.const_data_ptr<scalar_t>() : nullptr;
      const auto launch = [&](auto* lab) {
        kmeans::with_point_length(static_cast<int>(in.d), [&](auto d_constant) {
          lloyd_block_kernel<scalar_t, std::remove_pointer_t<decltype(lab)>, decltype(d_constant)::value>
              <<<static_cast<unsigned>(in.B), kBlockThreads, L.bytes, stream>>>(
                  in.x.const_data_ptr<scalar_t>(), w, in.centroids.const_data_ptr<scalar_t>(), L, lab,
                  new_centroids.mutable_data_ptr<scalar_t>(), cluster_weight.mutable_data_ptr<scalar_t>(),
                  inertia.mutable_data_ptr<scalar_t>());
        });
      };
      with_label_pointer(labels, launch);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    return {new_centroids, cluster_weight, inertia};
  }
  auto sqdist = at::empty({in.B, in.N}, in.x.options());
  AT_DISPATCH_FLOATING_TYPES(in.acc, "gwk_lloyd_assign_cuda", [&] {
    const auto launch = [&](auto* lab) {
      launch_assign(in.x.const_data_ptr<scalar_t>(), in.centroids.const_data_ptr<scalar_t>(), in.N, total,
                    static_cast<int>(in.d), in.k, lab, sqdist.mutable_data_ptr<scalar_t>(), stream);
    };
    with_label_pointer(labels, launch);
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

// Host-side pieces of the sorted scalar k-means ops (kmeans1d_sort, gwk_lloyd_step_sorted,
// kmeans1d_sorted_assign) shared by the CPU and CUDA entry points: argument checks and the
// allocation of their outputs. The math is csrc/core/kmeans1d_sorted.h.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace gwk {

// The points of kmeans1d_sort after validation (shapes and dtypes; the values are checked by the
// kernels as they read them): x [B, N] contiguous in the accumulation dtype, weight likewise or
// undefined, and the outputs allocated.
struct SortInputs {
  at::Tensor x, weight;
  at::Tensor xs, order, heads, prefix, shift;  // outputs: [B, N], int32 [B, N], [B, blocks], float64 [B, blocks + 1, 5], float64 [B]
  int64_t B = 0, N = 0, blocks = 0;
};
SortInputs prepare_sort(const at::Tensor& x, const std::optional<at::Tensor>& weight);

// What a sorted op reads, checked against each other: the state kmeans1d_sort made (xs, order,
// heads, prefix and shift; prefix and shift may be null), the weight it was given (already in xs' dtype,
// contiguous; or none) and centroids [B, k, 1] (or [B, k]). Returns the centroids [B, k],
// contiguous in xs' dtype.
at::Tensor check_sorted_state(const char* op, const at::Tensor& xs, const at::Tensor& order, const at::Tensor& heads,
                              const std::optional<at::Tensor>& weight, const at::Tensor* prefix,
                              const at::Tensor* shift, const at::Tensor& centroids);

// A labels buffer for kmeans1d_sorted_assign: int64 or int32 [B, N], contiguous, on xs' device,
// sharing no memory with xs or order.
void check_sorted_labels(const at::Tensor& xs, const at::Tensor& order, const at::Tensor& labels);

// The kernels' findings, for the messages: a point that is not finite, a weight that is not
// finite and >= 0.
[[noreturn]] void fail_bad_point(const at::Tensor& x);
[[noreturn]] void fail_bad_weight(const at::Tensor& weight);

}  // namespace gwk

// Per-cluster weighted sums in float64, in one fixed order on every device: the deterministic
// reduction of the CUDA k-means ops (floating-point atomics would add in a different order on
// every run, and in float32). Built from ATen ops only, so the same code runs on the CPU, where it
// is tested against the CPU kernels.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace gwk {

// x [B, N, d] floating point; weight [B, N] (undefined: 1 each); labels [B, N] int32/int64, each
// in [0, k) (validated by the caller). The points are sorted stably by (problem, label) and each
// cluster's run (found by binary search) is summed by a segmented reduction, every sum in float64.
// Nothing is read back to the host: no sync, so it may run inside a CUDA graph.
// Returns (sums [B, k, d] of weight * x, weight sums [B, k]), float64, on x's device.
std::tuple<at::Tensor, at::Tensor> cluster_sums_sorted(const at::Tensor& x, const at::Tensor& weight,
                                                       const at::Tensor& labels, int64_t k);

}  // namespace gwk

// The CUDA one-block-per-problem Lloyd step (csrc/core/kmeans_block.h) run on the host, each phase
// for every thread index in turn: for tests, which check on the CPU the very phases the kernel
// runs, and compare a GPU's results with it where a GPU is.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace gwk {

// x [B, N, d], weight [B, N] or None, centroids [B, k, d], as gwk_lloyd_step takes them; threads:
// the block size to emulate; int32_labels: the labels buffer's dtype (else int64).
// Returns (new_centroids, labels, cluster_weight, inertia), as gwk_lloyd_step does, plus the bytes of
// shared memory a block would use.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, int64_t> lloyd_block_emulated(
    const at::Tensor& x, const std::optional<at::Tensor>& weight, const at::Tensor& centroids, int64_t threads,
    bool int32_labels);

}  // namespace gwk

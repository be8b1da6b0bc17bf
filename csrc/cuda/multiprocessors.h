// The current device's streaming-multiprocessor count, asked of the driver once per device: the
// kernels size their grids to what the device holds at once.
#pragma once

#include <c10/cuda/CUDAException.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>

namespace gwk {

inline int multiprocessor_count() {
  static std::atomic<int> count_of[64];  // per device (0: not asked yet)
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  int count = device < 64 ? count_of[device].load(std::memory_order_relaxed) : 0;
  if (count == 0) {
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
    count = std::max(count, 1);
    if (device < 64) count_of[device].store(count, std::memory_order_relaxed);
  }
  return count;
}

}  // namespace gwk

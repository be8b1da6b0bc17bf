// Portability pieces of the torch-free math in csrc/core/: a macro so that the same function
// body compiles for the host (CPU loops) and the device (CUDA kernels), and the accumulate type.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define GWK_HOST_DEVICE __host__ __device__ __forceinline__
#else
// always_inline: the CPU loops are built once per x86-64 feature level (csrc/cpu/cpu_level.h),
// and GCC inlines across those targets only what must be inlined.
#define GWK_HOST_DEVICE inline __attribute__((always_inline))
#endif

#include <type_traits>

namespace gwk {
// The type a kernel accumulates a scalar_t in: double for double, else float (half and bfloat16
// inputs included), on every backend.
template <typename scalar_t>
using acc_type_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
}  // namespace gwk

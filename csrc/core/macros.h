// Portability macro for the torch-free math in csrc/core/: the same function body compiles for
// the host (CPU loops) and for the device (CUDA kernels).
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define GWK_HOST_DEVICE __host__ __device__ __forceinline__
#else
// always_inline: the CPU loops are built once per x86-64 feature level (csrc/cpu/cpu_level.h),
// and GCC inlines across those targets only what must be inlined.
#define GWK_HOST_DEVICE inline __attribute__((always_inline))
#endif

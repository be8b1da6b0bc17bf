// Portability macro for the torch-free math in csrc/core/: the same function body compiles for
// the host (CPU loops) and for the device (CUDA kernels).
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define GWK_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define GWK_HOST_DEVICE inline
#endif

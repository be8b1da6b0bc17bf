// CUDA implementation of ewgs_quantize / ewgs_quantize_backward (math: csrc/core/ewgs.h): one
// pass over x each way. The bounds and delta are read on the device (no host sync). The
// backward's sums over x are float64: each thread sums its elements in order, each block reduces
// its threads' sums in a fixed tree, and the blocks' sums are added by at::sum; the grid is a
// function of the size only, so the result does not depend on the GPU or on scheduling.
//
// Only ATen/c10 headers here, never torch/extension.h: it doubles the compile time of a .cu file.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/add.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/neg.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <type_traits>

#include "../core/ewgs.h"
#include "../ewgs_checks.h"

namespace gwk {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1024;

int blocks_for(int64_t n) {
  return static_cast<int>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

template <typename scalar_t, typename acc_t>
__global__ void forward_kernel(const scalar_t* __restrict__ x, const acc_t* __restrict__ bounds, int64_t n,
                               acc_t steps, scalar_t* __restrict__ q) {
  const acc_t lower = bounds[0], span = bounds[1] - bounds[0];
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    q[i] = static_cast<scalar_t>(ewgs::quantize(static_cast<acc_t>(x[i]), lower, span, steps));
}

// bounds = (lower, upper, delta); partial[block] = (sum of dL/dx, sum of the dL/dspan terms).
template <typename scalar_t, typename acc_t>
__global__ void backward_kernel(const scalar_t* __restrict__ g, const scalar_t* __restrict__ x,
                                const acc_t* __restrict__ bounds, int64_t n, acc_t steps,
                                scalar_t* __restrict__ gx, double* __restrict__ partial) {
  __shared__ double sums[2][kThreads];
  const acc_t lower = bounds[0], span = bounds[1] - bounds[0], delta = bounds[2];
  double sum_gx = 0, sum_dspan = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    acc_t dspan;
    const acc_t d = ewgs::backward(static_cast<acc_t>(g[i]), static_cast<acc_t>(x[i]), lower, span, steps, delta, &dspan);
    gx[i] = static_cast<scalar_t>(d);
    sum_gx += d;
    sum_dspan += dspan;
  }
  sums[0][threadIdx.x] = sum_gx;
  sums[1][threadIdx.x] = sum_dspan;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {  // a fixed tree
    if (threadIdx.x < half) {
      sums[0][threadIdx.x] += sums[0][threadIdx.x + half];
      sums[1][threadIdx.x] += sums[1][threadIdx.x + half];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    partial[2 * blockIdx.x] = sums[0][0];
    partial[2 * blockIdx.x + 1] = sums[1][0];
  }
}

// (lower, upper, delta) in acc_t on the device: a few tiny kernels, no sync.
at::Tensor bounds_on_device(const at::Tensor& lower, const at::Tensor& upper, const at::Tensor& delta,
                            at::ScalarType acc) {
  auto b = at::empty({3}, lower.options().dtype(acc));
  b.select(0, 0).copy_(lower);
  b.select(0, 1).copy_(upper);
  b.select(0, 2).copy_(delta);
  return b;
}

at::Tensor ewgs_quantize_cuda(const at::Tensor& x_in, const at::Tensor& lower, const at::Tensor& upper, int64_t levels,
                              const at::Tensor& delta) {
  check_ewgs_args("ewgs_quantize", x_in, lower, upper, levels, delta);
  const c10::cuda::CUDAGuard guard(x_in.device());  // after the checks: a CPU input gets our message
  const auto layout = ewgs_layout(x_in);
  const auto x = x_in.contiguous(layout);
  auto q = at::empty(x.sizes(), x.options().memory_format(layout));
  const int64_t n = x.numel();
  if (n == 0) return q;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "ewgs_quantize_cuda", [&] {
    using acc_t = acc_type_t<scalar_t>;
    const auto bounds = bounds_on_device(lower, upper, delta, c10::CppTypeToScalarType<acc_t>::value);
    forward_kernel<scalar_t, acc_t><<<blocks_for(n), kThreads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), bounds.const_data_ptr<acc_t>(), n, static_cast<acc_t>(levels - 1),
        q.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return q;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ewgs_quantize_backward_cuda(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                                           const at::Tensor& lower, const at::Tensor& upper,
                                                                           int64_t levels, const at::Tensor& delta) {
  check_ewgs_args("ewgs_quantize_backward", x_in, lower, upper, levels, delta, grad_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const auto layout = ewgs_layout(x_in);
  const auto x = x_in.contiguous(layout);
  const auto grad = grad_in.contiguous(layout);
  auto grad_x = at::empty(x.sizes(), x.options().memory_format(layout));
  const int64_t n = x.numel();
  const int blocks = blocks_for(n);
  // Every block writes its two sums; with no elements there is nothing to launch, and the sums are 0.
  auto partial = n > 0 ? at::empty({blocks, 2}, x.options().dtype(at::kDouble))
                       : at::zeros({blocks, 2}, x.options().dtype(at::kDouble));
  auto stream = c10::cuda::getCurrentCUDAStream();
  if (n > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "ewgs_quantize_backward_cuda", [&] {
      using acc_t = acc_type_t<scalar_t>;
      const auto bounds = bounds_on_device(lower, upper, delta, c10::CppTypeToScalarType<acc_t>::value);
      backward_kernel<scalar_t, acc_t><<<blocks, kThreads, 0, stream>>>(
          grad.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), bounds.const_data_ptr<acc_t>(), n,
          static_cast<acc_t>(levels - 1), grad_x.mutable_data_ptr<scalar_t>(), partial.mutable_data_ptr<double>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  const auto sums = at::sum(partial, 0);  // [sum dL/dx, sum dL/dspan], blocks added by ATen
  const auto dspan = sums.select(0, 1);
  auto grad_lower = at::neg(at::add(sums.select(0, 0), dspan)).to(lower.scalar_type());
  auto grad_upper = dspan.to(upper.scalar_type());
  return {grad_x, grad_lower, grad_upper};
}

}  // namespace

TORCH_LIBRARY_IMPL(gwkcuda, CUDA, m) {
  m.impl("ewgs_quantize", &ewgs_quantize_cuda);
  m.impl("ewgs_quantize_backward", &ewgs_quantize_backward_cuda);
}

}  // namespace gwk

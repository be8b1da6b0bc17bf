// CUDA implementation of pq_decode and pq_linear (csrc/core/pq.h).
//
// pq_linear for few input rows (M <= kMaxWarpRows): one warp per output row n; the lanes stride
// over the row's codes (coalesced byte loads), each lookup decodes a whole d-long codeword, its dot
// products with the M input sub-vectors accumulate in registers, and a warp reduction finishes
// the row. For more rows: decode W with pq_decode's kernel and multiply with cuBLAS.
//
// Codes are not range-checked per call here: reading a flag back would sync the host with the
// device on every call (one stall per layer per decoded token) and is illegal while a CUDA graph
// is captured. An out-of-range code reads codeword 0 (memory-safe); PQWeight and the PQ layers
// check their codes once, where they are built or loaded (gwkcuda.ops.check_pq_codes).
//
// Only ATen/c10 headers here, never torch/extension.h: it doubles the compile time of a .cu file.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/matmul.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>

#include "../core/pq.h"
#include "../pq_checks.h"

namespace gwk {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;
constexpr int kMaxWarpRows = 16;

int blocks_for(int64_t items, int per_block) {
  const int64_t wanted = (items + per_block - 1) / per_block;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(wanted, 65535 * 8)));
}

template <typename scalar_t, typename code_t>
__global__ void decode_kernel(const code_t* __restrict__ codes, const scalar_t* __restrict__ codebook,
                              int64_t N, int64_t S, int64_t k, int d, int64_t rows_per_group,
                              scalar_t* __restrict__ w) {
  const int64_t total = N * S;
  for (int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; p < total;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = p / S;
    int64_t c = static_cast<int64_t>(codes[p]);
    if (!pq::code_valid(c, k)) c = 0;
    pq::decode_subvector(codebook + pq::group_of_row(n, rows_per_group) * k * d, c, d, w + p * d);
  }
}

template <typename scalar_t, typename acc_t, typename code_t>
__global__ void lookup_kernel(const scalar_t* __restrict__ x, const code_t* __restrict__ codes,
                              const scalar_t* __restrict__ codebook, const scalar_t* __restrict__ bias,
                              int64_t M, int64_t N, int64_t S, int64_t k, int d,
                              int64_t rows_per_group, scalar_t* __restrict__ y) {
  const int lane = threadIdx.x % 32;
  const int64_t K = S * d;
  for (int64_t n = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + threadIdx.x / 32; n < N;
       n += static_cast<int64_t>(gridDim.x) * kWarpsPerBlock) {
    const scalar_t* group = codebook + pq::group_of_row(n, rows_per_group) * k * d;
    acc_t acc[kMaxWarpRows];
    for (int m = 0; m < kMaxWarpRows; ++m) acc[m] = 0;
    for (int64_t s = lane; s < S; s += 32) {
      int64_t c = static_cast<int64_t>(codes[n * S + s]);
      if (!pq::code_valid(c, k)) c = 0;
      const scalar_t* word = group + c * d;
      for (int m = 0; m < kMaxWarpRows; ++m) {
        if (m < M) acc[m] += pq::dot<acc_t>(x + m * K + s * d, word, d);
      }
    }
    for (int m = 0; m < kMaxWarpRows; ++m) {
      if (m >= M) break;
      acc_t v = acc[m];
      for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
      if (lane == 0) {
        if (bias != nullptr) v += static_cast<acc_t>(bias[n]);
        y[m * N + n] = static_cast<scalar_t>(v);
      }
    }
  }
}

template <typename scalar_t>
using acc_type_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

at::Tensor pq_decode_cuda(const at::Tensor& codes_in, const at::Tensor& codebook_in) {
  const PQShape s = check_pq_weight("pq_decode", codes_in, codebook_in);
  const c10::cuda::CUDAGuard guard(codebook_in.device());  // after the checks: a CPU input gets our message
  const auto codes = codes_in.contiguous();
  const auto codebook = codebook_in.contiguous();
  auto w = at::empty({s.N, s.K}, codebook.options());
  if (s.N * s.S == 0) return w;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, codebook.scalar_type(), "pq_decode_cuda", [&] {
    with_typed_codes(codes, [&](const auto* c) {
      using code_t = std::remove_cv_t<std::remove_pointer_t<decltype(c)>>;
      decode_kernel<scalar_t, code_t><<<blocks_for(s.N * s.S, kThreads), kThreads, 0, stream>>>(
          c, codebook.const_data_ptr<scalar_t>(), s.N, s.S, s.k, static_cast<int>(s.d),
          s.rows_per_group, w.mutable_data_ptr<scalar_t>());
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return w;
}

at::Tensor pq_linear_cuda(const at::Tensor& x_in, const at::Tensor& codes_in,
                          const at::Tensor& codebook_in, const std::optional<at::Tensor>& bias_in) {
  const PQShape s = check_pq_weight("pq_linear", codes_in, codebook_in);
  check_pq_linear(s, x_in, codebook_in, bias_in);
  const c10::cuda::CUDAGuard guard(x_in.device());  // after the checks: a CPU input gets our message
  const int64_t M = x_in.size(0);
  if (M > kMaxWarpRows) {
    auto y = at::matmul(x_in, pq_decode_cuda(codes_in, codebook_in).t());
    if (bias_in.has_value()) y.add_(*bias_in);
    return y;
  }
  const auto x = x_in.contiguous();
  const auto codes = codes_in.contiguous();
  const auto codebook = codebook_in.contiguous();
  const auto bias = bias_in.has_value() ? bias_in->contiguous() : at::Tensor();
  auto y = at::empty({M, s.N}, x.options());
  if (M == 0 || s.N == 0) return y;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pq_linear_cuda", [&] {
    using acc_t = acc_type_t<scalar_t>;
    const scalar_t* b = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
    const int blocks = blocks_for(s.N, kWarpsPerBlock);
    with_typed_codes(codes, [&](const auto* c) {
      using code_t = std::remove_cv_t<std::remove_pointer_t<decltype(c)>>;
      lookup_kernel<scalar_t, acc_t, code_t><<<blocks, kThreads, 0, stream>>>(
          x.const_data_ptr<scalar_t>(), c, codebook.const_data_ptr<scalar_t>(), b, M, s.N, s.S, s.k,
          static_cast<int>(s.d), s.rows_per_group, y.mutable_data_ptr<scalar_t>());
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(gwkcuda, CUDA, m) {
  m.impl("pq_decode", &pq_decode_cuda);
  m.impl("pq_linear", &pq_linear_cuda);
}

}  // namespace gwk

// CUDA implementation of pq_decode and pq_linear (csrc/core/pq.h).
//
// pq_linear for one input row, when the shape suits them: the lookup tables of pq_lut_cuda.cu.
// Otherwise, for few input rows (M <= kMaxWarpRows): one warp per output row n; the lanes stride
// over the row's codes (coalesced byte loads), each lookup decodes a whole d-long
// codeword (from shared memory when the group's codebook is staged there), its dot products with
// the M input sub-vectors accumulate in registers, and a warp reduction finishes the row. d and
// the row bound are template parameters for the common cases (lookup_kernel). For more rows:
// decode W with pq_decode's kernel and multiply with cuBLAS.
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

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../core/pq.h"
#include "../pq_checks.h"
#include "multiprocessors.h"
#include "pq_lut_cuda.h"

namespace gwk {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;
constexpr int kMaxWarpRows = 16;
constexpr int64_t kSharedCodebookBytes = 32 * 1024;  // under the 48 KiB a launch gets without opt-in
constexpr int64_t kStageMinRows = 4 * kWarpsPerBlock;  // rows that share a group, to pay for staging it

// Blocks that fit on the device at once (8 of 256 threads per SM): the grid-stride loops cover
// the rest, and each block stages a codebook group once for many tiles instead of once per tile.
int resident_blocks() { return 8 * multiprocessor_count(); }

// Row tiles of lookup_kernel: kWarpsPerBlock rows each; when staging, tiled within each codebook
// group so that no tile straddles two groups. One definition for the launch and the kernel.
GWK_HOST_DEVICE int64_t tiles_per_group(int64_t rows_per_group) {
  return (rows_per_group + kWarpsPerBlock - 1) / kWarpsPerBlock;
}
GWK_HOST_DEVICE int64_t lookup_tiles(int64_t N, int64_t rows_per_group, bool stage) {
  return stage ? (N / rows_per_group) * tiles_per_group(rows_per_group) : tiles_per_group(N);
}

// Calls fn(integral_constant D, integral_constant MR): D the sub-vector length when it is one of
// the common ones (0: read at run time), MR the row bound that covers M: 1 (a decoded token) or
// kMaxWarpRows. float64 is for reference checks, not speed: one generic instance.
template <typename scalar_t, typename Fn>
void with_lookup_shape(int d, int64_t M, const Fn& fn) {
  using std::integral_constant;
  const auto with_rows = [&](auto d_constant) {
    if constexpr (!std::is_same_v<scalar_t, double>) {
      if (M <= 1) return fn(d_constant, integral_constant<int, 1>());
    }
    fn(d_constant, integral_constant<int, kMaxWarpRows>());
  };
  if constexpr (std::is_same_v<scalar_t, double>) {
    with_rows(integral_constant<int, 0>());
  } else {
    switch (d) {
      case 4: return with_rows(integral_constant<int, 4>());
      case 8: return with_rows(integral_constant<int, 8>());
      case 9: return with_rows(integral_constant<int, 9>());
      case 16: return with_rows(integral_constant<int, 16>());
      default: return with_rows(integral_constant<int, 0>());
    }
  }
}

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

// y[m, n] for m < M <= MR, one warp per output row n. D > 0 is the sub-vector length at compile
// time (the lookups unroll; each codeword is read once into registers and reused for all M
// rows); D = 0 reads it at run time. With stage, the rows are tiled so that a block's 8 warps
// always share one codebook group, and the block copies that group's k x d codewords into shared
// memory once per group.
template <typename scalar_t, typename acc_t, typename code_t, int D, int MR>
__global__ void
lookup_kernel(const scalar_t* __restrict__ x, const code_t* __restrict__ codes,
              const scalar_t* __restrict__ codebook, const scalar_t* __restrict__ bias, int64_t M,
              int64_t N, int64_t S, int64_t k, int d_runtime, int64_t rows_per_group, bool stage,
              scalar_t* __restrict__ y) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  scalar_t* staged = reinterpret_cast<scalar_t*>(shared_bytes);
  const int d = D > 0 ? D : d_runtime;
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int64_t K = S * d;
  const int64_t group_tiles = tiles_per_group(rows_per_group);
  const int64_t tiles = lookup_tiles(N, rows_per_group, stage);
  int64_t staged_group = -1;
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {  // t, and so every branch below
    int64_t n, row_end;                                        // up to the row test, is block-uniform
    const scalar_t* words;
    if (stage) {
      const int64_t g = t / group_tiles;
      n = g * rows_per_group + (t % group_tiles) * kWarpsPerBlock + warp;
      row_end = (g + 1) * rows_per_group;
      if (g != staged_group) {
        __syncthreads();  // every warp is done with the previous group's codewords
        const scalar_t* group = codebook + g * k * d;
        for (int64_t i = threadIdx.x; i < k * d; i += blockDim.x) staged[i] = group[i];
        __syncthreads();
        staged_group = g;
      }
      words = staged;
    } else {
      n = t * kWarpsPerBlock + warp;
      row_end = N;
      words = codebook + pq::group_of_row(n < N ? n : 0, rows_per_group) * k * d;
    }
    if (n >= row_end) continue;  // warp-uniform; no barrier follows before the next tile's
    acc_t acc[MR];
#pragma unroll
    for (int m = 0; m < MR; ++m) acc[m] = 0;
    const auto add_code = [&](int64_t s, int64_t c) {
      if (!pq::code_valid(c, k)) c = 0;  // memory-safe; codes are checked where a weight is built
      const scalar_t* word = words + c * d;
      if constexpr (D > 0) {
        acc_t w[D];
#pragma unroll
        for (int i = 0; i < D; ++i) w[i] = static_cast<acc_t>(word[i]);
#pragma unroll
        for (int m = 0; m < MR; ++m) {
          if (m < M) acc[m] += pq::dot<acc_t>(x + m * K + s * D, w, D);
        }
      } else {
#pragma unroll
        for (int m = 0; m < MR; ++m) {
          if (m < M) acc[m] += pq::dot<acc_t>(x + m * K + s * d, word, d);
        }
      }
    };
    // Lane-consecutive positions: a warp reads 32 consecutive codes and, for each, a contiguous
    // run of x (32 sub-vectors), so both loads coalesce. (One 16-byte load of 16 codes per lane
    // would give each lane positions 16 apart, and its x reads would touch 32 cache lines.)
    const code_t* row = codes + n * S;
    for (int64_t s = lane; s < S; s += 32) add_code(s, static_cast<int64_t>(row[s]));
#pragma unroll
    for (int m = 0; m < MR; ++m) {
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
  if (pq_lut_serves(s, x, codes)) {
    pq_linear_lut_cuda(s, x, codes, codebook, bias, y);
    return y;
  }
  // Stage a group's codebook in shared memory when it fits and is shared by enough rows to pay
  // for the copy; otherwise the codewords are read through the caches.
  const int64_t codebook_bytes = s.k * s.d * static_cast<int64_t>(x.element_size());
  const bool stage = codebook_bytes <= kSharedCodebookBytes && s.rows_per_group >= kStageMinRows;
  const int64_t tiles = lookup_tiles(s.N, s.rows_per_group, stage);
  const int blocks = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(tiles, resident_blocks())));
  const size_t shared = stage ? static_cast<size_t>(codebook_bytes) : 0;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pq_linear_cuda", [&] {
    using acc_t = acc_type_t<scalar_t>;
    const scalar_t* b = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
    with_typed_codes(codes, [&](const auto* c) {
      using code_t = std::remove_cv_t<std::remove_pointer_t<decltype(c)>>;
      with_lookup_shape<scalar_t>(static_cast<int>(s.d), M, [&](auto d_constant, auto rows_constant) {
        lookup_kernel<scalar_t, acc_t, code_t, decltype(d_constant)::value, decltype(rows_constant)::value>
            <<<blocks, kThreads, shared, stream>>>(
                x.const_data_ptr<scalar_t>(), c, codebook.const_data_ptr<scalar_t>(), b, M, s.N, s.S,
                s.k, static_cast<int>(s.d), s.rows_per_group, stage,
                y.mutable_data_ptr<scalar_t>());
      });
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

// pq_linear for one input row (a decoded token) on CUDA through lookup tables, as the CPU does it
// (cpu/pq.cpp): build_lut_kernel computes lut[g, s, j] = <x[s*d:(s+1)*d], codeword j of group g>
// (pq::dot of csrc/core/pq.h), G * S * k float32 entries, and lut_gather_kernel sums for each row
// n the S entries its codes pick. That is one 4-byte shared-memory load per code, where
// lookup_kernel (pq_cuda.cu) reads a d-long codeword from shared memory and a d-long x sub-vector
// through L1 (32 bytes at d = 8 in fp16).
//
// The gather: a block serves kBlockRows rows of one codebook group and one split of the
// positions. It stages the group's tables kTableBytes at a time in shared memory, and each thread
// sums kRowsPerThread rows, reading 16 codes with one 16-byte load. The splits' partial sums are
// added in a fixed order by lut_reduce_kernel, so the result does not depend on scheduling. Per
// code of a large layer (1 byte read from memory) the staging costs 4 * k / kBlockRows bytes of
// L2 reads (0.25 at k = 256) and the partial sums 8 / (positions per split) bytes.
//
// Counted, not measured (no GPU has run these kernels yet): 28672 x 8192, d = 8, k = 256, fp16 has
// 29.4 MB of codes, 6.8 us at 4.3 TB/s. Random codes put about 3.5 of a warp's 32 loads on its
// busiest bank, so shared memory serves about 9 lookups per clock per SM: about 12.5 us on 132 SMs
// at 1.98 GHz, about 55% of the byte floor, against about 28 us for lookup_kernel and at least
// 109 us for cuBLAS fp16 reading the dense 470 MB. kBlocksPerMultiprocessor and the table size are
// first guesses, to be tuned on a GPU.
#include "pq_lut_cuda.h"

#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../core/pq.h"
#include "multiprocessors.h"

namespace gwk {
namespace {

constexpr int kThreads = 512;
constexpr int kRowsPerThread = 8;
constexpr int64_t kBlockRows = int64_t{kThreads} * kRowsPerThread;
constexpr int kTableBytes = 16 * 1024;      // float32 table entries staged at a time
constexpr int kCodesPerLoad = 16;           // one 16-byte load of uint8 codes
constexpr int kBlocksPerMultiprocessor = 2;  // the gather's grid, in blocks per SM
constexpr int kBuildThreads = 256;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Positions whose tables (k float32 entries each) fit in kTableBytes, a multiple of
// kCodesPerLoad: 16 at k = 256, 256 at k = 16.
int64_t table_positions(int64_t k) {
  return std::max<int64_t>(kCodesPerLoad, kTableBytes / (4 * k) / kCodesPerLoad * kCodesPerLoad);
}

// lut[(g * S + s) * k + j] = <x[s*d:(s+1)*d], codebook[g, j, :]>, accumulated in float32.
template <typename scalar_t>
__global__ void build_lut_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ codebook,
                                 int64_t G, int64_t S, int64_t k, int d, float* __restrict__ lut) {
  const int64_t total = G * S * k;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t j = e % k, s = (e / k) % S, g = e / (k * S);
    lut[e] = pq::dot<float>(x + s * d, codebook + (g * k + j) * d, d);
  }
}

// The sum over `width` positions (a multiple of kCodesPerLoad) of table[position * k + code], the
// row's codes read 16 at a time; KC > 0 is k at compile time (0: k_runtime). An out-of-range code
// reads entry 0, memory-safe as in lookup_kernel (codes are checked where a weight is built).
//
// A warp's 32 lanes (32 rows) load the same position at once. At k = 16 one position's entries
// cover only 16 of the 32 banks, so odd lanes take each pair of positions in swapped order (one
// byte permute per 4 codes): every load then spans both positions of a pair, all 32 banks.
template <int KC>
__device__ __forceinline__ float sum_of_picked(const float* table, int k_runtime, const uint8_t* codes,
                                               int width) {
  const int k = KC > 0 ? KC : k_runtime;
  constexpr bool kSwapPairs = KC == 16;
  const int odd = kSwapPairs ? static_cast<int>(threadIdx.x & 1) : 0;
  const unsigned order = odd ? 0x2301u : 0x3210u;  // bytes 1 0 3 2, or as they are
  float part[4] = {0.f, 0.f, 0.f, 0.f};  // independent sums hide the add latency
#pragma unroll 1  // one 16-code body: at k = 256 a table holds 16 positions, so this runs once
  for (int q = 0; q < width; q += kCodesPerLoad) {
    const uint4 packed = __ldg(reinterpret_cast<const uint4*>(codes + q));
    uint32_t words[4] = {packed.x, packed.y, packed.z, packed.w};
    if constexpr (kSwapPairs) {
#pragma unroll
      for (int w = 0; w < 4; ++w) words[w] = __byte_perm(words[w], 0u, order);
    }
    // Byte i of words now holds position i ^ odd: i + odd for even i, (i - 1) + (1 - odd) for odd
    // i, so two per-lane bases keep every load's offset a constant.
    const float* even_base = table + (q + odd) * k;
    const float* odd_base = table + (q + 1 - odd) * k;
#pragma unroll
    for (int i = 0; i < kCodesPerLoad; ++i) {
      uint32_t c = (words[i / 4] >> (8 * (i % 4))) & 0xffu;
      if (KC != 256 && !pq::code_valid(c, k)) c = 0;
      part[i % 4] += i % 2 == 0 ? even_base[i * k + c] : odd_base[(i - 1) * k + c];
    }
  }
  return (part[0] + part[1]) + (part[2] + part[3]);
}

// Block (row chunk, split): rows [r0, r1) of group g, positions [p0, p1). With one split the
// block writes y (bias added); otherwise its partial sums, partial[split, n].
template <typename scalar_t, int KC>
__global__ void lut_gather_kernel(const float* __restrict__ lut, const uint8_t* __restrict__ codes,
                                  const scalar_t* __restrict__ bias, int64_t N, int64_t S, int k_runtime,
                                  int64_t rows_per_group, int64_t chunks_per_group, int64_t split_positions,
                                  int64_t table_positions, float* __restrict__ partial,
                                  scalar_t* __restrict__ y) {
  __shared__ float4 table4[kTableBytes / sizeof(float4)];
  const float* table = reinterpret_cast<const float*>(table4);
  const int k = KC > 0 ? KC : k_runtime;
  const int64_t g = blockIdx.x / chunks_per_group;
  const int64_t r0 = g * rows_per_group + (blockIdx.x % chunks_per_group) * kBlockRows;
  const int64_t r1 = std::min(r0 + kBlockRows, (g + 1) * rows_per_group);
  const int64_t p0 = blockIdx.y * split_positions;
  const int64_t p1 = std::min(p0 + split_positions, S);
  float acc[kRowsPerThread];
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) acc[r] = 0.f;
  for (int64_t p = p0; p < p1; p += table_positions) {  // block-uniform: the barriers are safe
    const int width = static_cast<int>(std::min(table_positions, p1 - p));
    // (g * S + p) * k is a multiple of 16 entries (S and p are multiples of 16): float4 copies.
    const float4* src = reinterpret_cast<const float4*>(lut + (g * S + p) * k);
    __syncthreads();  // every thread is done with the previous table
    for (int i = threadIdx.x; i < width * k / 4; i += kThreads) table4[i] = src[i];
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r) {
      const int64_t n = r0 + threadIdx.x + r * kThreads;
      if (n < r1) acc[r] += sum_of_picked<KC>(table, k, codes + n * S + p, width);
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) {
    const int64_t n = r0 + threadIdx.x + r * kThreads;
    if (n >= r1) continue;
    if (gridDim.y == 1) {
      y[n] = static_cast<scalar_t>(acc[r] + (bias != nullptr ? static_cast<float>(bias[n]) : 0.f));
    } else {
      partial[blockIdx.y * N + n] = acc[r];
    }
  }
}

// y[n] = the splits' partial sums added in split order, + bias[n].
template <typename scalar_t>
__global__ void lut_reduce_kernel(const float* __restrict__ partial, int64_t splits, int64_t N,
                                  const scalar_t* __restrict__ bias, scalar_t* __restrict__ y) {
  for (int64_t n = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; n < N;
       n += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = 0.f;
    for (int64_t j = 0; j < splits; ++j) v += partial[j * N + n];
    y[n] = static_cast<scalar_t>(v + (bias != nullptr ? static_cast<float>(bias[n]) : 0.f));
  }
}

int grid_for(int64_t items, int threads) {
  return static_cast<int>(std::clamp<int64_t>(ceil_div(items, threads), 1, 8 * int64_t{multiprocessor_count()}));
}

// Calls fn(integral_constant KC): k when it is 16 or 256 (the range check folds away at 256),
// else 0 (read at run time).
template <typename Fn>
void with_table_width(int64_t k, const Fn& fn) {
  using std::integral_constant;
  if (k == 256) return fn(integral_constant<int, 256>());
  if (k == 16) return fn(integral_constant<int, 16>());
  fn(integral_constant<int, 0>());
}

}  // namespace

bool pq_lut_serves(const PQShape& s, const at::Tensor& x, const at::Tensor& codes) {
  return x.size(0) == 1 && x.scalar_type() != at::kDouble && codes.scalar_type() == at::kByte &&
         s.k <= 256 && s.S > 0 && s.S % kCodesPerLoad == 0 &&
         reinterpret_cast<uintptr_t>(codes.const_data_ptr()) % 16 == 0 && s.rows_per_group >= 4 * s.k;
}

void pq_linear_lut_cuda(const PQShape& s, const at::Tensor& x, const at::Tensor& codes, const at::Tensor& codebook,
                        const at::Tensor& bias, at::Tensor& y) {
  const auto float_options = x.options().dtype(at::kFloat);
  auto lut = at::empty({s.G * s.S * s.k}, float_options);
  // Splits of the positions enough to give the device kBlocksPerMultiprocessor blocks per SM,
  // each a whole number of staged tables.
  const int64_t positions = table_positions(s.k);
  const int64_t chunks_per_group = ceil_div(s.rows_per_group, kBlockRows);
  const int64_t row_blocks = s.G * chunks_per_group;
  const int64_t tables = ceil_div(s.S, positions);
  const int64_t wanted = std::clamp<int64_t>(
      ceil_div(int64_t{kBlocksPerMultiprocessor} * multiprocessor_count(), row_blocks), 1,
      std::min<int64_t>(tables, 65535));
  const int64_t split_positions = ceil_div(tables, wanted) * positions;
  const int64_t splits = ceil_div(s.S, split_positions);
  auto partial = splits > 1 ? at::empty({splits, s.N}, float_options) : at::Tensor();
  auto stream = c10::cuda::getCurrentCUDAStream();
  const auto run = [&](auto type_hint) {
    using scalar_t = decltype(type_hint);
    const scalar_t* b = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* out = y.mutable_data_ptr<scalar_t>();
    build_lut_kernel<scalar_t><<<grid_for(lut.numel(), kBuildThreads), kBuildThreads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), codebook.const_data_ptr<scalar_t>(), s.G, s.S, s.k, static_cast<int>(s.d),
        lut.mutable_data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    with_table_width(s.k, [&](auto k_constant) {
      lut_gather_kernel<scalar_t, decltype(k_constant)::value>
          <<<dim3(static_cast<unsigned>(row_blocks), static_cast<unsigned>(splits)), kThreads, 0, stream>>>(
              lut.const_data_ptr<float>(), codes.const_data_ptr<uint8_t>(), b, s.N, s.S, static_cast<int>(s.k),
              s.rows_per_group, chunks_per_group, split_positions, positions,
              splits > 1 ? partial.mutable_data_ptr<float>() : nullptr, out);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (splits > 1) {
      lut_reduce_kernel<scalar_t><<<grid_for(s.N, kBuildThreads), kBuildThreads, 0, stream>>>(
          partial.const_data_ptr<float>(), splits, s.N, b, out);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  };
  switch (x.scalar_type()) {
    case at::kFloat: return run(float());
    case at::kHalf: return run(at::Half());
    case at::kBFloat16: return run(at::BFloat16());
    default: TORCH_CHECK(false, "pq_linear lookup tables: float32, float16 or bfloat16 inputs, got ", x.scalar_type());
  }
}

}  // namespace gwk

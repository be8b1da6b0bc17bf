// CUDA implementation of pack_bits / unpack_bits: one thread per 8-code group
// (csrc/core/bitpack.h), the code width a template parameter, grid-stride loops, the caller's
// current stream. unpack_bits never syncs with the host; pack_bits syncs once, to refuse codes
// that do not fit nbits (it runs when a file is written, never per step).
//
// Only ATen/c10 headers here, never torch/extension.h: it doubles the compile time of a .cu file.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "../checks.h"
#include "../core/bitpack.h"

namespace gwk {
namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t groups) {
  // Enough blocks to fill any current GPU; the grid-stride loop covers the rest.
  const int64_t wanted = (groups + kThreads - 1) / kThreads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(wanted, 65535)));
}

// kBits, the code width, is a template parameter: the core's group loops then fold into
// straight-line shifts (bitpack::with_constant_nbits picks the instance).
template <int kBits, typename T>
__global__ void pack_kernel(const T* __restrict__ codes, int64_t numel, uint8_t* __restrict__ packed,
                            int* __restrict__ bad_flag) {
  const int64_t groups = bitpack::num_groups(numel);
  bool ok = true;
  for (int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; g < groups;
       g += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    ok &= bitpack::pack_group(codes + g * bitpack::kCodesPerGroup, bitpack::group_count(g, numel),
                              kBits, packed + g * kBits);
  }
  if (!ok) atomicExch(bad_flag, 1);
}

// A full group's 8 codes leave as two 16-byte stores: the codes buffer is the op's own at::empty
// (aligned to far more than 16 bytes), so group g's 32 bytes at codes + 8 g are 16-byte aligned.
// The final, partial group is written code by code.
template <int kBits>
__global__ void unpack_kernel(const uint8_t* __restrict__ packed, int64_t numel, int32_t* __restrict__ codes) {
  const int64_t groups = bitpack::num_groups(numel);
  const int64_t full = numel / bitpack::kCodesPerGroup;
  for (int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; g < groups;
       g += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int32_t* out = codes + g * bitpack::kCodesPerGroup;
    if (g < full) {
      int32_t c[bitpack::kCodesPerGroup];
      bitpack::unpack_group(packed + g * kBits, bitpack::kCodesPerGroup, kBits, c);
      reinterpret_cast<int4*>(out)[0] = make_int4(c[0], c[1], c[2], c[3]);
      reinterpret_cast<int4*>(out)[1] = make_int4(c[4], c[5], c[6], c[7]);
    } else {
      bitpack::unpack_group(packed + g * kBits, bitpack::group_count(g, numel), kBits, out);
    }
  }
}

at::Tensor pack_bits_cuda(const at::Tensor& codes_in, int64_t nbits) {
  check_pack_args(codes_in, nbits);
  const c10::cuda::CUDAGuard guard(codes_in.device());
  const auto codes = codes_in.contiguous();
  const int64_t numel = codes.numel();
  auto packed = at::empty({bitpack::packed_bytes(numel, static_cast<int>(nbits))},
                          codes.options().dtype(at::kByte));
  const int64_t groups = bitpack::num_groups(numel);
  if (groups == 0) return packed;
  auto bad_flag = at::zeros({1}, codes.options().dtype(at::kInt));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_INTEGRAL_TYPES(codes.scalar_type(), "pack_bits_cuda", [&] {
    const bool dispatched = bitpack::with_constant_nbits(static_cast<int>(nbits), [&](auto bits_constant) {
      pack_kernel<decltype(bits_constant)::value, scalar_t><<<blocks_for(groups), kThreads, 0, stream>>>(
          codes.const_data_ptr<scalar_t>(), numel, packed.mutable_data_ptr<uint8_t>(),
          bad_flag.mutable_data_ptr<int>());
    });
    TORCH_INTERNAL_ASSERT(dispatched, "nbits out of range: ", nbits);  // check_pack_args refused it
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  // Reading the flag synchronises with the stream: the price of refusing bad codes rather than
  // silently truncating them.
  TORCH_CHECK(bad_flag.item<int>() == 0, describe_bad_code(codes, nbits));
  return packed;
}

at::Tensor unpack_bits_cuda(const at::Tensor& packed_in, int64_t nbits, int64_t numel) {
  check_unpack_args(packed_in, nbits, numel);
  const c10::cuda::CUDAGuard guard(packed_in.device());
  const auto packed = packed_in.contiguous();
  auto codes = at::empty({numel}, packed.options().dtype(at::kInt));
  const int64_t groups = bitpack::num_groups(numel);
  if (groups == 0) return codes;
  auto stream = c10::cuda::getCurrentCUDAStream();
  const bool dispatched = bitpack::with_constant_nbits(static_cast<int>(nbits), [&](auto bits_constant) {
    unpack_kernel<decltype(bits_constant)::value><<<blocks_for(groups), kThreads, 0, stream>>>(
        packed.const_data_ptr<uint8_t>(), numel, codes.mutable_data_ptr<int32_t>());
  });
  TORCH_INTERNAL_ASSERT(dispatched, "nbits out of range: ", nbits);  // check_unpack_args refused it
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return codes;
}

}  // namespace

TORCH_LIBRARY_IMPL(gwkcuda, CUDA, m) {
  m.impl("pack_bits", &pack_bits_cuda);
  m.impl("unpack_bits", &unpack_bits_cuda);
}

}  // namespace gwk

// CPU implementation of pack_bits / unpack_bits: parallel over 8-code groups (csrc/core/bitpack.h).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <type_traits>

#include "../checks.h"
#include "../core/bitpack.h"
#include "cpu_level.h"
#include "parallel.h"

namespace gwk {
namespace {

// Groups per parallel task: big enough to amortise scheduling, small enough to balance 2+ cores.
constexpr int64_t kGrainGroups = 1 << 14;

// The full groups [first, last) of a stream, at the CPU's level (cpu_level.h).
template <int bits, typename T>
struct PackGroups {
  template <int Level>
  static GWK_LOOP_BODY bool run(const T* src, uint8_t* dst, int64_t first, int64_t last) {
    bool ok = true;
    for (int64_t g = first; g < last; ++g)
      ok &= bitpack::pack_group(src + g * bitpack::kCodesPerGroup, bitpack::kCodesPerGroup, bits, dst + g * bits);
    return ok;
  }
};

template <int bits>
struct UnpackGroups {
  template <int Level>
  static GWK_LOOP_BODY void run(const uint8_t* src, int32_t* dst, int64_t first, int64_t last) {
    for (int64_t g = first; g < last; ++g)
      bitpack::unpack_group(src + g * bits, bitpack::kCodesPerGroup, bits, dst + g * bitpack::kCodesPerGroup);
  }
};

at::Tensor pack_bits_cpu(const at::Tensor& codes_in, int64_t nbits) {
  check_pack_args(codes_in, nbits);
  const auto codes = codes_in.contiguous();
  const int64_t numel = codes.numel();
  auto packed = at::empty({bitpack::packed_bytes(numel, static_cast<int>(nbits))},
                          codes.options().dtype(at::kByte));
  std::atomic<bool> all_ok{true};
  AT_DISPATCH_INTEGRAL_TYPES(codes.scalar_type(), "pack_bits_cpu", [&] {
    const scalar_t* src = codes.const_data_ptr<scalar_t>();
    uint8_t* dst = packed.mutable_data_ptr<uint8_t>();
    const int64_t full = numel / bitpack::kCodesPerGroup;
    const bool dispatched = bitpack::with_constant_nbits(static_cast<int>(nbits), [&](auto bits_constant) {
      constexpr int bits = decltype(bits_constant)::value;
      cpu::parallel_chunks(bitpack::num_groups(numel), kGrainGroups, [&](int64_t begin, int64_t end, int) {
        bool ok = cpu::Clones<PackGroups<bits, scalar_t>>::run(src, dst, begin, std::min(end, full));
        if (end > full) {  // the final, partial group
          ok &= bitpack::pack_group(src + full * bitpack::kCodesPerGroup,
                                    bitpack::group_count(full, numel), bits, dst + full * bits);
        }
        if (!ok) all_ok.store(false, std::memory_order_relaxed);
      });
    });
    TORCH_INTERNAL_ASSERT(dispatched, "nbits out of range: ", nbits);  // check_pack_args refused it
  });
  TORCH_CHECK(all_ok.load(), describe_bad_code(codes, nbits));
  return packed;
}

at::Tensor unpack_bits_cpu(const at::Tensor& packed_in, int64_t nbits, int64_t numel) {
  check_unpack_args(packed_in, nbits, numel);
  const auto packed = packed_in.contiguous();
  auto codes = at::empty({numel}, packed.options().dtype(at::kInt));
  const uint8_t* src = packed.const_data_ptr<uint8_t>();
  int32_t* dst = codes.mutable_data_ptr<int32_t>();
  const int64_t full = numel / bitpack::kCodesPerGroup;
  const bool dispatched = bitpack::with_constant_nbits(static_cast<int>(nbits), [&](auto bits_constant) {
    constexpr int bits = decltype(bits_constant)::value;
    cpu::parallel_chunks(bitpack::num_groups(numel), kGrainGroups, [&](int64_t begin, int64_t end, int) {
      cpu::Clones<UnpackGroups<bits>>::run(src, dst, begin, std::min(end, full));
      if (end > full) {
        bitpack::unpack_group(src + full * bits, bitpack::group_count(full, numel), bits,
                              dst + full * bitpack::kCodesPerGroup);
      }
    });
  });
  TORCH_INTERNAL_ASSERT(dispatched, "nbits out of range: ", nbits);  // check_unpack_args refused it
  return codes;
}

}  // namespace

TORCH_LIBRARY_IMPL(gwkcuda, CPU, m) {
  m.impl("pack_bits", &pack_bits_cpu);
  m.impl("unpack_bits", &unpack_bits_cpu);
}

}  // namespace gwk

// CPU implementation of pack_bits / unpack_bits: parallel over 8-code groups (csrc/core/bitpack.h).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>

#include "../checks.h"
#include "../core/bitpack.h"

namespace gwk {
namespace {

// Groups per parallel task: big enough to amortise scheduling, small enough to balance 2+ cores.
constexpr int64_t kGrainGroups = 1 << 14;

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
    const int bits = static_cast<int>(nbits);
    at::parallel_for(0, bitpack::num_groups(numel), kGrainGroups, [&](int64_t begin, int64_t end) {
      bool ok = true;
      for (int64_t g = begin; g < end; ++g) {
        ok &= bitpack::pack_group(src + g * bitpack::kCodesPerGroup, bitpack::group_count(g, numel),
                                  bits, dst + g * bits);
      }
      if (!ok) all_ok.store(false, std::memory_order_relaxed);
    });
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
  const int bits = static_cast<int>(nbits);
  at::parallel_for(0, bitpack::num_groups(numel), kGrainGroups, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      bitpack::unpack_group(src + g * bits, bitpack::group_count(g, numel), bits,
                            dst + g * bitpack::kCodesPerGroup);
    }
  });
  return codes;
}

}  // namespace

TORCH_LIBRARY_IMPL(gwkcuda, CPU, m) {
  m.impl("pack_bits", &pack_bits_cpu);
  m.impl("unpack_bits", &unpack_bits_cpu);
}

}  // namespace gwk

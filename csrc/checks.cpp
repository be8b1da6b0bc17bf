#include "checks.h"

#include <ATen/ATen.h>

#include <sstream>

#include "core/bitpack.h"

namespace gwk {

namespace {
void check_nbits(int64_t nbits, const char* op) {
  TORCH_CHECK(nbits >= 1 && nbits <= bitpack::kMaxBits, op, ": expected nbits in 1..",
              bitpack::kMaxBits, ", got ", nbits);
}
}  // namespace

std::string shape_of(const at::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

void check_pack_args(const at::Tensor& codes, int64_t nbits) {
  check_nbits(nbits, "pack_bits");
  // Exactly the types AT_DISPATCH_INTEGRAL_TYPES covers in both backends.
  const auto t = codes.scalar_type();
  TORCH_CHECK(t == at::kByte || t == at::kChar || t == at::kShort || t == at::kInt || t == at::kLong,
              "pack_bits: expected an integer codes tensor (uint8, int8, int16, int32 or int64), got ",
              t);
}

void check_unpack_args(const at::Tensor& packed, int64_t nbits, int64_t numel) {
  check_nbits(nbits, "unpack_bits");
  TORCH_CHECK(numel >= 0, "unpack_bits: expected numel >= 0, got ", numel);
  TORCH_CHECK(numel <= bitpack::max_codes(static_cast<int>(nbits)), "unpack_bits: expected numel <= ",
              bitpack::max_codes(static_cast<int>(nbits)), " for nbits=", nbits,
              " (numel * nbits must fit 64 bits), got ", numel);
  TORCH_CHECK(packed.scalar_type() == at::kByte,
              "unpack_bits: expected a uint8 packed buffer, got ", packed.scalar_type());
  const int64_t needed = bitpack::packed_bytes(numel, static_cast<int>(nbits));
  TORCH_CHECK(packed.numel() >= needed, "unpack_bits: ", numel, " codes of ", nbits,
              " bits need ", needed, " bytes, but the packed buffer holds ", packed.numel());
}

std::string describe_bad_code(const at::Tensor& codes, int64_t nbits) {
  const auto flat = codes.reshape({-1}).to(at::kLong);
  const auto bad = at::logical_or(flat.lt(0), flat.ge(int64_t{1} << nbits)).nonzero();
  std::ostringstream msg;
  msg << "pack_bits: expected every code in [0, " << (int64_t{1} << nbits) << ") for nbits="
      << nbits << ", got ";
  if (bad.numel() == 0) {
    msg << "an out-of-range code";
    return msg.str();
  }
  const int64_t index = bad[0][0].item<int64_t>();
  msg << flat[index].item<int64_t>() << " at flat index " << index << " (" << bad.size(0)
      << " codes out of range)";
  return msg.str();
}

}  // namespace gwk

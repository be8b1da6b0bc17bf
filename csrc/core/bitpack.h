// The bit layout of packed code streams: the one definition used by the CPU loops and the CUDA
// kernels of pack_bits / unpack_bits.
//
// Code i occupies stream bits [i*nbits, (i+1)*nbits), least significant bit first, where stream
// bit b is bit (b % 8) of byte (b / 8). Example, nbits = 3, codes c0..c7 (bits c0 = a2a1a0 ...):
//
//     byte 0:  c2[1] c2[0] c1[2] c1[1] c1[0] c0[2] c0[1] c0[0]     (bit 7 ... bit 0)
//     byte 1:  c5[0] c4[2] c4[1] c4[0] c3[2] c3[1] c3[0] c2[2]
//     byte 2:  c7[2] c7[1] c7[0] c6[2] c6[1] c6[0] c5[2] c5[1]
//
// Eight codes always fill exactly nbits bytes, so the stream splits into independent "groups"
// (codes [8g, 8g+8) <-> bytes [g*nbits, (g+1)*nbits)) that threads can pack and unpack with no
// shared bytes and no atomics. The final group may be partial; its unused high bits are zero.
#pragma once

#include <stdint.h>

#include <type_traits>

#include "macros.h"

namespace gwk {
namespace bitpack {

constexpr int kCodesPerGroup = 8;
constexpr int kMaxBits = 16;

// Bytes needed for `numel` codes of `nbits` bits: ceil(numel * nbits / 8), computed per 8-code
// group (a group fills exactly nbits bytes) so that no numel * nbits product can wrap int64.
GWK_HOST_DEVICE int64_t packed_bytes(int64_t numel, int nbits) {
  return (numel / 8) * nbits + ((numel % 8) * nbits + 7) / 8;
}

// The largest numel accepted: numel * nbits fits int64 (so every size computed from it does), a
// multiple of 8 codes.
GWK_HOST_DEVICE int64_t max_codes(int nbits) {
  return (INT64_MAX / nbits) / 8 * 8;
}

// Number of 8-code groups covering `numel` codes.
GWK_HOST_DEVICE int64_t num_groups(int64_t numel) {
  return (numel + kCodesPerGroup - 1) / kCodesPerGroup;
}

// True when `code` is a valid nbits-bit code, i.e. in [0, 2**nbits).
template <typename T>
GWK_HOST_DEVICE bool code_in_range(T code, int nbits) {
  const int64_t v = static_cast<int64_t>(code);
  return v >= 0 && v < (int64_t{1} << nbits);
}

// Packs `count` (1..8) codes into the first ceil(count*nbits/8) bytes of `out`.
// Returns false if any code is out of range (the bytes written are then meaningless).
template <typename T>
GWK_HOST_DEVICE bool pack_group(const T* codes, int count, int nbits, uint8_t* out) {
  uint32_t acc = 0;  // at most 7 pending bits + 16 new ones: fits in 32 bits
  int pending = 0;
  bool ok = true;
  int o = 0;
  for (int i = 0; i < count; ++i) {
    ok &= code_in_range(codes[i], nbits);
    const uint32_t mask = (uint32_t{1} << nbits) - 1u;
    acc |= (static_cast<uint32_t>(codes[i]) & mask) << pending;
    pending += nbits;
    while (pending >= 8) {
      out[o++] = static_cast<uint8_t>(acc & 0xFFu);
      acc >>= 8;
      pending -= 8;
    }
  }
  if (pending > 0) out[o] = static_cast<uint8_t>(acc & 0xFFu);
  return ok;
}

// Unpacks `count` (1..8) codes from the bytes of one group starting at `in`.
GWK_HOST_DEVICE void unpack_group(const uint8_t* in, int count, int nbits, int32_t* codes) {
  const uint32_t mask = (uint32_t{1} << nbits) - 1u;
  if (8 % nbits == 0) {  // nbits 1, 2, 4, 8: no code straddles a byte, each is one shift of its byte
    for (int i = 0; i < count; ++i) {
      const int bit = i * nbits;
      codes[i] = static_cast<int32_t>((static_cast<uint32_t>(in[bit >> 3]) >> (bit & 7)) & mask);
    }
    return;
  }
  uint32_t acc = 0;
  int available = 0;
  int b = 0;
  for (int i = 0; i < count; ++i) {
    while (available < nbits) {
      acc |= static_cast<uint32_t>(in[b++]) << available;
      available += 8;
    }
    codes[i] = static_cast<int32_t>(acc & mask);
    acc >>= nbits;
    available -= nbits;
  }
}

// The codes and bytes of group g out of a stream of `numel` codes.
GWK_HOST_DEVICE int group_count(int64_t g, int64_t numel) {
  const int64_t left = numel - g * kCodesPerGroup;
  return left < kCodesPerGroup ? static_cast<int>(left) : kCodesPerGroup;
}

// Calls fn(std::integral_constant<int, nbits>) so that the group loops see nbits as a compile-time
// constant: the shifts and byte boundaries above then fold into straight-line code (several times
// faster than the same loop with a run-time nbits). Host code; false for nbits outside [1, 16].
template <typename Fn>
bool with_constant_nbits(int nbits, const Fn& fn) {
  switch (nbits) {
#define GWK_NBITS_CASE(n) \
  case n:                 \
    fn(std::integral_constant<int, n>()); \
    return true;
    GWK_NBITS_CASE(1) GWK_NBITS_CASE(2) GWK_NBITS_CASE(3) GWK_NBITS_CASE(4)
    GWK_NBITS_CASE(5) GWK_NBITS_CASE(6) GWK_NBITS_CASE(7) GWK_NBITS_CASE(8)
    GWK_NBITS_CASE(9) GWK_NBITS_CASE(10) GWK_NBITS_CASE(11) GWK_NBITS_CASE(12)
    GWK_NBITS_CASE(13) GWK_NBITS_CASE(14) GWK_NBITS_CASE(15) GWK_NBITS_CASE(16)
#undef GWK_NBITS_CASE
    default:
      return false;
  }
}

}  // namespace bitpack
}  // namespace gwk

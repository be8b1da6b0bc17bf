// Input validation of the product-quantisation ops, shared by the CPU and CUDA entry points.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>

namespace gwk {

// The sizes of a PQ weight: W [N, K] as codes [N, S] into codebook [G, k, d], K = S * d.
struct PQShape {
  int64_t N = 0, S = 0, K = 0, G = 0, k = 0, d = 0, rows_per_group = 0;
};

// codes [N, S] uint8 or int32; codebook [G, k, d] floating point; N divisible by G; same device.
PQShape check_pq_weight(const char* op, const at::Tensor& codes, const at::Tensor& codebook);

// pq_linear's x [M, K] (K = S * d) and bias [N]: same dtype and device as the codebook.
void check_pq_linear(const PQShape& s, const at::Tensor& x, const at::Tensor& codebook,
                     const std::optional<at::Tensor>& bias);

// Calls fn(codes pointer) typed by the codes' dtype (const uint8_t* or const int32_t*), so each
// kernel is written and called once for both code types.
template <typename Fn>
auto with_typed_codes(const at::Tensor& codes, const Fn& fn) {
  if (codes.scalar_type() == at::kByte) return fn(codes.const_data_ptr<uint8_t>());
  return fn(codes.const_data_ptr<int32_t>());
}

// Called once a kernel has flagged a code >= k: the first offender.
std::string describe_bad_code_pq(const char* op, const at::Tensor& codes, int64_t k);

}  // namespace gwk

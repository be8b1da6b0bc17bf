#include "pq_checks.h"

#include <ATen/ATen.h>

#include <sstream>

#include "checks.h"

namespace gwk {

PQShape check_pq_weight(const char* op, const at::Tensor& codes, const at::Tensor& codebook) {
  TORCH_CHECK(codebook.dim() == 3, op, ": expected a codebook of shape [G, k, d], got ",
              shape_of(codebook));
  TORCH_CHECK(at::isFloatingType(codebook.scalar_type()), op,
              ": expected a floating-point codebook, got ", codebook.scalar_type());
  TORCH_CHECK(codes.dim() == 2, op, ": expected codes of shape [N, K/d], got ", shape_of(codes));
  TORCH_CHECK(codes.scalar_type() == at::kByte || codes.scalar_type() == at::kInt, op,
              ": expected uint8 codes (k <= 256) or int32 codes, got ", codes.scalar_type());
  TORCH_CHECK(codes.device() == codebook.device(), op, ": expected codes on the codebook's device ",
              codebook.device(), ", got ", codes.device());
  PQShape s;
  s.N = codes.size(0);
  s.S = codes.size(1);
  s.G = codebook.size(0);
  s.k = codebook.size(1);
  s.d = codebook.size(2);
  s.K = s.S * s.d;
  TORCH_CHECK(s.G >= 1 && s.k >= 1 && s.d >= 1, op, ": expected a non-empty codebook [G, k, d], got ",
              shape_of(codebook));
  TORCH_CHECK(s.N % s.G == 0, op, ": expected the N = ", s.N, " rows of codes to split into G = ",
              s.G, " equal groups, but N is not divisible by G");
  s.rows_per_group = s.G > 0 ? s.N / s.G : 0;
  return s;
}

void check_pq_linear(const PQShape& s, const at::Tensor& x, const at::Tensor& codebook,
                     const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(x.dim() == 2, "pq_linear: expected x of shape [M, K], got ", shape_of(x));
  TORCH_CHECK(x.size(1) == s.K, "pq_linear: expected x with K = ", s.K, " columns (codes [", s.N,
              ", ", s.S, "] of d = ", s.d, "-long sub-vectors), got ", shape_of(x),
              x.size(1) % s.d != 0 ? " (K is not divisible by d)" : "");
  TORCH_CHECK(x.scalar_type() == codebook.scalar_type(), "pq_linear: expected x of the codebook's "
              "dtype ", codebook.scalar_type(), ", got ", x.scalar_type());
  TORCH_CHECK(x.device() == codebook.device(), "pq_linear: expected x on the codebook's device ",
              codebook.device(), ", got ", x.device());
  if (bias.has_value()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == s.N, "pq_linear: expected bias of shape [",
                s.N, "], got ", shape_of(*bias));
    TORCH_CHECK(bias->scalar_type() == x.scalar_type() && bias->device() == x.device(),
                "pq_linear: expected bias of dtype ", x.scalar_type(), " on ", x.device(), ", got ",
                bias->scalar_type(), " on ", bias->device());
  }
}

std::string describe_bad_code_pq(const char* op, const at::Tensor& codes, int64_t k) {
  const auto c = codes.to(at::kLong);
  const auto where = at::logical_or(c.lt(0), c.ge(k)).nonzero();
  std::ostringstream msg;
  msg << op << ": expected every code in [0, " << k << ") (the codebook has k = " << k
      << " entries), got ";
  if (where.numel() == 0) return msg.str() + "a code out of range";
  const int64_t n = where[0][0].item<int64_t>(), s = where[0][1].item<int64_t>();
  msg << c[n][s].item<int64_t>() << " at codes[" << n << ", " << s << "]";
  return msg.str();
}

}  // namespace gwk

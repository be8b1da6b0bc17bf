// pq_linear for one input row on CUDA through lookup tables (pq_lut_cuda.cu).
#pragma once

#include <ATen/core/Tensor.h>

#include "../pq_checks.h"

namespace gwk {

// True when the lookup-table kernels serve pq_linear(x, codes, ...): one input row (M = 1), not
// float64, uint8 codes into k <= 256 codewords, S a multiple of 16 and the codes 16-byte aligned
// (rows are read 16 codes at a time), and at least 4 * k rows per codebook group (a group's
// tables cost as many bytes as 4 * k rows of codes).
bool pq_lut_serves(const PQShape& s, const at::Tensor& x, const at::Tensor& codes);

// y [1, N] = x [1, K] W^T (+ bias), W the PQ weight (codes [N, S], codebook [G, k, d]). Every
// tensor contiguous and on the current device, bias undefined or [N], pq_lut_serves true.
void pq_linear_lut_cuda(const PQShape& s, const at::Tensor& x, const at::Tensor& codes, const at::Tensor& codebook,
                        const at::Tensor& bias, at::Tensor& y);

}  // namespace gwk

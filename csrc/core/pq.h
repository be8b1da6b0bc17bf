// Product-quantised weights, defined once for the CPU loops and the CUDA kernels.
//
// A weight matrix W [N, K] is stored as codes [N, S] (S = K / d) into a codebook [G, k, d]: the N
// rows form G equal groups of R = N / G consecutive rows, each group with its own k codewords, and
//     W[n, s*d : (s+1)*d] = codebook[n / R, codes[n, s], :].
// So y = x W^T never needs W: for one input row x, the dot product of x's s-th sub-vector with
// every codeword of a group (a k-entry lookup table per position s) is shared by all R rows of the
// group, and y[n] is the sum over s of the table entries its codes pick.
#pragma once

#include <stdint.h>

#include "macros.h"

namespace gwk {
namespace pq {

// The codebook group of row n when groups hold rows_per_group rows each.
GWK_HOST_DEVICE int64_t group_of_row(int64_t n, int64_t rows_per_group) {
  return n / rows_per_group;
}

// True when a code addresses one of the k codewords.
template <typename code_t>
GWK_HOST_DEVICE bool code_valid(code_t code, int64_t k) {
  return static_cast<int64_t>(code) >= 0 && static_cast<int64_t>(code) < k;
}

// out[0:d] = codeword `code` of a group's codebook [k, d].
template <typename T>
GWK_HOST_DEVICE void decode_subvector(const T* group_codebook, int64_t code, int d, T* out) {
  const T* c = group_codebook + code * d;
  for (int i = 0; i < d; ++i) out[i] = c[i];
}

// The dot product of two d-long vectors, accumulated in acc_t in coordinate order.
template <typename acc_t, typename A, typename B>
GWK_HOST_DEVICE acc_t dot(const A* a, const B* b, int d) {
  acc_t s = 0;
  for (int i = 0; i < d; ++i) s += static_cast<acc_t>(a[i]) * static_cast<acc_t>(b[i]);
  return s;
}

}  // namespace pq
}  // namespace gwk

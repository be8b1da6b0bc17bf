// CPU implementation of pq_decode and pq_linear (csrc/core/pq.h).
//
// pq_linear chooses by shape. For few input rows (use_lookup_tables) it never builds W: per input
// row and group it computes the lookup table lut[s, j] = <x[s*d:(s+1)*d], codeword j>, S*k entries
// shared by the group's rows, then each output is a sum of S table entries picked by its codes
// (S loads instead of K multiply-adds, and codes are K*log2(k)/d bits instead of 32*K). For more
// rows it decodes tiles of W into cache and multiplies them with the BLAS.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <type_traits>

#include "../core/pq.h"
#include "../pq_checks.h"
#include "cpu_level.h"
#include "parallel.h"

namespace gwk {
namespace {

// Rows of W decoded per BLAS call: a tile of about kDecodeTileBytes stays in a core's cache
// between its decode and its multiply.
constexpr int64_t kDecodeTileBytes = 1 << 20;
int64_t decode_tile_rows(int64_t K, int64_t element_size) {
  return std::max<int64_t>(16, kDecodeTileBytes / (K * element_size));
}
constexpr int kPartialSums = 4;           // independent accumulators hide the add latency

// A table lookup costs about as much as d/4 multiply-adds of a memory-bound dense product on two
// cores (bench/bench_pq_linear.py): tables pay off for M <= d/4 input rows.
bool use_lookup_tables(int64_t M, int64_t d) {
  return M * 4 <= d;
}

// sum over s of lut[s*k + codes[s]]; sets *bad when a code is out of range (only checked when a
// code can exceed k: int32 codes, or uint8 codes with k < 256).
template <typename acc_t, typename code_t, bool kCheck>
GWK_LOOP_BODY acc_t gather_sum(const acc_t* __restrict__ lut, const code_t* __restrict__ codes, int64_t S,
                 int64_t k, bool* bad) {
  acc_t partial[kPartialSums] = {};
  bool any_bad = false;
  int64_t s = 0;
  for (; s + kPartialSums <= S; s += kPartialSums) {
    for (int t = 0; t < kPartialSums; ++t) {
      int64_t c = static_cast<int64_t>(codes[s + t]);
      if (kCheck) {
        const bool ok = pq::code_valid(c, k);
        any_bad |= !ok;
        c = ok ? c : 0;
      }
      partial[t] += lut[(s + t) * k + c];
    }
  }
  for (; s < S; ++s) {
    int64_t c = static_cast<int64_t>(codes[s]);
    if (kCheck) {
      const bool ok = pq::code_valid(c, k);
      any_bad |= !ok;
      c = ok ? c : 0;
    }
    partial[0] += lut[s * k + c];
  }
  if (any_bad) *bad = true;
  acc_t total = 0;
  for (int t = 0; t < kPartialSums; ++t) total += partial[t];
  return total;
}

// lut[s*k + j] = <x[s*d:(s+1)*d], codeword j> for one input row and one group; codebook_t is the
// group's codebook transposed to [d][k], so the inner loop runs over contiguous codewords.
template <typename acc_t>
GWK_LOOP_BODY void build_lut(const acc_t* x, const acc_t* codebook_t, int64_t S, int64_t k, int d, acc_t* lut) {
  for (int64_t s = 0; s < S; ++s) {
    acc_t* row = lut + s * k;
    for (int64_t j = 0; j < k; ++j) row[j] = acc_t(0);
    for (int i = 0; i < d; ++i) {
      const acc_t xi = x[s * d + i];
      const acc_t* ci = codebook_t + i * k;
      for (int64_t j = 0; j < k; ++j) row[j] += xi * ci[j];
    }
  }
}

// Outputs y[:, n0:n1] of the lookup-table path, at the CPU's level (cpu_level.h): the tables of
// each group the rows use are built into lut [M, S * k] (unless *built, the group lut holds, is
// that group already), then each output sums S entries. Returns true when a code was out of range.
template <typename acc_t, typename code_t>
struct LookupRows {
  template <int Level>
  static GWK_LOOP_BODY bool run(const PQShape* s, const acc_t* x, int64_t M, const code_t* codes,
                                const acc_t* codebook_t, const acc_t* bias, acc_t* y, int64_t n0, int64_t n1,
                                acc_t* lut, int64_t* built) {
    // uint8 codes cannot exceed a 256-entry codebook: skip the check in that common case.
    const bool check = !(sizeof(code_t) == 1 && s->k >= 256);
    const int64_t table = s->S * s->k;
    bool bad = false;
    for (int64_t n = n0; n < n1; ++n) {
      const int64_t g = pq::group_of_row(n, s->rows_per_group);
      if (g != *built) {
        for (int64_t m = 0; m < M; ++m)
          build_lut(x + m * s->K, codebook_t + g * s->d * s->k, s->S, s->k, static_cast<int>(s->d), lut + m * table);
        *built = g;
      }
      const code_t* row = codes + n * s->S;
      for (int64_t m = 0; m < M; ++m) {
        const acc_t* t = lut + m * table;
        const acc_t v = check ? gather_sum<acc_t, code_t, true>(t, row, s->S, s->k, &bad)
                              : gather_sum<acc_t, code_t, false>(t, row, s->S, s->k, &bad);
        y[m * s->N + n] = v + (bias != nullptr ? bias[n] : acc_t(0));
      }
    }
    return bad;
  }
};

// Each thread keeps its own tables across the chunks it claims (cpu/parallel.h): with one group,
// one table per input row per thread (K * k multiply-adds, a few percent of the lookups it serves).
template <typename acc_t, typename code_t>
bool pq_linear_lut(const PQShape& s, const acc_t* x, int64_t M, const code_t* codes,
                   const acc_t* codebook_t, const acc_t* bias, acc_t* y) {
  const int threads = cpu::chunk_participants();
  std::vector<acc_t> luts(threads * M * s.S * s.k);
  std::vector<int64_t> built(threads, -1);
  std::atomic<bool> bad{false};
  cpu::parallel_chunks(s.N, 16, [&](int64_t n0, int64_t n1, int t) {
    if (cpu::Clones<LookupRows<acc_t, code_t>>::run(&s, x, M, codes, codebook_t, bias, y, n0, n1,
                                                     luts.data() + t * M * s.S * s.k, &built[t]))
      bad.store(true, std::memory_order_relaxed);
  });
  return !bad.load();
}

// Rows [a, b) of W into out (row n at out + (n - n0) * K), at the CPU's level; true when a code
// was out of range.
template <typename scalar_t, typename code_t>
struct DecodeRows {
  template <int Level>
  static GWK_LOOP_BODY bool run(const PQShape* s, const code_t* codes, const scalar_t* codebook, int64_t a,
                                int64_t b, int64_t n0, scalar_t* out) {
    bool bad = false;
    for (int64_t n = a; n < b; ++n) {
      const scalar_t* group = codebook + pq::group_of_row(n, s->rows_per_group) * s->k * s->d;
      for (int64_t j = 0; j < s->S; ++j) {
        int64_t c = static_cast<int64_t>(codes[n * s->S + j]);
        if (!pq::code_valid(c, s->k)) {
          bad = true;
          c = 0;
        }
        pq::decode_subvector(group, c, static_cast<int>(s->d), out + (n - n0) * s->K + j * s->d);
      }
    }
    return bad;
  }
};

// W rows [n0, n1) decoded into out [n1 - n0, K], in parallel; false on a code out of range.
template <typename scalar_t, typename code_t>
bool decode_rows(const PQShape& s, const code_t* codes, const scalar_t* codebook, int64_t n0,
                 int64_t n1, scalar_t* out) {
  std::atomic<bool> bad{false};
  cpu::parallel_chunks(n1 - n0, 16, [&](int64_t a, int64_t b, int) {
    if (cpu::Clones<DecodeRows<scalar_t, code_t>>::run(&s, codes, codebook, n0 + a, n0 + b, n0, out))
      bad.store(true, std::memory_order_relaxed);
  });
  return !bad.load();
}

at::Tensor pq_decode_cpu(const at::Tensor& codes_in, const at::Tensor& codebook_in) {
  const PQShape s = check_pq_weight("pq_decode", codes_in, codebook_in);
  const auto codes = codes_in.contiguous();
  const auto codebook = codebook_in.contiguous();
  auto w = at::empty({s.N, s.K}, codebook.options());
  bool ok = true;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, codebook.scalar_type(), "pq_decode_cpu", [&] {
    ok = with_typed_codes(codes, [&](const auto* c) {
      return decode_rows(s, c, codebook.const_data_ptr<scalar_t>(), 0, s.N, w.mutable_data_ptr<scalar_t>());
    });
  });
  TORCH_CHECK(ok, describe_bad_code_pq("pq_decode", codes, s.k));
  return w;
}

at::Tensor pq_linear_cpu(const at::Tensor& x_in, const at::Tensor& codes_in,
                         const at::Tensor& codebook_in, const std::optional<at::Tensor>& bias_in) {
  const PQShape s = check_pq_weight("pq_linear", codes_in, codebook_in);
  check_pq_linear(s, x_in, codebook_in, bias_in);
  const int64_t M = x_in.size(0);
  const auto codes = codes_in.contiguous();
  if (!use_lookup_tables(M, s.d)) {
    // Decode tiles of W in the input dtype and multiply each with the BLAS, in one parallel region:
    // each task decodes its tiles into its own cache-sized buffer and multiplies them on its
    // thread (a BLAS call inside an OpenMP region runs on the calling thread; hence
    // at::parallel_for here, not parallel_chunks, whose helpers are not OpenMP threads).
    const auto x = x_in.contiguous();
    auto y = at::empty({M, s.N}, x.options());
    const auto codebook = codebook_in.contiguous();
    const int64_t rows = decode_tile_rows(s.K, codebook.element_size());
    const int64_t tiles = (s.N + rows - 1) / rows;
    std::atomic<bool> bad{false};
    // The tasks call ATen ops: give their threads the caller's modes (inference mode, dispatch
    // keys), or y made under torch.inference_mode could not be written there.
    const at::ThreadLocalState caller_state;
    at::parallel_for(0, tiles, 1, [&](int64_t t0, int64_t t1) {
      at::ThreadLocalStateGuard same_modes(caller_state);
      auto tile = at::empty({std::min(rows, s.N), s.K}, codebook.options());
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t n0 = t * rows, n1 = std::min(s.N, n0 + rows);
        auto w = tile.narrow(0, 0, n1 - n0);
        bool tile_bad = false;
        AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, codebook.scalar_type(), "pq_linear_decode", [&] {
          tile_bad = with_typed_codes(codes, [&](const auto* c) {
            using code_t = std::remove_const_t<std::remove_pointer_t<decltype(c)>>;
            return cpu::Clones<DecodeRows<scalar_t, code_t>>::run(&s, c, codebook.const_data_ptr<scalar_t>(), n0, n1,
                                                                   n0, w.mutable_data_ptr<scalar_t>());
          });
        });
        if (tile_bad) bad.store(true, std::memory_order_relaxed);
        y.narrow(1, n0, n1 - n0).copy_(at::matmul(x, w.t()));
      }
    });
    TORCH_CHECK(!bad.load(), describe_bad_code_pq("pq_linear", codes, s.k));
    if (bias_in.has_value()) y.add_(*bias_in);
    return y;
  }
  // Lookup-table path, accumulated in float32 (float64 for float64 inputs).
  const auto acc = x_in.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto x = x_in.to(acc).contiguous();
  const auto codebook_t = codebook_in.to(acc).transpose(1, 2).contiguous();  // [G, d, k]
  const auto bias = bias_in.has_value() ? bias_in->to(acc).contiguous() : at::Tensor();
  auto y = at::empty({M, s.N}, x.options());
  bool ok = true;
  AT_DISPATCH_FLOATING_TYPES(acc, "pq_linear_lut", [&] {
    const scalar_t* b = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
    ok = with_typed_codes(codes, [&](const auto* c) {
      return pq_linear_lut(s, x.const_data_ptr<scalar_t>(), M, c, codebook_t.const_data_ptr<scalar_t>(), b,
                           y.mutable_data_ptr<scalar_t>());
    });
  });
  TORCH_CHECK(ok, describe_bad_code_pq("pq_linear", codes, s.k));
  return y.to(x_in.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(gwkcuda, CPU, m) {
  m.impl("pq_decode", &pq_decode_cpu);
  m.impl("pq_linear", &pq_linear_cpu);
}

}  // namespace gwk

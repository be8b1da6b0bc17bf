// CPU implementation of kmeans1d_optimal: the exact weighted 1-D k-means of B problems by dynamic
// programming over the sorted points (csrc/core/kmeans1d.h). D[m][j], the least cost of the first
// j sorted points in m runs, is D[m-1][i] + cost(i, j) minimised over i; splits are monotone, so
// each row is filled by divide and conquer in O(n log n) cost evaluations: O(k n log n) after the
// sort, and the argmins kept to trace the runs back (k * (n + 1) int32 per problem). Ties go to the
// earliest split. Problems run in parallel, one task each; a padded problem is solved on its
// first lengths[b] points, labels -1 after.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "../core/kmeans1d.h"
#include "parallel.h"

namespace gwk {
namespace {

struct Problem {
  std::vector<double> W, S, Q, prev, cur;
  std::vector<int32_t> split;  // [k][n + 1]: the start of the last run of D[m][j]
  long n = 0, k = 0;

  double cost(long i, long j) const { return kmeans1d::run_cost(W.data(), S.data(), Q.data(), i, j); }

  // cur[j] = min over i in [lo_i, hi_i], i < j, of prev[i] + cost(i, j), for j in [lo_j, hi_j].
  void fill(long m, long lo_j, long hi_j, long lo_i, long hi_i) {
    if (lo_j > hi_j) return;
    const long j = (lo_j + hi_j) / 2;
    double best = INFINITY;
    long arg = lo_i;
    for (long i = lo_i; i <= std::min(hi_i, j - 1); ++i) {
      const double v = prev[i] + cost(i, j);
      if (v < best) {
        best = v;
        arg = i;
      }
    }
    cur[j] = best;
    split[m * (n + 1) + j] = static_cast<int32_t>(arg);
    fill(m, lo_j, j - 1, lo_i, arg);
    fill(m, j + 1, hi_j, arg, hi_i);
  }
};

template <typename scalar_t>
void solve(const scalar_t* x, const scalar_t* w, long n, long k, scalar_t* centroids, int64_t* labels,
           scalar_t* inertia) {
  std::vector<long> order(n);
  std::iota(order.begin(), order.end(), 0L);
  std::stable_sort(order.begin(), order.end(), [&](long a, long b) { return x[a] < x[b]; });
  Problem p;
  p.n = n;
  p.k = k;
  const double shift = static_cast<double>(x[order[n / 2]]);
  p.W.assign(n + 1, 0.0);
  p.S.assign(n + 1, 0.0);
  p.Q.assign(n + 1, 0.0);
  for (long t = 0; t < n; ++t) {
    const double wt = w != nullptr ? static_cast<double>(w[order[t]]) : 1.0;
    const double y = static_cast<double>(x[order[t]]) - shift;
    p.W[t + 1] = p.W[t] + wt;
    p.S[t + 1] = p.S[t] + wt * y;
    p.Q[t + 1] = p.Q[t] + wt * y * y;
  }
  p.split.assign(static_cast<size_t>(k) * (n + 1), 0);
  p.prev.assign(n + 1, INFINITY);
  p.cur.assign(n + 1, INFINITY);
  for (long j = 1; j <= n; ++j) p.prev[j] = p.cost(0, j);  // one run
  for (long m = 1; m < k; ++m) {  // m + 1 runs: the first m + 1 points at least
    std::fill(p.cur.begin(), p.cur.end(), INFINITY);
    p.fill(m, m + 1, n, m, n - 1);
    std::swap(p.prev, p.cur);
  }
  *inertia = static_cast<scalar_t>(p.prev[n]);
  long end = n;
  for (long m = k - 1; m >= 0; --m) {  // trace the runs back, last first
    const long start = m > 0 ? p.split[m * (n + 1) + end] : 0;
    const double lo = static_cast<double>(x[order[start]]), hi = static_cast<double>(x[order[end - 1]]);
    centroids[m] = static_cast<scalar_t>(
        kmeans1d::run_centre(p.W.data(), p.S.data(), start, end, shift, lo, hi));
    for (long t = start; t < end; ++t) labels[order[t]] = m;
    end = start;
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> kmeans1d_optimal_cpu(const at::Tensor& x_in,
                                                                   const std::optional<at::Tensor>& weight,
                                                                   int64_t k,
                                                                   const std::optional<at::Tensor>& lengths_in) {
  TORCH_CHECK(x_in.dim() == 2, "kmeans1d_optimal: expected x of shape [B, N], got ", x_in.sizes());
  TORCH_CHECK(at::isFloatingType(x_in.scalar_type()), "kmeans1d_optimal: expected floating-point x, got ",
              x_in.scalar_type());
  const int64_t B = x_in.size(0), N = x_in.size(1);
  TORCH_CHECK(k >= 1 && k <= N, "kmeans1d_optimal: expected k in 1..N = 1..", N, ", got ", k);
  TORCH_CHECK(k * (N + 1) <= (int64_t{1} << 28), "kmeans1d_optimal: k * (N + 1) = ", k * (N + 1),
              " split entries exceed 2^28 per problem (1 GiB); use Lloyd's k-means for this size");
  const auto acc = x_in.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto x = x_in.to(acc).contiguous();
  at::Tensor w;
  if (weight.has_value()) {
    TORCH_CHECK(weight->sizes() == x_in.sizes(), "kmeans1d_optimal: expected weight of shape ", x_in.sizes(),
                ", got ", weight->sizes());
    TORCH_CHECK(weight->device() == x_in.device(), "kmeans1d_optimal: expected weight on ", x_in.device());
    w = weight->to(acc).contiguous();
    TORCH_CHECK(at::isfinite(w).all().item<bool>() && w.ge(0).all().item<bool>(),
                "kmeans1d_optimal: expected every weight finite and >= 0");
  }
  TORCH_CHECK(at::isfinite(x).all().item<bool>(), "kmeans1d_optimal: expected finite points");
  std::vector<int64_t> lengths(B, N);  // problem b: its first lengths[b] points (the rest padding)
  if (lengths_in.has_value()) {
    TORCH_CHECK(lengths_in->dim() == 1 && lengths_in->size(0) == B, "kmeans1d_optimal: expected lengths of shape [",
                B, "], got ", lengths_in->sizes());
    const auto l = lengths_in->to(at::kCPU, at::kLong).contiguous();
    std::copy(l.const_data_ptr<int64_t>(), l.const_data_ptr<int64_t>() + B, lengths.begin());
    for (int64_t b = 0; b < B; ++b)
      TORCH_CHECK(lengths[b] >= k && lengths[b] <= N, "kmeans1d_optimal: expected every length in k..N = ", k,
                  "..", N, ", got ", lengths[b], " for problem ", b);
  }
  auto centroids = at::empty({B, k}, x.options());
  auto labels = at::full({B, N}, -1, x.options().dtype(at::kLong));
  auto inertia = at::empty({B}, x.options());
  AT_DISPATCH_FLOATING_TYPES(acc, "kmeans1d_optimal_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* wp = w.defined() ? w.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* cp = centroids.mutable_data_ptr<scalar_t>();
    int64_t* lp = labels.mutable_data_ptr<int64_t>();
    scalar_t* ip = inertia.mutable_data_ptr<scalar_t>();
    cpu::parallel_chunks(B, 1, [&](int64_t first, int64_t last, int) {
      for (int64_t b = first; b < last; ++b)
        solve(xp + b * N, wp != nullptr ? wp + b * N : nullptr, lengths[b], k, cp + b * k, lp + b * N, ip + b);
    });
  });
  return {centroids, labels, inertia};
}

}  // namespace

TORCH_LIBRARY_IMPL(gwkcuda, CPU, m) { m.impl("kmeans1d_optimal", &kmeans1d_optimal_cpu); }

}  // namespace gwk

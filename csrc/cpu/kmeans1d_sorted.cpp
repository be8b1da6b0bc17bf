// CPU implementation of the sorted scalar k-means ops (math: csrc/core/kmeans1d_sorted.h). Each op
// is one parallel region over problems. kmeans1d_sort sorts a float32 problem by an LSD radix sort
// of its bit patterns (8 bits a pass, passes where every key shares the byte skipped): O(N) and
// stable, so equal points keep their index order.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <numeric>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../core/kmeans1d_sorted.h"
#include "../kmeans_checks.h"
#include "../sorted1d.h"
#include "parallel.h"

namespace gwk {
namespace {

// Float bit patterns as unsigned keys in the order of their values (negative values reversed).
inline uint32_t sortable_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

inline float value_of(uint32_t key) {
  const uint32_t u = (key & 0x80000000u) ? (key & 0x7FFFFFFFu) : ~key;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Per-thread scratch of the radix sort, reused across the problems of a task.
struct RadixScratch {
  std::vector<uint32_t> keys, keys2;
  std::vector<int32_t> index, index2;
  void reserve(int64_t n) {
    keys.resize(n);
    keys2.resize(n);
    index.resize(n);
    index2.resize(n);
  }
};

// Sorts the n points of one problem: xs ascending, order[t] the index of xs[t]. False if a point
// is not finite.
bool sort_points(const float* x, int64_t n, float* xs, int32_t* order, RadixScratch& r) {
  r.reserve(n);
  uint32_t hist[4][256] = {};
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t key = sortable_bits(x[i] == 0 ? 0.0f : x[i]);  // -0 as +0: equal points keep their index order
    finite &= std::isfinite(x[i]);
    r.keys[i] = key;
    r.index[i] = static_cast<int32_t>(i);
    for (int b = 0; b < 4; ++b) ++hist[b][(key >> (8 * b)) & 0xFFu];
  }
  if (!finite) return false;
  for (int b = 0; b < 4; ++b) {
    const int shift = 8 * b;
    if (hist[b][(r.keys[0] >> shift) & 0xFFu] == n) continue;  // every key shares this byte
    uint32_t offset[256];
    uint32_t sum = 0;
    for (int v = 0; v < 256; ++v) {
      offset[v] = sum;
      sum += hist[b][v];
    }
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t at = offset[(r.keys[i] >> shift) & 0xFFu]++;
      r.keys2[at] = r.keys[i];
      r.index2[at] = r.index[i];
    }
    std::swap(r.keys, r.keys2);
    std::swap(r.index, r.index2);
  }
  for (int64_t i = 0; i < n; ++i) {
    xs[i] = value_of(r.keys[i]);
    order[i] = r.index[i];
  }
  return true;
}

bool sort_points(const double* x, int64_t n, double* xs, int32_t* order, RadixScratch&) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) return false;
  std::iota(order, order + n, 0);
  std::stable_sort(order, order + n, [&](int32_t a, int32_t b) { return x[a] < x[b]; });
  for (int64_t i = 0; i < n; ++i) xs[i] = x[order[i]];
  return true;
}

// The k centroids of one problem in ascending order of value, equal values by index (as a stable
// sort gives them): values cs, indices ci.
template <typename scalar_t>
void sort_centroids(const scalar_t* c, int64_t k, scalar_t* cs, int64_t* ci) {
  std::iota(ci, ci + k, int64_t{0});
  std::stable_sort(ci, ci + k, [&](int64_t a, int64_t b) { return c[a] < c[b]; });
  for (int64_t p = 0; p < k; ++p) cs[p] = c[ci[p]];
}

// Problems per task: a step of one problem is O(k log N), far below the cost of a task.
int64_t problem_grain(int64_t N, int64_t k) {
  return std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, k * (64 - __builtin_clzll(N | 1))));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> kmeans1d_sort_cpu(
    const at::Tensor& x_in, const std::optional<at::Tensor>& weight) {
  SortInputs in = prepare_sort(x_in, weight);
  const int64_t N = in.N, blocks = in.blocks;
  std::atomic<bool> points_ok{true}, weights_ok{true};
  AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "kmeans1d_sort_cpu", [&] {
    const scalar_t* x = in.x.const_data_ptr<scalar_t>();
    const scalar_t* w = in.weight.defined() ? in.weight.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* xs = in.xs.mutable_data_ptr<scalar_t>();
    int32_t* order = in.order.mutable_data_ptr<int32_t>();
    scalar_t* heads = in.heads.mutable_data_ptr<scalar_t>();
    double* prefix = in.prefix.mutable_data_ptr<double>();
    double* shift = in.shift.mutable_data_ptr<double>();
    cpu::parallel_chunks(in.B, 1, [&](int64_t first, int64_t last, int) {
      RadixScratch scratch;
      std::vector<double> sums(blocks * 3);
      for (int64_t b = first; b < last; ++b) {
        scalar_t* xb = xs + b * N;
        int32_t* ob = order + b * N;
        const scalar_t* wb = w != nullptr ? w + b * N : nullptr;
        if (!sort_points(x + b * N, N, xb, ob, scratch)) {
          points_ok.store(false, std::memory_order_relaxed);
          return;
        }
        bool ok = true;
        for (int64_t t = 0; wb != nullptr && t < N; ++t) ok &= kmeans::valid_weight(wb[t]);
        if (!ok) {
          weights_ok.store(false, std::memory_order_relaxed);
          return;
        }
        shift[b] = static_cast<double>(xb[N / 2]);  // a value amid the data: no digits lost to an offset
        for (int64_t blk = 0; blk < blocks; ++blk) {
          heads[b * blocks + blk] = xb[blk * sorted1d::kBlock];
          sorted1d::block_sums(xb, wb, ob, N, shift[b], blk, &sums[blk * 3]);
        }
        sorted1d::scan_blocks(sums.data(), blocks, prefix + b * (blocks + 1) * sorted1d::kFields);
      }
    });
  });
  if (!points_ok.load()) fail_bad_point(in.x);
  if (!weights_ok.load()) fail_bad_weight(in.weight);
  return {in.xs, in.order, in.heads, in.prefix, in.shift};
}

std::tuple<at::Tensor, at::Tensor> gwk_lloyd_step_sorted_cpu(const at::Tensor& xs_t, const at::Tensor& order_t,
                                                              const at::Tensor& heads_t,
                                                              const std::optional<at::Tensor>& weight,
                                                              const at::Tensor& prefix_t, const at::Tensor& shift_t,
                                                              const at::Tensor& centroids_in) {
  const at::Tensor c = check_sorted_state("gwk_lloyd_step_sorted", xs_t, order_t, heads_t, weight, &prefix_t, &shift_t,
                                          centroids_in);
  const int64_t B = xs_t.size(0), N = xs_t.size(1), k = c.size(1);
  const int64_t blocks = sorted1d::num_blocks(N), fields = (blocks + 1) * sorted1d::kFields;
  auto new_c = at::empty({B, k, 1}, c.options());
  auto cluster_weight = at::empty({B, k}, c.options());
  AT_DISPATCH_FLOATING_TYPES(xs_t.scalar_type(), "gwk_lloyd_step_sorted_cpu", [&] {
    const scalar_t* xs = xs_t.const_data_ptr<scalar_t>();
    const int32_t* order = order_t.const_data_ptr<int32_t>();
    const scalar_t* w = weight.has_value() ? weight->const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* heads = heads_t.const_data_ptr<scalar_t>();
    const double* prefix = prefix_t.const_data_ptr<double>();
    const double* shift = shift_t.const_data_ptr<double>();
    const scalar_t* old_c = c.const_data_ptr<scalar_t>();
    scalar_t* nc = new_c.mutable_data_ptr<scalar_t>();
    scalar_t* cw = cluster_weight.mutable_data_ptr<scalar_t>();
    cpu::parallel_chunks(B, problem_grain(N, k), [&](int64_t first, int64_t last, int) {
      std::vector<scalar_t> cs(k);
      std::vector<int64_t> ci(k), start(k + 1);
      for (int64_t b = first; b < last; ++b) {
        sort_centroids(old_c + b * k, k, cs.data(), ci.data());
        sorted1d::lloyd_step(xs + b * N, w != nullptr ? w + b * N : nullptr, order + b * N, heads + b * blocks,
                             prefix + b * fields, N, shift[b], cs.data(), ci.data(), k, old_c + b * k, start.data(),
                             nc + b * k, cw + b * k);
      }
    });
  });
  return {new_c, cluster_weight};
}

at::Tensor kmeans1d_sorted_assign_cpu(const at::Tensor& xs_t, const at::Tensor& order_t, const at::Tensor& heads_t,
                                      const std::optional<at::Tensor>& weight, const at::Tensor& centroids_in,
                                      at::Tensor& labels) {
  const at::Tensor c = check_sorted_state("kmeans1d_sorted_assign", xs_t, order_t, heads_t, weight, nullptr, nullptr,
                                          centroids_in);
  check_sorted_labels(xs_t, order_t, labels);
  const int64_t B = xs_t.size(0), N = xs_t.size(1), k = c.size(1), blocks = sorted1d::num_blocks(N);
  auto inertia = at::empty({B}, c.options());
  AT_DISPATCH_FLOATING_TYPES(xs_t.scalar_type(), "kmeans1d_sorted_assign_cpu", [&] {
    const scalar_t* xs = xs_t.const_data_ptr<scalar_t>();
    const int32_t* order = order_t.const_data_ptr<int32_t>();
    const scalar_t* w = weight.has_value() ? weight->const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* heads = heads_t.const_data_ptr<scalar_t>();
    const scalar_t* cp = c.const_data_ptr<scalar_t>();
    scalar_t* ip = inertia.mutable_data_ptr<scalar_t>();
    const auto run = [&](auto* lab) {
      using label_t = std::remove_reference_t<decltype(*lab)>;
      cpu::parallel_chunks(B, std::max<int64_t>(1, (int64_t{1} << 14) / N), [&](int64_t first, int64_t last, int) {
        std::vector<scalar_t> cs(k);
        std::vector<int64_t> ci(k), start(k + 1);
        for (int64_t b = first; b < last; ++b) {
          const scalar_t* xb = xs + b * N;
          const int32_t* ob = order + b * N;
          const scalar_t* wb = w != nullptr ? w + b * N : nullptr;
          sort_centroids(cp + b * k, k, cs.data(), ci.data());
          sorted1d::cluster_runs(xb, heads + b * blocks, N, cs.data(), ci.data(), k, start.data());
          double total = 0;
          for (int64_t p = 0; p < k; ++p) {
            for (int64_t t = start[p]; t < start[p + 1]; ++t) {
              lab[b * N + ob[t]] = static_cast<label_t>(ci[p]);
              total += static_cast<double>(sorted1d::weight_of(wb, ob, t)) *
                       static_cast<double>(kmeans::add_squared_difference(scalar_t(0), xb[t], cs[p]));
            }
          }
          ip[b] = static_cast<scalar_t>(total);
        }
      });
    };
    with_label_pointer(labels, run);
  });
  return inertia;
}

}  // namespace

TORCH_LIBRARY_IMPL(gwkcuda, CPU, m) {
  m.impl("kmeans1d_sort", &kmeans1d_sort_cpu);
  m.impl("gwk_lloyd_step_sorted", &gwk_lloyd_step_sorted_cpu);
  m.impl("kmeans1d_sorted_assign", &kmeans1d_sorted_assign_cpu);
}

}  // namespace gwk

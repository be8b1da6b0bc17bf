// CPU implementation of kmeans_assign, cluster_reduce and gwk_lloyd_step.
//
// Work splits into tasks of (problem b, chunk of points); each task accumulates its clusters'
// weighted sums into a private double-precision row, and the rows of a problem are added up at the
// end, so threads never share an accumulator. Distances run on tiles of points transposed to
// [d][points], vectorised across points (assign_tile).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <memory>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../core/kmeans.h"
#include "../kmeans_checks.h"
#include "cpu_level.h"
#include "parallel.h"

// The distance tiles are built for each x86-64 feature level and chosen at run time
// (cpu_level.h).
namespace gwk {
namespace {

constexpr int64_t kUpdateGrain = 1 << 16;  // centroids per task of the update loop

// How the points of B problems split into tasks. A chunk is large enough to amortise its private
// accumulator row (k * (d + 1) doubles), so those rows never outweigh x itself.
struct TaskPlan {
  int64_t chunk, chunks_per_problem, tasks, row;
  TaskPlan(int64_t B, int64_t N, int64_t k, int64_t d) {
    chunk = std::max<int64_t>(4096, 4 * k);
    chunks_per_problem = std::max<int64_t>(1, (N + chunk - 1) / chunk);
    tasks = B * chunks_per_problem;
    row = k * (d + 1) + 1;  // sums [k, d], weight sums [k], inertia
  }
};

// A SIMD vector of the build's register width (GCC/Clang vector extensions: 64 bytes for the
// AVX-512 build, 32 for AVX2, 16 for baseline SSE2: a vector wider than the build's registers is
// split by the compiler, far slower than a loop over vectors it can hold), and the matching
// integer lanes for labels. The alignment is stated: left implicit it follows the widest ISA
// enabled in the translation unit (16 bytes by default).
template <typename T, int Bytes>
struct Simd {
  typedef T vec __attribute__((vector_size(Bytes), aligned(Bytes)));
  typedef std::conditional_t<sizeof(T) == 4, int32_t, int64_t> lane_t;
  typedef lane_t ivec __attribute__((vector_size(Bytes), aligned(Bytes)));
  static constexpr int kLanes = Bytes / sizeof(T);
};

constexpr int level_bytes(int level) { return level == cpu::kV4 ? 64 : level == cpu::kV3 ? 32 : 16; }

// Points per tile: two 64-byte vectors' worth (two independent best/label chains per centroid on
// AVX-512, four on AVX2, eight on SSE2, to hide latency).
template <typename acc_t>
constexpr int tile_points() {
  return 128 / sizeof(acc_t);
}

// Nearest centroid of one full tile of tile_points() points x[P, d] (row-major): labels[t] and
// best[t] (its squared distance). Vectorised across points: the tile is transposed into xt (a
// 64-byte aligned scratch of d * 128 bytes) so that each coordinate of a vector's points fills
// one vector, and each centroid costs d subtract, multiply and add triples per vector plus one
// compare and two blends. D > 0 fixes d at compile time (fully unrolled, coordinates kept in
// registers); D == 0 reads d at run time.
template <typename acc_t, int D>
struct AssignTile {
template <int Level>
static GWK_LOOP_BODY void run(const acc_t* __restrict__ x, int d_runtime, const acc_t* __restrict__ centroids,
                              int64_t k, void* xt_storage, int32_t* __restrict__ labels,
                              acc_t* __restrict__ best_out) {
  using vec = typename Simd<acc_t, level_bytes(Level)>::vec;
  using ivec = typename Simd<acc_t, level_bytes(Level)>::ivec;
  using lane_int = std::remove_reference_t<decltype(ivec{}[0])>;
  constexpr int W = Simd<acc_t, level_bytes(Level)>::kLanes;
  constexpr int kVecsPerTile = tile_points<acc_t>() / W;
  vec* __restrict__ xt = static_cast<vec*>(xt_storage);
  const int d = D > 0 ? D : d_runtime;
  for (int i = 0; i < d; ++i)
    for (int v = 0; v < kVecsPerTile; ++v)
      for (int t = 0; t < W; ++t) xt[i * kVecsPerTile + v][t] = x[(v * W + t) * d + i];
  vec best[kVecsPerTile];
  ivec label[kVecsPerTile];
  for (int v = 0; v < kVecsPerTile; ++v) {
    best[v] = vec{} + std::numeric_limits<acc_t>::infinity();
    label[v] = ivec{};
  }
  for (int64_t j = 0; j < k; ++j) {
    const acc_t* c = centroids + j * d;
    vec dist[kVecsPerTile];
    for (int v = 0; v < kVecsPerTile; ++v) dist[v] = vec{};
    for (int i = 0; i < d; ++i) {
      const vec ci = vec{} + c[i];
      for (int v = 0; v < kVecsPerTile; ++v)
        dist[v] = kmeans::add_squared_difference(dist[v], xt[i * kVecsPerTile + v], ci);
    }
    const ivec jv = ivec{} + static_cast<lane_int>(j);
    for (int v = 0; v < kVecsPerTile; ++v) {
      const ivec closer = kmeans::closer(dist[v], best[v]);  // lane mask: strictly closer
      best[v] = closer ? dist[v] : best[v];
      label[v] = closer ? jv : label[v];
    }
  }
  for (int v = 0; v < kVecsPerTile; ++v)
    for (int t = 0; t < W; ++t) {
      labels[v * W + t] = static_cast<int32_t>(label[v][t]);
      best_out[v * W + t] = best[v][t];
    }
}
};

// AssignTile<acc_t, D> at the CPU's level.
template <typename acc_t, int D>
constexpr auto assign_tile =
    &cpu::Clones<AssignTile<acc_t, D>>::template run<const acc_t*, int, const acc_t*, int64_t, void*, int32_t*, acc_t*>;

// Assigns n points x[n, d], one tile at a time; the last partial tile runs on a zero-padded copy.
template <typename acc_t>
class TileAssigner {
 public:
  static constexpr int P = tile_points<acc_t>();

  TileAssigner(int d, const acc_t* centroids, int64_t k)
      : d_(d), centroids_(centroids), k_(k), xt_storage_(d * 128 + 64), padded_(P * d) {
    void* p = xt_storage_.data();  // aligned by hand: std::vector<char> guarantees 16 bytes
    size_t space = xt_storage_.size();
    xt_ = std::align(64, d * 128, p, space);
    switch (d) {  // the sub-vector lengths of common PQ and scalar configurations
      case 1: fn_ = assign_tile<acc_t, 1>; break;
      case 2: fn_ = assign_tile<acc_t, 2>; break;
      case 4: fn_ = assign_tile<acc_t, 4>; break;
      case 8: fn_ = assign_tile<acc_t, 8>; break;
      default: fn_ = assign_tile<acc_t, 0>;
    }
  }

  // Labels and squared distances of points [s, s + m) of x, m <= P.
  void operator()(const acc_t* x, int64_t s, int m, int32_t* labels, acc_t* best) {
    const acc_t* tile = x + s * d_;
    if (m < P) {
      std::fill(padded_.begin(), padded_.end(), acc_t(0));
      std::copy(tile, tile + static_cast<int64_t>(m) * d_, padded_.begin());
      tile = padded_.data();
    }
    fn_(tile, d_, centroids_, k_, xt_, labels, best);
  }

 private:
  int d_;
  const acc_t* centroids_;
  int64_t k_;
  std::vector<char> xt_storage_;
  std::vector<acc_t> padded_;
  void* xt_;
  void (*fn_)(const acc_t*, int, const acc_t*, int64_t, void*, int32_t*, acc_t*);
};

// kmeans_assign over one chunk of n points.
template <typename acc_t>
void assign_chunk(const acc_t* x, int64_t n, int d, const acc_t* centroids, int64_t k,
                  int64_t* labels, acc_t* sqdist) {
  constexpr int P = tile_points<acc_t>();
  TileAssigner<acc_t> assign(d, centroids, k);
  int32_t lab[P];
  acc_t best[P];
  for (int64_t s = 0; s < n; s += P) {
    const int m = static_cast<int>(std::min<int64_t>(P, n - s));
    assign(x, s, m, lab, best);
    for (int t = 0; t < m; ++t) {
      labels[s + t] = lab[t];
      sqdist[s + t] = best[t];
    }
  }
}

// One point's share of a cluster's weighted sum; false when its weight is invalid.
template <typename acc_t>
inline bool accumulate_point(double* row, int d, int64_t k, const acc_t* x, acc_t w, int64_t j) {
  kmeans::accumulate<double>(row + j * d, row + k * d + j, x, static_cast<double>(w), d);
  return kmeans::valid_weight(w);
}

// gwk_lloyd_step over one chunk: assign, then accumulate into the task's row. False on a bad weight.
// label_t: int64_t, or int32_t for a buffer of half the size (a large layer's labels dominate).
template <typename acc_t, typename label_t>
bool lloyd_chunk(const acc_t* x, const acc_t* w, int64_t n, int d, const acc_t* centroids,
                 int64_t k, label_t* labels, double* row) {
  constexpr int P = tile_points<acc_t>();
  TileAssigner<acc_t> assign(d, centroids, k);
  int32_t lab[P];
  acc_t best[P];
  bool ok = true;
  double inertia = 0;
  for (int64_t s = 0; s < n; s += P) {
    const int m = static_cast<int>(std::min<int64_t>(P, n - s));
    assign(x, s, m, lab, best);
    for (int t = 0; t < m; ++t) {
      const acc_t wt = w != nullptr ? w[s + t] : acc_t(1);
      ok &= accumulate_point(row, d, k, x + (s + t) * d, wt, lab[t]);
      inertia += static_cast<double>(wt) * static_cast<double>(best[t]);
      labels[s + t] = lab[t];
    }
  }
  row[k * (d + 1)] += inertia;
  return ok;
}

// cluster_reduce over one chunk with given labels. Returns 0, or 1 for a bad label, 2 a bad weight.
template <typename acc_t>
inline int reduce_chunk(const acc_t* x, const acc_t* w, const int64_t* labels, int64_t n, int d,
                            int64_t k, double* row) {
  bool weights_ok = true;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t j = labels[i];
    if (j < 0 || j >= k) return 1;
    weights_ok &= accumulate_point(row, d, k, x + i * d, w != nullptr ? w[i] : acc_t(1), j);
  }
  return weights_ok ? 0 : 2;
}


// Runs body(b, begin, n, row) for every task in parallel; `rows` is [tasks, plan.row] doubles.
template <typename Body>
void for_each_task(const TaskPlan& plan, int64_t N, at::Tensor* rows, const Body& body) {
  double* base = rows != nullptr ? rows->mutable_data_ptr<double>() : nullptr;
  cpu::parallel_chunks(plan.tasks, 1, [&](int64_t first, int64_t last, int) {
    for (int64_t task = first; task < last; ++task) {
      const int64_t b = task / plan.chunks_per_problem;
      const int64_t begin = (task % plan.chunks_per_problem) * plan.chunk;
      const int64_t n = std::max<int64_t>(0, std::min(plan.chunk, N - begin));
      body(b, begin, n, base != nullptr ? base + task * plan.row : nullptr);
    }
  });
}

// Adds up the task rows of each problem: [B, plan.row] doubles.
at::Tensor sum_task_rows(const at::Tensor& rows, const TaskPlan& plan, int64_t B) {
  return rows.view({B, plan.chunks_per_problem, plan.row}).sum(1);
}

std::tuple<at::Tensor, at::Tensor> kmeans_assign_cpu(const at::Tensor& x_in, const at::Tensor& c_in) {
  const auto in = prepare_inputs("kmeans_assign", x_in, std::nullopt, &c_in, nullptr, 0);
  auto labels = at::empty({in.B, in.N}, in.x.options().dtype(at::kLong));
  auto sqdist = at::empty({in.B, in.N}, in.x.options());
  const TaskPlan plan(in.B, in.N, in.k, in.d);
  AT_DISPATCH_FLOATING_TYPES(in.acc, "kmeans_assign_cpu", [&] {
    const scalar_t* x = in.x.const_data_ptr<scalar_t>();
    const scalar_t* c = in.centroids.const_data_ptr<scalar_t>();
    int64_t* lab = labels.mutable_data_ptr<int64_t>();
    scalar_t* dist = sqdist.mutable_data_ptr<scalar_t>();
    for_each_task(plan, in.N, nullptr, [&](int64_t b, int64_t begin, int64_t n, double*) {
      const int64_t at = b * in.N + begin;
      assign_chunk(x + at * in.d, n, static_cast<int>(in.d), c + b * in.k * in.d, in.k, lab + at,
                   dist + at);
    });
  });
  return {labels, sqdist};
}

std::tuple<at::Tensor, at::Tensor> cluster_reduce_cpu(const at::Tensor& x_in,
                                                      const std::optional<at::Tensor>& weight,
                                                      const at::Tensor& labels_in, int64_t k) {
  const auto in = prepare_inputs("cluster_reduce", x_in, weight, nullptr, &labels_in, k);
  const TaskPlan plan(in.B, in.N, in.k, in.d);
  auto rows = at::zeros({plan.tasks, plan.row}, in.x.options().dtype(at::kDouble));
  std::atomic<int> status{0};
  AT_DISPATCH_FLOATING_TYPES(in.acc, "cluster_reduce_cpu", [&] {
    const scalar_t* x = in.x.const_data_ptr<scalar_t>();
    const scalar_t* w = in.weight.defined() ? in.weight.const_data_ptr<scalar_t>() : nullptr;
    const int64_t* lab = in.labels.const_data_ptr<int64_t>();
    for_each_task(plan, in.N, &rows, [&](int64_t b, int64_t begin, int64_t n, double* row) {
      const int64_t at = b * in.N + begin;
      const int s = reduce_chunk(x + at * in.d, w != nullptr ? w + at : nullptr, lab + at, n,
                                 static_cast<int>(in.d), in.k, row);
      if (s != 0) status.store(s, std::memory_order_relaxed);
    });
  });
  TORCH_CHECK(status.load() != 1, describe_bad_label("cluster_reduce", in.labels, in.k));
  TORCH_CHECK(status.load() != 2, describe_bad_weight("cluster_reduce", in.weight));
  const auto totals = sum_task_rows(rows, plan, in.B);
  auto sums = totals.narrow(1, 0, in.k * in.d).reshape({in.B, in.k, in.d}).to(in.acc);
  auto weight_sums = totals.narrow(1, in.k * in.d, in.k).to(in.acc);
  return {sums, weight_sums};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gwk_lloyd_step_into_cpu(
    const at::Tensor& x_in, const std::optional<at::Tensor>& weight, const at::Tensor& c_in,
    at::Tensor& labels, bool check_weights) {
  const auto in = prepare_inputs("gwk_lloyd_step", x_in, weight, &c_in, nullptr, 0);
  check_labels_out("gwk_lloyd_step", in, labels);
  const TaskPlan plan(in.B, in.N, in.k, in.d);
  auto rows = at::zeros({plan.tasks, plan.row}, in.x.options().dtype(at::kDouble));
  std::atomic<bool> weights_ok{true};
  AT_DISPATCH_FLOATING_TYPES(in.acc, "gwk_lloyd_step_cpu", [&] {
    const scalar_t* x = in.x.const_data_ptr<scalar_t>();
    const scalar_t* w = in.weight.defined() ? in.weight.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* c = in.centroids.const_data_ptr<scalar_t>();
    const auto run = [&](auto* lab) {
      for_each_task(plan, in.N, &rows, [&](int64_t b, int64_t begin, int64_t n, double* row) {
        const int64_t at = b * in.N + begin;
        const bool ok = lloyd_chunk(x + at * in.d, w != nullptr ? w + at : nullptr, n,
                                    static_cast<int>(in.d), c + b * in.k * in.d, in.k, lab + at, row);
        if (!ok) weights_ok.store(false, std::memory_order_relaxed);
      });
    };
    with_label_pointer(labels, run);
  });
  TORCH_CHECK(!check_weights || weights_ok.load(), describe_bad_weight("gwk_lloyd_step", in.weight));
  const auto totals = sum_task_rows(rows, plan, in.B);
  auto new_centroids = at::empty_like(in.centroids);
  AT_DISPATCH_FLOATING_TYPES(in.acc, "gwk_lloyd_update_cpu", [&] {
    const double* t = totals.const_data_ptr<double>();
    const scalar_t* old_c = in.centroids.const_data_ptr<scalar_t>();
    scalar_t* new_c = new_centroids.mutable_data_ptr<scalar_t>();
    // Inline unless large: a parallel region costs more than thousands of divisions, and on a busy
    // machine a whole time slice (bench/bench_busy.py).
    cpu::parallel_chunks(in.B * in.k, kUpdateGrain, [&](int64_t first, int64_t last, int) {
      for (int64_t bj = first; bj < last; ++bj) {
        const int64_t b = bj / in.k, j = bj % in.k;
        const double* row = t + b * plan.row;
        kmeans::update_centroid(row + j * in.d, row[in.k * in.d + j], old_c + bj * in.d,
                                static_cast<int>(in.d), new_c + bj * in.d);
      }
    });
  });
  auto cluster_weight = totals.narrow(1, in.k * in.d, in.k).to(in.acc);
  auto inertia = totals.select(1, in.k * (in.d + 1)).to(in.acc);
  return {new_centroids, cluster_weight, inertia};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> gwk_lloyd_step_cpu(
    const at::Tensor& x, const std::optional<at::Tensor>& weight, const at::Tensor& centroids,
    bool check_weights) {
  auto labels = at::empty({x.size(0), x.dim() == 3 ? x.size(1) : 0}, x.options().dtype(at::kLong));
  auto [new_centroids, cluster_weight, inertia] =
      gwk_lloyd_step_into_cpu(x, weight, centroids, labels, check_weights);
  return {new_centroids, labels, cluster_weight, inertia};
}

}  // namespace

TORCH_LIBRARY_IMPL(gwkcuda, CPU, m) {
  m.impl("kmeans_assign", &kmeans_assign_cpu);
  m.impl("cluster_reduce", &cluster_reduce_cpu);
  m.impl("gwk_lloyd_step", &gwk_lloyd_step_cpu);
  m.impl("gwk_lloyd_step_into", &gwk_lloyd_step_into_cpu);
}

}  // namespace gwk

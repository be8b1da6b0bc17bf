// One Lloyd step of one small k-means problem by one block of threads, with every sum in shared
// memory: the CUDA k-means path for problems that fit (csrc/cuda/kmeans_cuda.cu), instead of a
// sort and a segmented sum over all problems at once.
//
// The step is four phases separated by block barriers (run_phase). The CUDA kernel runs them with
// __syncthreads() between; the host emulation (csrc/kmeans_block_emulation.cpp, for tests) runs
// each phase for every thread index in turn. The two compute the same thing, because within a
// phase no thread reads what another thread of that phase writes.
//
// The sums are deterministic and in float64. Each cluster's points are split into `chunks` runs
// of consecutive point indices. Thread (chunk, c) adds up its run's points of label c in index
// order, and the chunk partials are then added in chunk order. The order depends on the shape
// and the thread count only, never on timing.
//
// Layouts as in kmeans.h, one problem: x [N, d], weight [N] (null: 1 each), centroids [k, d].
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "kmeans.h"
#include "macros.h"

namespace gwk {
namespace kmeans {
namespace block {

// Where each array sits in the block's shared memory (byte offsets; every one 16-byte aligned, so
// that the centroids can be read 16 bytes at a time).
struct Layout {
  int64_t N = 0, k = 0;
  int d = 0, threads = 0;
  int64_t chunks = 1;       // runs of points per cluster: threads / k, at least 1
  size_t partials = 0;      // double [chunks, k, d + 1]: a run's sums of weight * x, then of weight
  size_t inertia = 0;       // double [threads]: each thread's sum of weight * squared distance
  size_t centroids = 0;     // acc_t [k, d]
  size_t labels = 0;        // int32 [N]
  size_t bytes = 0;         // in all
};

GWK_HOST_DEVICE size_t round_up_to_16(size_t bytes) { return (bytes + 15) / 16 * 16; }

GWK_HOST_DEVICE Layout layout(int64_t N, int d, int64_t k, int threads, size_t acc_bytes) {
  Layout L;
  L.N = N;
  L.k = k;
  L.d = d;
  L.threads = threads;
  L.chunks = k < threads ? threads / k : 1;
  L.partials = 0;
  L.inertia = L.partials + round_up_to_16(static_cast<size_t>(L.chunks * k * (d + 1)) * sizeof(double));
  L.centroids = L.inertia + round_up_to_16(static_cast<size_t>(threads) * sizeof(double));
  L.labels = L.centroids + round_up_to_16(static_cast<size_t>(k * d) * acc_bytes);
  L.bytes = L.labels + round_up_to_16(static_cast<size_t>(N) * sizeof(int32_t));
  return L;
}

// Phase 1: the problem's centroids into shared memory.
template <typename acc_t>
GWK_HOST_DEVICE void load_centroids(int t, const Layout& L, const acc_t* centroids, acc_t* shared_centroids) {
  for (int64_t i = t; i < L.k * L.d; i += L.threads) shared_centroids[i] = centroids[i];
}

// The nearest of centroids [k, D] to a point held in registers, coordinate by coordinate (a
// kernel may pass its own, loading 16 bytes at a time: the same scan, the same distances).
template <typename acc_t, int D>
struct NearestByCoordinates {
  GWK_HOST_DEVICE int64_t operator()(const acc_t* point, const acc_t* centroids, int64_t k, acc_t* best) const {
    return nearest_centroid<acc_t>(point, centroids, k, D, best);
  }
};

// Phase 2: each point's nearest centroid (point p by thread p % threads), into `labels` and the
// shared copy; each thread's sum of weight * squared distance into inertia[t]. D > 0 is d at
// compile time (the point held in registers, its nearest centroid found by `nearest`), D = 0
// reads d from L.
template <typename acc_t, typename label_t, int D, typename Nearest = NearestByCoordinates<acc_t, D>>
GWK_HOST_DEVICE void assign(int t, const Layout& L, const acc_t* x, const acc_t* weight,
                            const acc_t* shared_centroids, int32_t* shared_labels, label_t* labels,
                            double* inertia, Nearest nearest = {}) {
  double part = 0;
  for (int64_t p = t; p < L.N; p += L.threads) {
    acc_t best;
    int64_t label;
    if constexpr (D > 0) {
      acc_t point[D];
      for (int i = 0; i < D; ++i) point[i] = x[p * D + i];
      label = nearest(point, shared_centroids, L.k, &best);
    } else {
      label = nearest_centroid<acc_t>(x + p * L.d, shared_centroids, L.k, L.d, &best);
    }
    shared_labels[p] = static_cast<int32_t>(label);
    labels[p] = static_cast<label_t>(label);
    part += (weight ? static_cast<double>(weight[p]) : 1.0) * static_cast<double>(best);
  }
  inertia[t] = part;
}

// Phase 3: thread t takes the (chunk, cluster) pairs t, t + threads, ...; pair = chunk * k + c
// sums its run's points of label c, in index order, into partials[pair]. Consecutive threads
// take consecutive clusters of one run, so they read the same label at once.
template <typename acc_t, int D>
GWK_HOST_DEVICE void partial_sums(int t, const Layout& L, const acc_t* x, const acc_t* weight,
                                  const int32_t* shared_labels, double* partials) {
  const int d = D > 0 ? D : L.d;
  const int64_t run = (L.N + L.chunks - 1) / L.chunks;
  for (int64_t pair = t; pair < L.chunks * L.k; pair += L.threads) {
    const int64_t c = pair % L.k;
    const int64_t begin = pair / L.k * run;
    const int64_t end = begin + run < L.N ? begin + run : L.N;
    double* out = partials + pair * (d + 1);
    for (int i = 0; i <= d; ++i) out[i] = 0;
    for (int64_t p = begin; p < end; ++p) {
      if (shared_labels[p] == c) {
        accumulate(out, out + d, x + p * d, weight ? static_cast<double>(weight[p]) : 1.0, d);
      }
    }
  }
}

// Phase 4: cluster c (thread c % threads) adds its runs' partials in chunk order (into run 0's),
// then updates its centroid by the rule of kmeans.h; thread 0 adds the threads' inertia in order.
template <typename acc_t>
GWK_HOST_DEVICE void finish(int t, const Layout& L, double* partials, const double* inertia_parts,
                            const acc_t* shared_centroids, acc_t* new_centroids, acc_t* cluster_weight,
                            acc_t* inertia) {
  const int d = L.d;
  for (int64_t c = t; c < L.k; c += L.threads) {
    double* total = partials + c * (d + 1);
    for (int64_t chunk = 1; chunk < L.chunks; ++chunk) {
      const double* part = partials + (chunk * L.k + c) * (d + 1);
      for (int i = 0; i <= d; ++i) total[i] += part[i];
    }
    update_centroid(total, total[d], shared_centroids + c * d, d, new_centroids + c * d);
    cluster_weight[c] = static_cast<acc_t>(total[d]);
  }
  if (t == 0) {
    double sum = 0;
    for (int i = 0; i < L.threads; ++i) sum += inertia_parts[i];
    *inertia = static_cast<acc_t>(sum);
  }
}

// Problem b's arrays: its slices of the op's inputs and outputs, and the block's shared memory
// (`shared`: L.bytes, 16-byte aligned) carved by the layout.
template <typename acc_t, typename label_t>
struct Problem {
  const acc_t* x;              // [N, d]
  const acc_t* weight;         // [N], or null
  const acc_t* centroids;      // [k, d]
  label_t* labels;             // [N]
  acc_t* new_centroids;        // [k, d]
  acc_t* cluster_weight;       // [k]
  acc_t* inertia;              // one
  double* partials;            // shared
  double* inertia_parts;       // shared
  acc_t* shared_centroids;     // shared
  int32_t* shared_labels;      // shared
};

template <typename acc_t, typename label_t>
GWK_HOST_DEVICE Problem<acc_t, label_t> problem(const Layout& L, int64_t b, void* shared, const acc_t* x,
                                                const acc_t* weight, const acc_t* centroids, label_t* labels,
                                                acc_t* new_centroids, acc_t* cluster_weight, acc_t* inertia) {
  unsigned char* bytes = static_cast<unsigned char*>(shared);
  return {x + b * L.N * L.d,
          weight ? weight + b * L.N : nullptr,
          centroids + b * L.k * L.d,
          labels + b * L.N,
          new_centroids + b * L.k * L.d,
          cluster_weight + b * L.k,
          inertia + b,
          reinterpret_cast<double*>(bytes + L.partials),
          reinterpret_cast<double*>(bytes + L.inertia),
          reinterpret_cast<acc_t*>(bytes + L.centroids),
          reinterpret_cast<int32_t*>(bytes + L.labels)};
}

constexpr int kPhases = 4;

// Phase `phase` (0..kPhases-1) of the step, for thread t: the one sequence both runners follow.
template <typename acc_t, typename label_t, int D, typename Nearest = NearestByCoordinates<acc_t, D>>
GWK_HOST_DEVICE void run_phase(int phase, int t, const Layout& L, const Problem<acc_t, label_t>& p,
                               Nearest nearest = {}) {
  switch (phase) {
    case 0: return load_centroids(t, L, p.centroids, p.shared_centroids);
    case 1: return assign<acc_t, label_t, D>(t, L, p.x, p.weight, p.shared_centroids, p.shared_labels, p.labels,
                                             p.inertia_parts, nearest);
    case 2: return partial_sums<acc_t, D>(t, L, p.x, p.weight, p.shared_labels, p.partials);
    default: return finish(t, L, p.partials, p.inertia_parts, p.shared_centroids, p.new_centroids,
                           p.cluster_weight, p.inertia);
  }
}

}  // namespace block
}  // namespace kmeans
}  // namespace gwk

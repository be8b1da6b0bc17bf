// The math of (gradient-)weighted k-means, defined once for the CPU loops and the CUDA kernels:
// squared distances, the nearest-centroid rule with its tie-break, weighted accumulation, and the
// centroid update with its empty-cluster rule.
//
// Layouts (row-major, one problem b of a batch of B):
//   x          [N, d]   points (sub-vectors of a weight tensor)
//   weight     [N]      importance of each point (|g|, g^2, ... ; 1 when absent)
//   centroids  [k, d]
//   sums       [k, d]   sum over the points of a cluster of weight * x
//   wsums      [k]      sum over the points of a cluster of weight
#pragma once

#include <math.h>
#include <stdint.h>

#include <type_traits>

#include "macros.h"

namespace gwk {
namespace kmeans {

// One coordinate's term of a squared distance: s + (x - c)^2. Every distance in the project is
// this, summed over the d coordinates in order, starting from 0 (the CPU's vectorised tiles run
// the same sum across many points at once).
template <typename acc_t>
GWK_HOST_DEVICE acc_t add_squared_difference(acc_t s, acc_t x, acc_t c) {
  const acc_t diff = x - c;
  return s + diff * diff;
}

// ||x - c||^2 (acc_t: float, or double for double input).
template <typename acc_t, typename x_t, typename c_t>
GWK_HOST_DEVICE acc_t squared_distance(const x_t* x, const c_t* c, int d) {
  acc_t s = 0;
  for (int i = 0; i < d; ++i) {
    s = add_squared_difference(s, static_cast<acc_t>(x[i]), static_cast<acc_t>(c[i]));
  }
  return s;
}

// The nearest-centroid rule: a candidate replaces the current best only when strictly closer, so
// scanning centroids in index order sends ties to the lowest index. (Also used on SIMD vectors,
// where it yields a lane mask.)
template <typename acc_t>
GWK_HOST_DEVICE auto closer(acc_t dist, acc_t best) {
  return dist < best;
}

// The scan for the nearest of k centroids, distance_to(j) giving the squared distance to centroid
// j; returns its index, writes its distance. The scan starts from +infinity, as the CPU's
// vectorised tiles do, so the two agree on every input: a point whose distances are all NaN gets
// label 0 and distance +infinity on every backend. (A kernel that loads centroids its own way,
// 16 bytes at a time, passes its own distance_to.)
template <typename acc_t, typename DistanceTo>
GWK_HOST_DEVICE int64_t scan_nearest(int64_t k, DistanceTo&& distance_to, acc_t* best_dist) {
  int64_t best = 0;
  acc_t best_d = static_cast<acc_t>(INFINITY);
  for (int64_t j = 0; j < k; ++j) {
    const acc_t dist = distance_to(j);
    if (closer(dist, best_d)) {
      best_d = dist;
      best = j;
    }
  }
  *best_dist = best_d;
  return best;
}

// Nearest centroid of one point among centroids [k, d].
template <typename acc_t, typename x_t, typename c_t>
GWK_HOST_DEVICE int64_t nearest_centroid(const x_t* x, const c_t* centroids, int64_t k, int d,
                                         acc_t* best_dist) {
  return scan_nearest<acc_t>(
      k, [&](int64_t j) { return squared_distance<acc_t>(x, centroids + j * d, d); }, best_dist);
}

// A weight is valid when finite and non-negative: NaN fails `w >= 0`, and w - w is NaN (not 0)
// for an infinite w.
template <typename acc_t>
GWK_HOST_DEVICE bool valid_weight(acc_t w) {
  return w >= acc_t(0) && w - w == acc_t(0);
}

// One point's share of its cluster: sums[0:d] += w * x[0:d], and *wsum += w (each CPU thread owns
// its accumulators; the GPU sums in a fixed order instead, csrc/cluster_sums.h).
template <typename sum_t, typename x_t>
GWK_HOST_DEVICE void accumulate(sum_t* sums, sum_t* wsum, const x_t* x, sum_t w, int d) {
  for (int i = 0; i < d; ++i) sums[i] += w * static_cast<sum_t>(x[i]);
  *wsum += w;
}

// The centroid update: the weighted mean of a cluster's points; a cluster with zero total weight
// (empty, or all of its points unimportant) keeps its previous centroid. Re-seeding such a
// cluster is a policy of the caller (gwkcuda.kmeans), not of the op.
template <typename sum_t, typename c_t>
GWK_HOST_DEVICE void update_centroid(const sum_t* sums, sum_t wsum, const c_t* old_centroid, int d,
                                     c_t* new_centroid) {
  for (int i = 0; i < d; ++i) {
    new_centroid[i] = wsum > sum_t(0) ? static_cast<c_t>(sums[i] / wsum) : old_centroid[i];
  }
}

// Calls f(std::integral_constant<int, D>()) with D = d for the common point lengths (1, 2, 4, 8)
// and D = 0 (d read at run time) otherwise: the kernels that hold a point in registers take D as
// a template parameter, and their host-side launches and emulations dispatch through this.
template <typename F>
decltype(auto) with_point_length(int d, F&& f) {
  switch (d) {
    case 1: return f(std::integral_constant<int, 1>());
    case 2: return f(std::integral_constant<int, 2>());
    case 4: return f(std::integral_constant<int, 4>());
    case 8: return f(std::integral_constant<int, 8>());
    default: return f(std::integral_constant<int, 0>());
  }
}

}  // namespace kmeans
}  // namespace gwk

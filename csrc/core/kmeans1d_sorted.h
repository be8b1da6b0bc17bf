// Lloyd's k-means of scalar points over points sorted once (the d = 1 case of gwk_lloyd_step,
// defined once for the CPU loops and the CUDA kernels).
//
// For sorted points, the points of a centroid are one contiguous run: the distance to the sorted
// centroids is unimodal (|x - c| computed in floating point is monotone in c), so each run ends
// where the next centroid becomes the nearer one, found by binary search on the points with the
// same distance and tie rule as the general kernel (csrc/core/kmeans.h). A run's weighted sums
// then come from prefix sums instead of a pass over its points: an iteration costs
// O(k log N) per problem instead of O(N k).
//
// Layouts, one problem of a batch (n points):
//   xs [n] points in ascending order; order [n] their indices, so that point t of xs has the weight
//     w[order[t]] (w [n] in the caller's order, or none: weight 1)
//   prefix [(n_blocks + 1) * kFields] doubles: at the start of block b (points [16 b, 16 b + 16))
//     the sums over all earlier points of w (hi, lo), of w * (x - shift) (hi, lo), and the count
//     of points with w > 0. hi + lo is a double-double (Knuth's TwoSum), so a run's sum keeps its
//     digits however large the sums before it; inside a block the sum is taken point by point.
//   heads [n_blocks] the first point of each block, xs[16 b] (the coarse level of the searches)
//   cs [k] centroid values in ascending order, ci [k] their indices (equal values: lowest index
//     first, as a stable sort gives them).
#pragma once

#include <math.h>
#include <stdint.h>

#include "kmeans.h"
#include "macros.h"

namespace gwk {
namespace sorted1d {

constexpr int kBlock = 16;  // points per prefix block: a 64-byte line of float32 points
constexpr int kFields = 5;  // W hi, W lo, S hi, S lo, count of positive weights

GWK_HOST_DEVICE int64_t num_blocks(int64_t n) { return (n + kBlock - 1) / kBlock; }

// hi + lo += b, exactly up to the rounding of lo (TwoSum).
GWK_HOST_DEVICE void dd_add(double& hi, double& lo, double b) {
  const double s = hi + b;
  const double bb = s - hi;
  lo += (hi - (s - bb)) + (b - bb);
  hi = s;
}

// The weight of sorted point t.
template <typename acc_t>
GWK_HOST_DEVICE acc_t weight_of(const acc_t* w, const int32_t* order, int64_t t) {
  return w != nullptr ? w[order[t]] : acc_t(1);
}

// The weight, weighted sum of y = x - shift and positive-weight count of points [i, j) read one
// by one (added to w, s, count).
template <typename acc_t>
GWK_HOST_DEVICE void add_points(const acc_t* xs, const acc_t* weight, const int32_t* order, int64_t i, int64_t j,
                                double shift, double& w, double& s, double& count) {
  for (int64_t t = i; t < j; ++t) {
    const double wt = static_cast<double>(weight_of(weight, order, t));
    w += wt;
    s += wt * (static_cast<double>(xs[t]) - shift);
    count += wt > 0 ? 1.0 : 0.0;
  }
}

// Block b's sums, as the prefix is built from them: out = {w, s, count}.
template <typename acc_t>
GWK_HOST_DEVICE void block_sums(const acc_t* xs, const acc_t* weight, const int32_t* order, int64_t n, double shift,
                                int64_t b, double* out) {
  double w = 0, s = 0, count = 0;
  const int64_t end = (b + 1) * kBlock < n ? (b + 1) * kBlock : n;
  add_points(xs, weight, order, b * kBlock, end, shift, w, s, count);
  out[0] = w;
  out[1] = s;
  out[2] = count;
}

// The prefix table from the blocks' sums [n_blocks][3] (a sequential scan per problem).
GWK_HOST_DEVICE void scan_blocks(const double* sums, int64_t n_blocks, double* prefix) {
  double wh = 0, wl = 0, sh = 0, sl = 0, count = 0;
  for (int64_t b = 0;; ++b) {
    double* p = prefix + b * kFields;
    p[0] = wh;
    p[1] = wl;
    p[2] = sh;
    p[3] = sl;
    p[4] = count;
    if (b == n_blocks) break;
    dd_add(wh, wl, sums[b * 3]);
    dd_add(sh, sl, sums[b * 3 + 1]);
    count += sums[b * 3 + 2];
  }
}

// The prefix sums at sorted position i: the block entry before it plus the partial block
// [kBlock * (i / kBlock), i) read point by point.
struct Cut {
  const double* entry;  // prefix[(i / kBlock) * kFields ...]
  double w, s, count;   // the partial block
};

template <typename acc_t>
GWK_HOST_DEVICE Cut cut_at(const acc_t* xs, const acc_t* weight, const int32_t* order, const double* prefix,
                           int64_t i, double shift) {
  Cut c{prefix + (i / kBlock) * kFields, 0, 0, 0};
  add_points(xs, weight, order, (i / kBlock) * kBlock, i, shift, c.w, c.s, c.count);
  return c;
}

// The sums over points [lo, hi) (their cuts l and h): weight w, weighted sum s of x - shift. A run
// without a point of positive weight sums to exactly 0 (the count decides, not a difference of
// rounded sums); a run far lighter than the sums around it is summed point by point.
template <typename acc_t>
GWK_HOST_DEVICE void run_sums(const acc_t* xs, const acc_t* weight, const int32_t* order, const Cut& l, const Cut& h,
                              int64_t lo, int64_t hi, double shift, double* w_out, double* s_out) {
  const double *pl = l.entry, *ph = h.entry;
  double w = 0, s = 0;
  if ((ph[4] - pl[4]) + (h.count - l.count) > 0) {
    w = ((ph[0] - pl[0]) + (ph[1] - pl[1])) + (h.w - l.w);
    s = ((ph[2] - pl[2]) + (ph[3] - pl[3])) + (h.s - l.s);
    // The difference carries rounding of about 2^-49 of the partial blocks' sums and 2^-100 of
    // the totals before them: a run too light to keep 40 bits of its sums is read point by point.
    if (!(w > 0x1p-9 * (l.w + h.w) && w > 0x1p-44 * ph[0])) {
      double count = 0;
      w = 0;
      s = 0;
      add_points(xs, weight, order, lo, hi, shift, w, s, count);
    }
  }
  *w_out = w;
  *s_out = s;
}

// Whether point x belongs to the right one of two neighbouring sorted centroids a < b (indices ia,
// ib): the general rule, the nearer one, ties to the lower index.
template <typename acc_t>
GWK_HOST_DEVICE bool goes_right(acc_t x, acc_t a, int64_t ia, acc_t b, int64_t ib) {
  const acc_t da = kmeans::add_squared_difference(acc_t(0), x, a);
  const acc_t db = kmeans::add_squared_difference(acc_t(0), x, b);
  return ib < ia ? !kmeans::closer(da, db) : kmeans::closer(db, da);
}

// The first t in [lo, hi) with goes_right(v[t]) (hi if none; the predicate is false, then true,
// along sorted points). Branch-free steps: the searches of a problem do not wait on mispredicted
// branches, so their cache misses overlap.
template <typename acc_t>
GWK_HOST_DEVICE int64_t first_true(const acc_t* v, int64_t lo, int64_t hi, acc_t a, int64_t ia, acc_t b, int64_t ib) {
  int64_t count = hi - lo;
  while (count > 0) {
    const int64_t half = count / 2;
    const bool right = goes_right(v[lo + half], a, ia, b, ib);
    lo = right ? lo : lo + half + 1;
    count = right ? half : count - half - 1;
  }
  return lo;
}

// The first of points [lo, n) that goes right of (a, b); n if none. Searched first among the
// blocks' first points heads[b] = xs[kBlock * b] (a problem's heads are a few cache lines, shared
// by all its searches), then inside one block.
template <typename acc_t>
GWK_HOST_DEVICE int64_t first_going_right(const acc_t* xs, const acc_t* heads, int64_t lo, int64_t n, acc_t a,
                                          int64_t ia, acc_t b, int64_t ib) {
  const int64_t first_block = (lo + kBlock - 1) / kBlock;  // the blocks that start at or after lo
  const int64_t block = first_true(heads, first_block, num_blocks(n), a, ia, b, ib);
  const int64_t from = block > first_block ? (block - 1) * kBlock : lo;
  const int64_t to = block * kBlock < n ? block * kBlock : n;
  return first_true(xs, from, to, a, ia, b, ib);
}

// start[p] for p = 0..k: the points of sorted centroid p are [start[p], start[p + 1]). A centroid
// equal to the one before it (a higher index) gets no points, as in the general kernel. Each
// boundary is searched on its own (independent searches overlap their cache misses), then a run
// starts no earlier than the previous one ended, so the runs partition the points even where
// rounding makes three centroids tie.
template <typename acc_t>
GWK_HOST_DEVICE void cluster_runs(const acc_t* xs, const acc_t* heads, int64_t n, const acc_t* cs, const int64_t* ci,
                                  int64_t k, int64_t* start) {
  start[0] = 0;
  for (int64_t p = 1, a = 0; p < k; ++p) {  // a: the last centroid not equal to the one before it
    if (cs[p] == cs[a]) {
      start[p] = -1;
    } else {
      start[p] = first_going_right(xs, heads, 0, n, cs[a], ci[a], cs[p], ci[p]);
      a = p;
    }
  }
  start[k] = n;
  // A duplicate (-1) takes no points: the run before it ends where the duplicate's own run would.
  for (int64_t p = k - 1; p >= 1; --p)
    if (start[p] < 0) start[p] = start[p + 1];
  for (int64_t p = 1; p < k; ++p) start[p] = start[p] > start[p - 1] ? start[p] : start[p - 1];
}

// One Lloyd iteration of one problem: runs of the centroids cs/ci, then each centroid the weighted
// mean of its run (kept where the run has zero weight): new_c[j], cluster_weight[j] by index j.
// old_c [k] by index; start: scratch [k + 1]. Each cut between two runs is read once.
template <typename acc_t>
GWK_HOST_DEVICE void lloyd_step(const acc_t* xs, const acc_t* weight, const int32_t* order, const acc_t* heads,
                                const double* prefix, int64_t n, double shift, const acc_t* cs, const int64_t* ci,
                                int64_t k, const acc_t* old_c, int64_t* start, acc_t* new_c, acc_t* cluster_weight) {
  cluster_runs(xs, heads, n, cs, ci, k, start);
  Cut left = cut_at(xs, weight, order, prefix, start[0], shift);
  for (int64_t p = 0; p < k; ++p) {
    const Cut right = start[p + 1] == start[p] ? left : cut_at(xs, weight, order, prefix, start[p + 1], shift);
    double w, s;
    run_sums(xs, weight, order, left, right, start[p], start[p + 1], shift, &w, &s);
    const int64_t j = ci[p];
    cluster_weight[j] = static_cast<acc_t>(w);
    new_c[j] = w > 0 ? static_cast<acc_t>(s / w + shift) : old_c[j];
    left = right;
  }
}

}  // namespace sorted1d
}  // namespace gwk
